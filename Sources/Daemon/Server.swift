import CLibUV
import Encoder
import Scoring
import Store
import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport

/// The daemon: the loop, its transports, the method registry and the lifecycle.
///
/// All state here is owned by the loop thread.
public final class Server {
    public let config: Configuration
    public var logger: Logger
    public let loop: Loop
    public let compute: ComputePool
    public let router = Router()
    let startedAt = Date()
    /// The resident model and its batcher, when started with one.
    public private(set) var encoder: SentenceEncoder?
    public private(set) var batcher: MicroBatcher?
    /// The durable store and the thread that owns it.
    public let store: StoreThread
    /// The version that answers scoring requests (nil until one is fitted or activated).
    /// Swapping it clears the score cache.
    public private(set) var activeVersion: ModelVersion? {
        didSet { if oldValue?.id != activeVersion?.id { scoreCache.clear() } }
    }
    /// The encoder that serves the active version: the base model, or the base model with the
    /// version's fine-tuned layers. Set together with ``activeVersion``, in one loop turn.
    private(set) var activeEncoder: SentenceEncoder?
    private(set) var activeChangedLayers: [Int] = []

    /// Live metrics (traffic, feedback, latency, batches) over sliding windows.
    let metrics = LiveMetrics()
    /// When the active version became active (this run).
    var activatedAt: Date?
    /// Metric subscriptions by id, the timer that serves them, and the HTTP metrics listener.
    var subscriptions: [Int: MetricsSubscription] = [:]
    var nextSubscriptionID = 1
    var subscriptionTimer: EventLoop.Timer?
    var metricsListener: TCPListener?
    var snapshotTimer: EventLoop.Timer?
    /// Open utterance files by connection id and URI (LSP text sync), and how many of their
    /// utterances were scored (changed lines only).
    var documents: [Int: [String: UtteranceDocument]] = [:]
    var documentLinesScored = 0

    /// Makes `v` the version that answers from the next request on. Requests in flight keep the
    /// version and encoder they captured when they started.
    func setActive(_ v: ModelVersion, layers: [Int: BertLayerWeights]) {
        activeEncoder = encoder.map { layers.isEmpty ? $0 : $0.replacingLayers(layers) }
        activeChangedLayers = layers.keys.sorted()
        let changed = activeVersion?.id != v.id
        if changed { activatedAt = Date() }
        activeVersion = v
        if changed { rescoreOpenDocuments() }
    }
    let scoreCache = ScoreCache()
    /// Per-intent impact weights and risk thresholds (from the configuration file; defaults: 1, and RiskThresholds()).
    var impactWeights: [String: Double] = [:]
    var riskThresholds = RiskThresholds()
    var flagSettings = ConfigFile.RiskSettings()
    /// misroutingCosts[meant][answered]: the cost of a failure, when configured.
    var misroutingCosts: [String: [String: Double]] = [:]
    /// Vectors of recent failure cases, for the "near a known failure" reason (newest last, bounded).
    var failureVectors: [[Float]] = []
    /// Business cost per feedback kind (configuration file; defaults in Server+Feedback).
    var feedbackCosts = Server.defaultFeedbackCosts
    /// Scored inputs not yet added to the store's hourly counters.
    var pendingTraffic: [TrafficKey: TrafficTotal] = [:]
    /// Recently scored inputs that had an id, so that feedback can name them by id.
    var recentInputs = RecentInputs(capacity: 100_000)
    var trafficTimer: EventLoop.Timer?
    /// Fine-tune jobs by id (finished ones too, from the store), the waiting ones in order,
    /// the one running, and the semaphore its thread signals when it ends.
    var jobs: [Int: FineTuneJobState] = [:]
    var jobQueue: [Int] = []
    var runningJob: Int?
    var jobTimer: EventLoop.Timer?
    var jobThreadDone: DispatchSemaphore?

    /// The connections, their limits and counters (RPCTransport).
    public private(set) var transport: Transport!
    var connections: [Int: Connection] { transport.connections }
    private var listener: PipeListener?
    private var boundSocketPath: String?
    private var signals: [SignalWatcher] = []
    private var stopTimer: EventLoop.Timer?
    private(set) var isStopping = false
    private var exitCode: Int32 = 0
    /// The stdio session, if any.
    private(set) var stdio: Connection?
    /// Set by `shutdown` on the stdio session; decides `exit`'s code.
    var stdioShutdownRequested = false

