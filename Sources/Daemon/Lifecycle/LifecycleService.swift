import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport

/// The methods every session has: the LSP lifecycle (`initialize`, `initialized`,
/// `shutdown`, `exit`), `rpc.discover`, and the daemon's own (`daemon/status`, `ping`,
/// `stop`; `debug/*` when enabled).
///
/// - Important: Used only on the loop thread.
final class LifecycleService: DaemonService {
    private let transport: Transport
    private let stopper: GracefulStop
    private let compute: ComputePool
    private let model: ActiveModel
    private let logger: Logger
    private let startedAt: Date
    private let maxMessageBytes: Int
    private let debugMethods: Bool
    /// The socket path clients connect to (nil: none).
    private let socketPath: () -> String?
    /// The store's health and the replica's identity.
    private let storeStatus: () -> StoreStatus
    /// Set by `shutdown` on the stdio session; decides `exit`'s code.
    private(set) var stdioShutdownRequested = false
    private let pid = Int(getpid())

    init(transport: Transport, stopper: GracefulStop, compute: ComputePool, model: ActiveModel, logger: Logger, startedAt: Date,
         maxMessageBytes: Int, debugMethods: Bool, socketPath: @escaping () -> String?, storeStatus: @escaping () -> StoreStatus) {
        self.storeStatus = storeStatus
        self.transport = transport
        self.stopper = stopper
        self.compute = compute
        self.model = model
        self.logger = logger
        self.startedAt = startedAt
        self.maxMessageBytes = maxMessageBytes
        self.debugMethods = debugMethods
        self.socketPath = socketPath
    }

    func register(on router: Router) {
        router.on(Initialize.self, gate: [.beforeInitialize]) { [unowned self, unowned router] params, ctx throws(RPCError) in
            let conn = ctx.connection
            if conn.kind == .stdio {
                guard conn.session == .uninitialized else {
                    throw RPCError.invalidRequest("'initialize' may be sent only once per session")
                }
                conn.session = .initialized
            }
            self.logger.info("session initialized", metadata: [
                "conn": "\(conn.id)", "client": "\(params.clientInfo?.name ?? "unknown") \(params.clientInfo?.version ?? "")",
            ])
            return Initialize.Result(
                capabilities: self.capabilities(methods: router.methodNames),
                serverInfo: .init(name: "robustd", version: RobustdVersion.current),
                protocolVersion: RobustdVersion.protocolVersion)
        }

        router.onNotification(Initialized.self) { _, _ in }

        router.on(Shutdown.self, gate: [.whileStopping]) { [unowned self] _, ctx throws(RPCError) in
            ctx.connection.session = .shutDown
            if ctx.connection.kind == .stdio { self.stdioShutdownRequested = true }
            return .null
        }

        router.onNotification(Exit.self, gate: [.beforeInitialize, .afterShutdown, .whileStopping]) { [unowned self] _, conn in
            if conn.kind == .stdio {
                self.stopper.begin(exitCode: self.stdioShutdownRequested ? 0 : 1)
            } else {
                conn.close(reason: "exit")
            }
        }

        router.on(Discover.self, gate: [.beforeInitialize, .whileStopping]) { _, _ throws(RPCError) in
            try OpenRPCSchema.document()
        }

        router.on(DaemonStatus.self, gate: [.whileStopping]) { [unowned self] _, _ in self.status() }

        router.on(Ping.self) { _, _ in EmptyResult() }

        router.on(Stop.self) { [unowned self] _, ctx in
            self.logger.info("stop requested by a client", metadata: ["conn": "\(ctx.connection.id)"])
            // Answer first; the stop begins on the next loop iteration.
            let stopper = LoopBound(self.stopper, loop: ctx.loop)
            ctx.loop.post { stopper.value.begin(exitCode: 0) }
            return EmptyResult()
        }

        if debugMethods { registerDebugMethods(on: router) }
    }

    /// The stdio session ended (EOF): so does a stdio daemon.
    func stdioEnded() {
        stopper.begin(exitCode: stdioShutdownRequested ? 0 : 1)
    }

    func gauges(into values: inout [String: Double]) {
        let depth = compute.depth
        values["queue.computePending"] = Double(depth.pending)
        values["queue.computeRunning"] = Double(depth.running)
        values["connections.open"] = Double(transport.counters.open)
    }

    private func capabilities(methods: [String]) -> JSONValue {
        [
            // Utterance files (docs/editors.md): open/close and incremental changes, hover.
            "textDocumentSync": ["openClose": true, "change": 2],
            "hoverProvider": true,
            "experimental": [
                "robustd": [
                    "methods": .array(methods.map { .string($0) }),
                    "framing": ["contentLength", "ndjson"],
                    "maxMessageBytes": .int(Int64(maxMessageBytes)),
                ],
            ],
        ]
    }

    /// `daemon/status`: counters kept as they change, so its cost does not grow with the
    /// number of connections.
    func status() -> DaemonStatus.Result {
        let depth = compute.depth
        let c = transport.counters
        return DaemonStatus.Result(
            version: RobustdVersion.current,
            pid: pid,
            uptimeSeconds: Date().timeIntervalSince(startedAt),
            socketPath: socketPath(),
            connections: .init(open: c.open, stdio: c.openStdio, socket: c.openSocket,
                               accepted: c.accepted, refused: c.refused, dropped: c.dropped),
            requests: .init(served: c.served, inFlight: c.inFlight, failed: c.failed, cancelled: c.cancelled),
            queues: .init(computePending: depth.pending, computeRunning: depth.running,
                          outputBytes: c.queuedOutputBytes, embedPending: model.batcher?.pendingTexts ?? 0),
            computeThreads: compute.threadCount,
            shuttingDown: stopper.isStopping,
            store: storeStatus())
    }

    private func registerDebugMethods(on router: Router) {
        router.on(DebugEcho.self) { params, _ in params }

        router.onDeferred(DebugSleep.self) { params, ctx in
            guard params.ms >= 0, params.ms <= 600_000 else {
                ctx.reply(.failure(.invalidParams("'ms' must be between 0 and 600000", field: "ms", expected: "0…600000", found: "\(params.ms)")))
                return
            }
            let steps = max(1, params.steps ?? 10)
            let progress = ctx.progress(token: params.workDoneToken)
            progress?.begin(title: "Sleeping \(params.ms) ms")
            let bound = progress.map { LoopBound($0, loop: ctx.loop) }
            let loop = ctx.loop
            ctx.compute { token throws(RPCError) -> DebugSleep.Result in
                for i in 0..<steps {
                    if token.isCancelled {
                        if let bound { loop.post { bound.value.end(message: "cancelled") } }
                        throw RPCError.cancelled
                    }
                    usleep(UInt32(params.ms * 1000 / steps))
                    if let bound {
                        let step = i + 1
                        loop.post { bound.value.report(message: "step \(step) of \(steps)", percentage: step * 100 / steps) }
                    }
                }
                if let bound { loop.post { bound.value.end(message: "done") } }
                return DebugSleep.Result(stepsDone: steps)
            }
        }
    }
}
