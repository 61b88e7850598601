import EventLoop
import Logging
import RobustdAPI

/// Limits every connection enforces (docs/protocol.md, "Limits").
public struct TransportLimits: Sendable {
    public var maxMessageBytes: Int
    public var maxBatchSize: Int
    public var maxInFlightPerConnection: Int
    public var maxQueuedOutputBytes: Int
    /// How long a socket client may take to finish a message it began (a slow-loris client
    /// holding a half-sent frame is closed past it); idle connections are never timed out.
    public var partialMessageTimeoutMs: UInt64

    public init(maxMessageBytes: Int = 16 << 20, maxBatchSize: Int = 1024, maxInFlightPerConnection: Int = 1024,
                maxQueuedOutputBytes: Int = 64 << 20, partialMessageTimeoutMs: UInt64 = 30_000) {
        self.maxMessageBytes = maxMessageBytes
        self.maxBatchSize = maxBatchSize
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.maxQueuedOutputBytes = maxQueuedOutputBytes
        self.partialMessageTimeoutMs = partialMessageTimeoutMs
    }
}

/// Counters of connections and requests, kept as they change so that reading them
/// (`daemon/status`) costs the same with one client or five thousand.
///
/// - Important: Used only on the loop thread.
public final class TransportCounters {
    /// Socket connections accepted, and refused (peer credentials), over the daemon's life.
    public var accepted = 0, refused = 0
    /// Connections dropped for not reading their replies.
    public internal(set) var dropped = 0
    /// Connections closed for leaving a message half sent past `partialMessageTimeoutMs`.
    public internal(set) var timedOut = 0
    public internal(set) var served = 0, failed = 0, cancelled = 0, inFlight = 0
    public internal(set) var openStdio = 0, openSocket = 0
    /// Reply bytes queued for slow readers, over every connection.
    public internal(set) var queuedOutputBytes = 0

    public var open: Int { openStdio + openSocket }

    init() {}
}

/// What the transport tells its owner (the daemon's lifecycle).
///
/// - Important: Called on the loop thread.
public protocol TransportDelegate: AnyObject {
    /// The peer of `connection` stopped sending (EOF).
    func transport(_ transport: Transport, inputEndedOn connection: Connection)
    /// `connection` is closed and forgotten.
    func transport(_ transport: Transport, closed connection: Connection)
    /// The last request in flight was answered.
    func transportBecameIdle(_ transport: Transport)
}

/// The connections of one daemon, the method registry they dispatch to, their limits and
/// counters. Knows nothing of what the methods do.
///
/// - Important: Used only on the loop thread; every entry point checks it.
public final class Transport {
    public let loop: Loop
    public let compute: ComputePool
    public let router: Router
    public let limits: TransportLimits
    public let logger: Logger
    public let counters = TransportCounters()
    public weak var delegate: TransportDelegate?
    public private(set) var connections: [Int: Connection] = [:]
    private var nextID = 1
    /// Set while the daemon stops: new requests answer -32011 unless their method allows it.
    public var isStopping = false

    public init(loop: Loop, compute: ComputePool, router: Router, limits: TransportLimits, logger: Logger) {
        self.loop = loop
        self.compute = compute
        self.router = router
        self.limits = limits
        self.logger = logger
        // Cancellation overtakes everything queued: the request answers -32800 at once.
        router.onNotification(CancelRequest.self, gate: [.afterShutdown, .whileStopping]) { params, conn in
            conn.cancel(id: params.id)
        }
    }

    /// Opens a connection over `input`/`output` (the same object for a socket) and starts reading.
    @discardableResult
    public func open(kind: Connection.Kind, input: ByteStream, output: ByteStream, peerPid: Int32? = nil) throws(UVError) -> Connection {
        loop.preconditionOnLoop()
        let conn = Connection(id: nextID, kind: kind, input: input, output: output, transport: self, peerPid: peerPid)
        nextID += 1
        try conn.start()
        connections[conn.id] = conn
        switch kind {
        case .stdio: counters.openStdio += 1
        case .socket: counters.openSocket += 1; counters.accepted += 1
        }
        output.onQueuedBytesChange { [counters] delta in counters.queuedOutputBytes += delta }
        return conn
    }

    /// Closes every connection (flushing queued replies unless `flush` is false).
    public func closeAll(reason: String, flush: Bool = true) {
        for conn in Array(connections.values) { conn.close(reason: reason, flush: flush) }
    }

    // MARK: Called by connections

    func requestStarted() { counters.inFlight += 1 }

    func requestFinished(_ outcome: Connection.Outcome) {
        counters.inFlight -= 1
        counters.served += 1
        switch outcome {
        case .served: break
        case .failed: counters.failed += 1
        case .cancelled: counters.cancelled += 1
        }
        if counters.inFlight == 0 { delegate?.transportBecameIdle(self) }
    }

    /// A request answered before it got a context (bad envelope, unknown method, a limit).
    func answeredAtOnce() {
        counters.failed += 1
        counters.served += 1
    }

    func inputEnded(_ conn: Connection) { delegate?.transport(self, inputEndedOn: conn) }

    func dropped(_ conn: Connection) { counters.dropped += 1 }
    func timedOut() { counters.timedOut += 1 }

    func closed(_ conn: Connection) {
        guard connections.removeValue(forKey: conn.id) != nil else { return }
        switch conn.kind {
        case .stdio: counters.openStdio -= 1
        case .socket: counters.openSocket -= 1
        }
        delegate?.transport(self, closed: conn)
    }
}