    public init(config: Configuration, logger: Logger) throws {
        self.config = config
        self.logger = logger
        loop = try Loop()
        compute = ComputePool(loop: loop, threads: config.computeThreads)
        do {
            try FileManager.default.createDirectory(atPath: config.stateDir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw SocketSetupError(description: "cannot create the state folder \(config.stateDir): \(error.localizedDescription)")
        }
        let dbPath = config.stateDir + "/robustd.sqlite"
        do {
            store = StoreThread(store: try SQLiteStore(path: dbPath), loop: loop)
        } catch {
            throw SocketSetupError(description: "cannot open the store \(dbPath): \(error)")
        }
        if config.stdio {
            // Warnings and errors also reach the editor, as window/logMessage.
            let base = logger.handler
            let window = WindowLogHandler(loop: loop, server: LoopBound(WindowLogHandler.WeakServer(self), loop: loop))
            self.logger = Logger(label: logger.label) { _ in MultiplexLogHandler([base, window]) }
        }
        if let path = config.modelPath {
            let enc = try SentenceEncoder.load(folder: path)
            encoder = enc
            batcher = MicroBatcher(engine: BatchEngine(encoder: enc, threads: config.computeThreads), loop: loop, compute: compute,
                                   maxBatch: config.maxBatch, maxDelayMs: config.maxBatchDelayMs)
            logger.info("model loaded", metadata: [
                "folder": "\(path)", "layers": "\(enc.config.layers)", "hidden": "\(enc.config.hiddenSize)",
                "parameters": "\(enc.config.parameterCount)", "seconds": "\(String(format: "%.2f", enc.loadSeconds))",
            ])
        }
        for (k, v) in config.file.costs { feedbackCosts[k] = v }
        impactWeights = config.file.impact
        riskThresholds = config.file.risk.thresholds
        flagSettings = config.file.risk
        misroutingCosts = config.file.misrouting
        transport = Transport(loop: loop, compute: compute, router: router, limits: config.transportLimits, logger: self.logger)
        transport.delegate = self
        registerLifecycleMethods()
        registerModelMethods()
        registerDatasetMethods()
        registerVersionMethods()
        registerScoreMethods()
        registerFeedbackMethods()
        registerRegionMethods()
        registerFineTuneMethods()
        registerMetricsMethods()
        registerEvalMethods()
        registerDocumentMethods()
        VersionFiles.cleanTemporaries(stateDir: config.stateDir)
        loadActiveVersion()
        loadJobs()
        loadFailureVectors()
    }

    public var socketPath: String? { boundSocketPath }

    // MARK: Running

    /// Sets up the transports and runs until stopped. Returns the process exit code.
    public func run() throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        try watchSignals()
        if let path = config.socketPath { try listen(on: path) }
        if config.stdio { try attachStdio() }
        if let m = config.metricsListen { try listenForMetrics(host: m.host, port: m.port) }
        startTrafficFlush()
        startMetricSnapshots()
        guard config.stdio || config.socketPath != nil else {
            throw SocketSetupError(description: "nothing to serve: pass --stdio, --socket, or both")
        }
        logger.info("robustd \(RobustdVersion.current) ready", metadata: [
            "pid": "\(getpid())", "socket": "\(boundSocketPath ?? "-")", "stdio": "\(config.stdio)",
            "computeThreads": "\(compute.threadCount)",
        ])
        loop.run()
        // A fine-tune stops within one training step; its thread is waited for before the loop closes.
        if let done = jobThreadDone {
            logger.info("waiting for the fine-tune job to stop", metadata: ["job": "\(runningJob ?? 0)"])
            done.wait()
        }
        compute.shutdown()
        store.shutdown()
        let leftover = loop.close()
        if leftover != 0 { logger.debug("loop closed with handles left", metadata: ["result": "\(leftover)"]) }
        logger.info("robustd stopped", metadata: ["exitCode": "\(exitCode)"])
        return exitCode
    }

    private func watchSignals() throws {
        for sig in [SIGTERM, SIGINT] {
            let w = try SignalWatcher(loop: loop)
            try w.start(signal: sig) { [unowned self] signum in
                self.logger.info("signal received; stopping", metadata: ["signal": "\(signum == SIGTERM ? "SIGTERM" : "SIGINT")"])
                self.stop(exitCode: 0)
            }
            w.unref()
            signals.append(w)
        }
    }

    private func listen(on path: String) throws {
        try SocketPath.prepare(path)
        let l = try PipeListener(loop: loop)
        let old = umask(0o177)
        do {
            try l.bind(path: path)
        } catch {
            umask(old)
            l.close()
            throw SocketSetupError(description: "cannot bind \(path): \(error)")
        }
        umask(old)
        chmod(path, 0o600)
        try l.listen { [unowned self] result in
            switch result {
            case .success(let pipe): self.accept(pipe)
            case .failure(let e): self.logger.warning("accept failed", metadata: ["error": "\(e)"])
            }
        }
        listener = l
        boundSocketPath = path
    }

