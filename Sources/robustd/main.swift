import ArgumentParser
import Daemon
import Encoder
import Foundation
import Tensor
import Logging

struct RobustdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robustd",
        abstract: "Keeps a language model resident and robust in production; speaks JSON-RPC 2.0.",
        discussion: """
            Serve an editor on stdin/stdout (LSP base-protocol framing) with --stdio, shell clients and
            monitoring agents on a Unix socket with --socket, or both at once. Logs go to stderr.

            Examples:
              robustd --socket                    # $XDG_RUNTIME_DIR/robustd.sock (or /tmp/robustd-$UID/)
              robustd --socket /run/user/1000/r.sock --log-level debug
              robustd --stdio                     # for an editor
            """)

    @Flag(help: "Serve a session on stdin/stdout.")
    var stdio = false

    @Option(help: ArgumentHelp("Listen on a Unix socket; PATH is optional.", valueName: "PATH"))
    var socket: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Largest message accepted, in bytes.")
    var maxMessageBytes: Int = Configuration().maxMessageBytes

    @Option(help: "Requests one connection may have in flight.")
    var maxInFlight: Int = Configuration().maxInFlightPerConnection

    @Option(help: "Bytes of replies queued for a client that is not reading before it is disconnected.")
    var maxQueuedOutputBytes: Int = Configuration().maxQueuedOutputBytes

    @Option(help: "How long a socket client may take to finish a message it began, in milliseconds (idle connections are never timed out).")
    var partialMessageTimeoutMs: UInt64 = Configuration().partialMessageTimeoutMs

    @Option(help: "Threads for compute work.")
    var computeThreads: Int = Configuration().computeThreads

    @Option(help: "CPU kernels: auto (the best this CPU runs), baseline, avx2 or avx512.")
    var kernels: String = "auto"

    @Option(help: "The encoder's layer products: fp32, or int8 (per-channel weights, per-row activations; faster where the CPU has VNNI, vectors within 0.99 cosine of fp32). Default: the configuration's model.precision, else fp32.")
    var precision: String?

    @Option(help: "How long a graceful stop waits for requests in flight, in milliseconds.")
    var shutdownGraceMs: UInt64 = Configuration().shutdownGraceMs

    @Flag(help: "Register the debug/* methods (tests and benchmarks).")
    var enableDebugMethods = false

    @Option(help: ArgumentHelp("A HuggingFace model folder to keep resident (e.g. ~/.cache/robustd/models/all-MiniLM-L6-v2).", valueName: "PATH"))
    var model: String?

    @Option(help: ArgumentHelp("The configuration file (TOML; default: $XDG_CONFIG_HOME/robustd/robustd.toml or ~/.config/robustd/robustd.toml if present). docs/configuration.md lists every key.", valueName: "PATH"))
    var config: String?

    @Option(help: ArgumentHelp("The state folder (default: $XDG_STATE_HOME/robustd or ~/.local/state/robustd).", valueName: "PATH"))
    var stateDir: String?

    @Option(help: ArgumentHelp("A PostgreSQL URL for the fleet's shared store (postgresql://user@host/db); default: SQLite in the state folder. A password is better kept in ~/.pgpass or PGPASSFILE than on the command line.", valueName: "URL"))
    var store: String?

    @Option(help: ArgumentHelp("This replica's name in a fleet (default: [store] replica, else the host name); unique among running replicas.", valueName: "NAME"))
    var replica: String?

    @Option(help: "Most texts in one encoder batch.")
    var maxBatch: Int = Configuration().maxBatch

    @Option(help: "Deprecated, has no effect: texts gather into batches only while the encoder is busy.")
    var maxBatchDelayMs: UInt64 = Configuration().maxBatchDelayMs

    @Option(help: "Seconds between metric snapshots kept for metrics/history (at least 0.1).")
    var metricsSnapshotSeconds: Double = Configuration().metricsSnapshotSeconds

    @Option(help: ArgumentHelp("Serve Prometheus's GET /metrics over HTTP on this address (e.g. 127.0.0.1:9464; [::1]:9464).", valueName: "HOST:PORT"))
    var metricsListen: String?

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
        guard stdio || socket != nil else { throw ValidationError("pass --stdio, --socket [PATH], or both") }
        guard maxMessageBytes >= 1024 else { throw ValidationError("--max-message-bytes must be at least 1024") }
        guard maxInFlight >= 1 else { throw ValidationError("--max-in-flight must be at least 1") }
        guard partialMessageTimeoutMs >= 100 && partialMessageTimeoutMs <= 3_600_000 else {
            throw ValidationError("--partial-message-timeout-ms must be between 100 and 3600000")
        }
        if let precision, Precision(rawValue: precision) == nil { throw ValidationError("--precision must be fp32 or int8") }
        guard computeThreads >= 1 && computeThreads <= 256 else { throw ValidationError("--compute-threads must be between 1 and 256") }
        guard maxBatch >= 1 && maxBatch <= 4096 else { throw ValidationError("--max-batch must be between 1 and 4096") }
        guard maxBatchDelayMs <= 1000 else { throw ValidationError("--max-batch-delay-ms must be at most 1000") }
        guard metricsSnapshotSeconds >= 0.1 && metricsSnapshotSeconds <= 86_400 else { throw ValidationError("--metrics-snapshot-seconds must be between 0.1 and 86400") }
        if let store, !Configuration.isStoreURL(store) {
            throw ValidationError("--store must be a PostgreSQL URL (postgresql://…); leave it out for the embedded SQLite store")
        }
        if let replica, !Configuration.isReplicaName(replica) { throw ValidationError("--replica: " + Configuration.replicaNameRule) }
        if let m = metricsListen, Configuration.parseHostPort(m) == nil {
            throw ValidationError("--metrics-listen must be HOST:PORT with a numeric address, e.g. 127.0.0.1:9464 or [::1]:9464")
        }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel)!
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level) }
        let logger = Logger(label: "robustd")

        var config = Configuration()
        let configPath = self.config.map { ($0 as NSString).expandingTildeInPath } ?? Configuration.defaultConfigPath()
        if self.config != nil || FileManager.default.fileExists(atPath: configPath) {
            do {
                config.file = try ConfigFile.load(path: configPath)
                logger.info("configuration read", metadata: ["path": "\(configPath)"])
            } catch {
                logger.critical("cannot start: \(configPath): \(error)")
                throw ExitCode(1)
            }
        }
        config.stdio = stdio
        if let socket { config.socketPath = socket == Self.defaultSocketSentinel ? Configuration.defaultSocketPath() : socket }
        config.maxMessageBytes = maxMessageBytes
        config.maxInFlightPerConnection = maxInFlight
        config.maxQueuedOutputBytes = maxQueuedOutputBytes
        config.partialMessageTimeoutMs = partialMessageTimeoutMs
        config.computeThreads = computeThreads
        config.precision = precision.flatMap(Precision.init(rawValue:)) ?? config.file.precision ?? .fp32
        do {
            try Kernels.use(named: kernels)
        } catch {
            logger.critical("cannot start: --kernels: \(error)")
            throw ExitCode(1)
        }
        logger.info("kernels", metadata: ["cpu": "\(CPUFeatures.detected)", "fp32": "\(Kernels.active.rawValue)", "int8": "\(Kernels.activeInt8.rawValue)"])
        config.shutdownGraceMs = shutdownGraceMs
        config.enableDebugMethods = enableDebugMethods
        config.modelPath = model.map { ($0 as NSString).expandingTildeInPath } ?? config.file.modelPath
        config.maxBatch = maxBatch
        if let stateDir { config.stateDir = (stateDir as NSString).expandingTildeInPath }
        config.maxBatchDelayMs = maxBatchDelayMs
        config.metricsListen = metricsListen.flatMap(Configuration.parseHostPort)
        config.metricsSnapshotSeconds = metricsSnapshotSeconds
        config.storeURL = store ?? config.file.storeURL
        if let r = replica ?? config.file.replica { config.replica = r }
        if let l = config.file.leaseSeconds { config.leaseSeconds = l }

        let code: Int32
        do {
            let daemon = try Daemon(config: config, logger: logger)
            code = try daemon.run()
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        }
        if code != 0 { throw ExitCode(code) }
    }

    static let defaultSocketSentinel = "\u{0}default"

    /// `--socket` takes an optional value: alone (or before another flag) it means the default path.
    static func normalise(_ args: [String]) -> [String] {
        var out: [String] = []
        var i = 0
        while i < args.count {
            out.append(args[i])
            if args[i] == "--socket" && (i + 1 == args.count || args[i + 1].hasPrefix("-")) {
                out.append(defaultSocketSentinel)
            }
            i += 1
        }
        return out
    }
}

// A parent may have left signals blocked (test runners, some supervisors): the daemon relies on
// SIGTERM and SIGINT for a graceful stop, so unblock them.
var unblock = sigset_t()
sigemptyset(&unblock)
sigaddset(&unblock, SIGTERM)
sigaddset(&unblock, SIGINT)
pthread_sigmask(SIG_UNBLOCK, &unblock, nil)

RobustdCommand.main(RobustdCommand.normalise(Array(CommandLine.arguments.dropFirst())))
