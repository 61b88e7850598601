import JSON
import JSONRPC

/// `daemon/status`: how the daemon is doing right now.
public enum DaemonStatus: RPCRequest {
    public static let name = "daemon/status"
    public typealias Params = EmptyParams

    public struct Result: Codable, Sendable {
        public struct Connections: Codable, Sendable {
            public var open: Int
            public var stdio: Int
            public var socket: Int
            public var accepted: Int
            public var refused: Int
            public var dropped: Int
            public init(open: Int, stdio: Int, socket: Int, accepted: Int, refused: Int, dropped: Int) {
                self.open = open; self.stdio = stdio; self.socket = socket
                self.accepted = accepted; self.refused = refused; self.dropped = dropped
            }
        }
        public struct Requests: Codable, Sendable {
            public var served: Int
            public var inFlight: Int
            public var failed: Int
            public var cancelled: Int
            public init(served: Int, inFlight: Int, failed: Int, cancelled: Int) {
                self.served = served; self.inFlight = inFlight; self.failed = failed; self.cancelled = cancelled
            }
        }
        public struct Queues: Codable, Sendable {
            /// Jobs waiting for a compute thread.
            public var computePending: Int
            /// Jobs running on compute threads.
            public var computeRunning: Int
            /// Bytes written by the daemon but not yet taken by clients, over all connections.
            public var outputBytes: Int
            /// Texts waiting in the micro-batcher for the encoder.
            public var embedPending: Int
            public init(computePending: Int, computeRunning: Int, outputBytes: Int, embedPending: Int) {
                self.computePending = computePending; self.computeRunning = computeRunning; self.outputBytes = outputBytes
                self.embedPending = embedPending
            }
        }
        public var version: String
        public var pid: Int
        public var uptimeSeconds: Double
        public var socketPath: String?
        public var connections: Connections
        public var requests: Requests
        public var queues: Queues
        public var computeThreads: Int
        public var shuttingDown: Bool
        /// The store's health and this replica's identity.
        public var store: StoreStatus
        public init(version: String, pid: Int, uptimeSeconds: Double, socketPath: String?, connections: Connections,
                    requests: Requests, queues: Queues, computeThreads: Int, shuttingDown: Bool, store: StoreStatus) {
            self.version = version; self.pid = pid; self.uptimeSeconds = uptimeSeconds; self.socketPath = socketPath
            self.connections = connections; self.requests = requests; self.queues = queues
            self.computeThreads = computeThreads; self.shuttingDown = shuttingDown; self.store = store
        }
    }
}

/// Where durable state lives, and whether it answers.
public struct StoreStatus: Codable, Sendable, Equatable {
    public enum Backend: String, Codable, Sendable { case sqlite, postgresql }
    public var backend: Backend
    /// The SQLite file, or the PostgreSQL URL with its password hidden.
    public var location: String
    /// This replica's name (unique among a fleet's running replicas).
    public var replica: String
    /// False since a call found the store unreachable, until one reaches it again; scoring
    /// goes on meanwhile, writes answer -32041.
    public var healthy: Bool
    /// Since when it has been unreachable (seconds since 1970).
    public var unhealthySince: Double?
    public var lastError: String?
    public init(backend: Backend, location: String, replica: String, healthy: Bool, unhealthySince: Double? = nil, lastError: String? = nil) {
        self.backend = backend; self.location = location; self.replica = replica; self.healthy = healthy
        self.unhealthySince = unhealthySince; self.lastError = lastError
    }
}

/// `daemon/fleet`: the replicas sharing this store, as each last reported itself.
public enum DaemonFleet: RPCRequest {
    public static let name = "daemon/fleet"
    public typealias Params = EmptyParams

    public struct Replica: Codable, Sendable, Equatable {
        public var name: String
        public var host: String
        public var pid: Int
        public var startedAt: Double
        /// Its last heartbeat (every 2 s).
        public var seenAt: Double
        /// Whether its heartbeat is within the lease (`leaseSeconds`).
        public var alive: Bool
        /// The version it serves (as of its last heartbeat).
        public var activeVersion: Int?
        public var robustdVersion: String
        /// This replica (the one answering).
        public var this: Bool
        public init(name: String, host: String, pid: Int, startedAt: Double, seenAt: Double, alive: Bool, activeVersion: Int?,
                    robustdVersion: String, this: Bool) {
            self.name = name; self.host = host; self.pid = pid; self.startedAt = startedAt; self.seenAt = seenAt; self.alive = alive
            self.activeVersion = activeVersion; self.robustdVersion = robustdVersion; self.this = this
        }
    }