    private func accept(_ pipe: EventLoop.Pipe) {
        let me = getuid()
        guard let cred = pipe.peerCredentials() else {
            logger.warning("refused a connection: its peer credentials could not be read")
            transport.counters.refused += 1
            pipe.close()
            return
        }
        guard cred.uid == me else {
            logger.warning("refused a connection from another user", metadata: ["peerUid": "\(cred.uid)", "peerPid": "\(cred.pid)", "ownUid": "\(me)"])
            transport.counters.refused += 1
            pipe.close()
            return
        }
        guard !isStopping else { pipe.close(); return }
        let conn: Connection
        do {
            conn = try transport.open(kind: .socket, input: pipe, output: pipe, peerPid: cred.pid)
        } catch {
            logger.warning("could not read from a new connection", metadata: ["error": "\(error)"])
            pipe.close()
            return
        }
        logger.debug("connection accepted", metadata: ["conn": "\(conn.id)", "peerPid": "\(cred.pid)"])
    }

    private func attachStdio() throws {
        let input = try StdioStream.open(loop: loop, fd: 0)
        let output = try StdioStream.open(loop: loop, fd: 1)
        stdio = try transport.open(kind: .stdio, input: input, output: output)
    }


    // MARK: Stopping

    /// Stops gracefully: no new connections or requests; requests in flight get up to
    /// `shutdownGraceMs` to finish; replies are flushed; the socket file is removed.
    public func stop(exitCode code: Int32) {
        guard !isStopping else { return }
        isStopping = true
        transport.isStopping = true
        exitCode = code
        if let l = listener {
            l.close()
            listener = nil
        }
        metricsListener?.close()
        metricsListener = nil
        removeSocketFile()
        if transport.counters.inFlight == 0 {
            finishStop()
            return
        }
        logger.info("waiting for requests in flight", metadata: ["inFlight": "\(transport.counters.inFlight)", "graceMs": "\(config.shutdownGraceMs)"])
        let t = try? EventLoop.Timer(loop: loop)
        t?.start(timeoutMs: config.shutdownGraceMs) { [unowned self] in
            self.logger.warning("grace period over; cancelling requests in flight", metadata: ["inFlight": "\(self.transport.counters.inFlight)"])
            self.finishStop()
        }
        stopTimer = t
    }

    private var finishing = false

    fileprivate func finishStop() {
        guard !finishing else { return }
        finishing = true
        stopTimer?.close()
        stopTimer = nil
        transport.closeAll(reason: "daemon stopping")
        if connections.isEmpty { closeRemainingHandles() }
        // A client that never reads must not hold the daemon up: force the end.
        if connections.isEmpty { return }
        let force = try? EventLoop.Timer(loop: loop)
        force?.start(timeoutMs: 2000) { [unowned self] in
            self.transport.closeAll(reason: "flush timed out", flush: false)
        }
        stopTimer = force
    }

    fileprivate func closeRemainingHandles() {
        flushTraffic()
        jobTimer?.close()
        jobTimer = nil
        subscriptionTimer?.close()
        subscriptionTimer = nil
        subscriptions.removeAll()
        snapshotMetrics()
        snapshotTimer?.close()
        snapshotTimer = nil
        if let id = runningJob { jobs[id]?.token.cancel() }
        trafficTimer?.close()
        trafficTimer = nil
        batcher?.close()
        for s in signals { s.close() }
        signals.removeAll()
        stopTimer?.close()
        stopTimer = nil
    }

    private func removeSocketFile() {
        if let path = boundSocketPath {
            unlink(path)
            boundSocketPath = nil
        }
    }

    // MARK: Status

    func status() -> DaemonStatus.Result {
        let depth = compute.depth
        let c = transport.counters
        return DaemonStatus.Result(
            version: RobustdVersion.current,
            pid: Int(getpid()),
            uptimeSeconds: Date().timeIntervalSince(startedAt),
            socketPath: boundSocketPath,
            connections: .init(open: c.open, stdio: c.openStdio, socket: c.openSocket,
                               accepted: c.accepted, refused: c.refused, dropped: c.dropped),
            requests: .init(served: c.served, inFlight: c.inFlight, failed: c.failed, cancelled: c.cancelled),
            queues: .init(computePending: depth.pending, computeRunning: depth.running,
                          outputBytes: c.queuedOutputBytes, embedPending: batcher?.pendingTexts ?? 0),
            computeThreads: compute.threadCount,
            shuttingDown: isStopping)
    }
}

extension Server: TransportDelegate {
    public func transport(_ transport: Transport, inputEndedOn conn: Connection) {
        // The editor closed stdin: the session is over, and so is a stdio daemon.
        if conn.kind == .stdio { stop(exitCode: stdioShutdownRequested ? 0 : 1) }
    }

    public func transport(_ transport: Transport, closed conn: Connection) {
        documents[conn.id] = nil
        if conn === stdio { stdio = nil }
        if isStopping && transport.connections.isEmpty { closeRemainingHandles() }
    }

    public func transportBecameIdle(_ transport: Transport) {
        if isStopping { finishStop() }
    }
}
