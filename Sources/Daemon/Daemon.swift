import Encoder
import EventLoop
import Foundation
import Logging
import RobustdAPI
import RPCTransport
import Store

/// The daemon: the loop, the store, the resident model, the transports, and one service
/// per capability, composed here and closed in reverse order (docs/architecture.md).
public final class Daemon {
    private let config: Configuration
    private let logger: Logger
    private let loop: Loop
    private let compute: ComputePool
    private let store: StoreThread
    private let transport: Transport
    private let model: ActiveModel
    private let stopper: GracefulStop
    private let socket: SocketListener
    private let metricsHTTP: MetricsHTTP
    private let lifecycle: LifecycleService
    private let fineTune: FineTuneService
    private let services: ServiceList
    private let stdio = WindowLogHandler.StdioSession()
    private var signals: [SignalWatcher] = []

    public init(config: Configuration, logger baseLogger: Logger) throws {
        self.config = config
        loop = try Loop()
        compute = ComputePool(loop: loop, threads: config.computeThreads)
        store = try StoreThread.open(config: config, loop: loop)
        logger = config.stdio ? WindowLogHandler.teeing(baseLogger, loop: loop, stdio: stdio) : baseLogger
        model = try ActiveModel.load(config: config, loop: loop, compute: compute, logger: logger)
        let router = Router()
        transport = Transport(loop: loop, compute: compute, router: router, limits: config.transportLimits, logger: logger)
        stopper = GracefulStop(loop: loop, transport: transport, graceMs: config.shutdownGraceMs, logger: logger)
        socket = SocketListener(loop: loop, transport: transport, logger: logger)

        // State more than one service reads, each owned by its own type.
        let startedAt = Date()
        let policy = RiskPolicy(file: config.file)
        let pipeline = ScoringPipeline(model: model, policy: policy, compute: compute)
        let metrics = LiveMetrics(), traffic = TrafficLedger(store: store, loop: loop, logger: logger)
        let recent = RecentInputs(), failures = FailureMemory()
        let repository = VersionRepository(files: .init(stateDir: config.stateDir, baseModel: model.encoder?.folder ?? "",
                                                        vocabulary: model.encoder?.tokenizer.idToToken ?? [], twins: model.twins),
                                           store: store, compute: compute)
        let services = ServiceList()
        self.services = services

        let fleet = FleetService(config: config, model: model, store: store, repository: repository, loop: loop, logger: logger)
        lifecycle = LifecycleService(transport: transport, stopper: stopper, compute: compute, model: model, logger: logger,
                                     startedAt: startedAt, maxMessageBytes: config.maxMessageBytes,
                                     debugMethods: config.enableDebugMethods, socketPath: { [weak socket] in socket?.path },
                                     storeStatus: { [unowned fleet] in fleet.status })
        let rollout = RolloutService(model: model, pipeline: pipeline, policy: policy, store: store, repository: repository, loop: loop,
                                     logger: logger, defaults: config.file.rollout)
        fleet.onRolloutChange = { [weak rollout] in rollout?.refreshFleetRollout() }
        let regions = RegionService(store: store, traffic: traffic, policy: policy, compute: compute, model: model)
        fineTune = FineTuneService(model: model, store: store, regions: regions, policy: policy, repository: repository, rollout: rollout,
                                   settings: config.file.finetune, loop: loop, logger: logger)
        let metricsService = MetricsService(metrics: metrics, model: model, store: store, loop: loop, logger: logger, startedAt: startedAt,
                                            snapshotSeconds: config.metricsSnapshotSeconds, gauges: { [weak services] in services?.gauges() ?? [:] })
        metricsHTTP = MetricsHTTP(loop: loop, logger: logger, text: { [weak metricsService] in metricsService?.prometheusText() ?? "" })
        services.all = [
            lifecycle,
            fleet,
            DatasetService(store: store, logger: logger),
            VersionService(model: model, pipeline: pipeline, store: store, repository: repository, compute: compute, logger: logger),
            ScoringService(model: model, pipeline: pipeline, policy: policy, traffic: traffic, recent: recent, failures: failures, metrics: metrics,
                           rollout: rollout),
            FeedbackService(model: model, pipeline: pipeline, policy: policy, store: store, recent: recent, failures: failures,
                            metrics: metrics, rollout: rollout, logger: logger),
            rollout,
            regions,
            fineTune,
            EvalService(model: model, pipeline: pipeline, policy: policy, store: store, repository: repository),
            metricsService,
            DocumentService(model: model, pipeline: pipeline, policy: policy),
        ]
        for s in services.all { s.register(on: router) }
        transport.delegate = self
        stopper.onBegin = { [unowned self] in
            self.socket.close()
            self.metricsHTTP.close()
            for s in self.services.all { s.stopping() }
        }
        stopper.onQuiesced = { [unowned self] in
            for s in self.services.all.reversed() { s.close() }
            self.model.close()
            for s in self.signals { s.close() }
            self.signals.removeAll()
        }
    }

    /// Sets up the transports and runs until stopped. Returns the process exit code.
    public func run() throws -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        try watchSignals()
        guard config.stdio || config.socketPath != nil else {
            throw SocketSetupError(description: "nothing to serve: pass --stdio, --socket, or both")
        }
        if let path = config.socketPath { try socket.listen(on: path) }
        if config.stdio {
            stdio.connection = try transport.open(kind: .stdio, input: try StdioStream.open(loop: loop, fd: 0),
                                                  output: try StdioStream.open(loop: loop, fd: 1))
        }
        if let m = config.metricsListen { try metricsHTTP.listen(host: m.host, port: m.port) }
        logger.info("robustd \(RobustdVersion.current) ready", metadata: [
            "pid": "\(getpid())", "socket": "\(socket.path ?? "-")", "stdio": "\(config.stdio)", "computeThreads": "\(compute.threadCount)",
        ])
        loop.run()
        fineTune.waitForJobThread()
        compute.shutdown()
        store.shutdown()
        let leftover = loop.close()
        if leftover != 0 { logger.debug("loop closed with handles left", metadata: ["result": "\(leftover)"]) }
        logger.info("robustd stopped", metadata: ["exitCode": "\(stopper.exitCode)"])
        return stopper.exitCode
    }

    private func watchSignals() throws {
        for sig in [SIGTERM, SIGINT] {
            let w = try SignalWatcher(loop: loop)
            try w.start(signal: sig) { [unowned self] signum in
                self.logger.info("signal received; stopping", metadata: ["signal": "\(signum == SIGTERM ? "SIGTERM" : "SIGINT")"])
                self.stopper.begin(exitCode: 0)
            }
            w.unref()
            signals.append(w)
        }
    }
}

extension Daemon: TransportDelegate {
    public func transport(_ transport: Transport, inputEndedOn conn: Connection) {
        // The editor closed stdin: the session is over, and so is a stdio daemon.
        if conn.kind == .stdio { lifecycle.stdioEnded() }
    }

    public func transport(_ transport: Transport, closed conn: Connection) {
        for s in services.all { s.connectionClosed(conn) }
        stopper.connectionClosed()
    }

    public func transportBecameIdle(_ transport: Transport) { stopper.becameIdle() }
}

/// The daemon's services in composition order.
final class ServiceList {
    var all: [DaemonService] = []

    /// Every service's gauges.
    func gauges() -> [String: Double] {
        var g: [String: Double] = [:]
        for s in all { s.gauges(into: &g) }
        return g
    }
}
