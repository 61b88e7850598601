import Encoder
import Foundation
import RPCTransport

/// Everything the daemon is told at start. Defaults suit one user on one machine.
public struct Configuration: Sendable {
    /// Serve the LSP-style session on stdin/stdout.
    public var stdio = false
    /// Listen on this Unix socket path (nil: no socket).
    public var socketPath: String? = nil
    /// The limits every connection enforces (their defaults: TransportLimits; the flags set
    /// them through the properties below).
    public var transportLimits = TransportLimits()
    /// Largest message accepted, in bytes; larger ones are answered with an error and skipped.
    public var maxMessageBytes: Int {
        get { transportLimits.maxMessageBytes }
        set { transportLimits.maxMessageBytes = newValue }
    }
    /// Requests a connection may have unanswered at once; more are answered `busy` (-32010).
    public var maxInFlightPerConnection: Int {
        get { transportLimits.maxInFlightPerConnection }
        set { transportLimits.maxInFlightPerConnection = newValue }
    }
    /// Most messages in one batch.
    public var maxBatchSize: Int {
        get { transportLimits.maxBatchSize }
        set { transportLimits.maxBatchSize = newValue }
    }
    /// Output bytes queued for a client that is not reading before it is disconnected.
    public var maxQueuedOutputBytes: Int {
        get { transportLimits.maxQueuedOutputBytes }
        set { transportLimits.maxQueuedOutputBytes = newValue }
    }
    /// How long a socket client may take to finish a message it began, in milliseconds.
    public var partialMessageTimeoutMs: UInt64 {
        get { transportLimits.partialMessageTimeoutMs }
        set { transportLimits.partialMessageTimeoutMs = newValue }
    }
    /// Threads for compute work (inference, training).
    public var computeThreads = max(1, ProcessInfo.processInfo.activeProcessorCount)
    /// How long a graceful stop waits for requests in flight, in milliseconds.
    public var shutdownGraceMs: UInt64 = 10_000
    /// Register the `debug/*` methods (for tests and benchmarks).
    public var enableDebugMethods = false
    /// A HuggingFace model folder to keep resident (nil: no model; model methods answer -32020).
    public var modelPath: String? = nil
    /// Most texts the micro-batcher puts in one encoder batch.
    public var maxBatch = 64
    /// How the encoder's layer products are computed (`--precision`): fp32, or int8 (docs/performance.md).
    public var precision: Precision = .fp32
    /// Deprecated, no effect: texts gather only while the encoder is busy (see MicroBatcher).
    public var maxBatchDelayMs: UInt64 = 2

    /// The state folder: the SQLite database and one folder per model version (with a
    /// PostgreSQL store: the cache of the versions' files).
    public var stateDir: String = Configuration.defaultStateDir()
    /// A PostgreSQL URL: the fleet's shared store (nil: SQLite in the state folder).
    public var storeURL: String? = nil
    /// This replica's name in the fleet: unique among the running replicas.
    public var replica: String = Configuration.defaultReplicaName()
    /// Seconds a replica's heartbeat stays valid; its jobs are interrupted past it.
    public var leaseSeconds = 15.0

    public static func isStoreURL(_ s: String) -> Bool { s.hasPrefix("postgresql://") || s.hasPrefix("postgres://") }

    public static let replicaNameRule = "a replica name is 1–64 letters, digits, '.', '_' or '-'"
    public static func isReplicaName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    /// The host name (cut to a valid replica name).
    public static func defaultReplicaName() -> String {
        let h = String(ProcessInfo.processInfo.hostName.prefix(64).map { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) ? $0 : "-" })
        return h.isEmpty ? "robustd" : h
    }

    /// Business costs, impact weights and risk thresholds (from `--config`).
    public var file = ConfigFile()
    /// How often live metrics are snapshotted into the store (metrics/history).
    public var metricsSnapshotSeconds = 60.0
    /// Where GET /metrics is served over HTTP (nil: nowhere).
    public var metricsListen: (host: String, port: Int)? = nil

    /// "127.0.0.1:9464" or "[::1]:9464" (a numeric address and a port 0–65535).
    public static func parseHostPort(_ s: String) -> (host: String, port: Int)? {
        var host: Substring, portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            portText = s[s.index(close, offsetBy: 2)...]
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
            guard !host.contains(":") else { return nil }
        }
        guard let port = Int(portText), (0...65535).contains(port), !host.isEmpty else { return nil }
        var a4 = in_addr(), a6 = in6_addr()
        let ok = host.contains(":") ? inet_pton(AF_INET6, String(host), &a6) == 1 : inet_pton(AF_INET, String(host), &a4) == 1
        return ok ? (String(host), port) : nil
    }

    public init() {}

    /// `$XDG_CONFIG_HOME/robustd/robustd.toml`, or `~/.config/robustd/robustd.toml`.
    public static func defaultConfigPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["XDG_CONFIG_HOME"], dir.hasPrefix("/") { return dir + "/robustd/robustd.toml" }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".config/robustd/robustd.toml").path
    }

    /// `$XDG_STATE_HOME/robustd`, or `~/.local/state/robustd`.
    public static func defaultStateDir(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["XDG_STATE_HOME"], dir.hasPrefix("/") { return dir + "/robustd" }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/state/robustd").path
    }

    /// The default socket: `$XDG_RUNTIME_DIR/robustd.sock`, or `/tmp/robustd-$UID/robustd.sock`.
    public static func defaultSocketPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let dir = environment["XDG_RUNTIME_DIR"], !dir.isEmpty, dir.hasPrefix("/") {
            return dir + "/robustd.sock"
        }
        return "/tmp/robustd-\(getuid())/robustd.sock"
    }
}