    public struct Result: Codable, Sendable {
        public var store: StoreStatus
        /// The fleet's active version (the shared pointer).
        public var activeVersion: Int?
        public var leaseSeconds: Double
        public var replicas: [Replica]
        public init(store: StoreStatus, activeVersion: Int?, leaseSeconds: Double, replicas: [Replica]) {
            self.store = store; self.activeVersion = activeVersion; self.leaseSeconds = leaseSeconds; self.replicas = replicas
        }
    }
}

/// `daemon/ping`: the cheapest round trip; answers `{}`.
public enum Ping: RPCRequest {
    public static let name = "daemon/ping"
    public typealias Params = EmptyParams
    public typealias Result = EmptyResult
}

/// `daemon/stop`: stop the daemon gracefully (as SIGTERM does) after answering.
public enum Stop: RPCRequest {
    public static let name = "daemon/stop"
    public typealias Params = EmptyParams
    public typealias Result = EmptyResult
}

/// `debug/sleep`: occupy a compute thread for `ms` milliseconds in `steps` steps, reporting
/// progress and observing cancellation between steps. Registered only with
/// `--enable-debug-methods`; the tests use it to exercise cancellation and progress.
public enum DebugSleep: RPCRequest {
    public static let name = "debug/sleep"
    public struct Params: Codable, Sendable {
        public var ms: Int
        public var steps: Int?
        public var workDoneToken: RequestID?
        public init(ms: Int, steps: Int? = nil, workDoneToken: RequestID? = nil) {
            self.ms = ms
            self.steps = steps
            self.workDoneToken = workDoneToken
        }
    }
    public struct Result: Codable, Sendable {
        public var stepsDone: Int
        public init(stepsDone: Int) { self.stepsDone = stepsDone }
    }
}

/// `debug/echo`: answers its params unchanged (with `--enable-debug-methods`).
public enum DebugEcho: RPCRequest {
    public static let name = "debug/echo"
    public typealias Params = JSONValue
    public typealias Result = JSONValue
}

/// The daemon's own error codes, in the range JSON-RPC reserves for servers.
extension RPCErrorCode {
    /// Too many requests in flight on this connection.
    public static let busy = RPCErrorCode(-32010)
    /// The daemon is shutting down and takes no new work.
    public static let shuttingDown = RPCErrorCode(-32011)
    /// The request came after `shutdown` on this session.
    public static let afterShutdown = RPCErrorCode(-32012)
}

// daemon/status is what monitoring polls: its result writes its own JSON (the same fields,
// in declaration order, as its Encodable form; compared in the tests and the params fuzz target).
extension DaemonStatus.Result: JSONDirectEncodable {
    public func writeJSON(_ w: inout JSONObjectWriter) {
        w.field("version", version)
        w.field("pid", pid)
        w.field("uptimeSeconds", uptimeSeconds)
        w.field("socketPath", socketPath)
        w.field("connections", connections)
        w.field("requests", requests)
        w.field("queues", queues)
        w.field("computeThreads", computeThreads)
        w.field("shuttingDown", shuttingDown)
        w.field("store", store)
    }
}

extension DaemonStatus.Result.Connections: JSONDirectEncodable {
    public func writeJSON(_ w: inout JSONObjectWriter) {
        w.field("open", open); w.field("stdio", stdio); w.field("socket", socket)
        w.field("accepted", accepted); w.field("refused", refused); w.field("dropped", dropped)
    }
}

extension DaemonStatus.Result.Requests: JSONDirectEncodable {
    public func writeJSON(_ w: inout JSONObjectWriter) {
        w.field("served", served); w.field("inFlight", inFlight); w.field("failed", failed); w.field("cancelled", cancelled)
    }
}

extension DaemonStatus.Result.Queues: JSONDirectEncodable {
    public func writeJSON(_ w: inout JSONObjectWriter) {
        w.field("computePending", computePending); w.field("computeRunning", computeRunning)
        w.field("outputBytes", outputBytes); w.field("embedPending", embedPending)
    }
}

extension StoreStatus: JSONDirectEncodable {
    public func writeJSON(_ w: inout JSONObjectWriter) {
        w.field("backend", backend.rawValue)
        w.field("location", location)
        w.field("replica", replica)
        w.field("healthy", healthy)
        w.field("unhealthySince", unhealthySince)
        w.field("lastError", lastError)
    }
}
