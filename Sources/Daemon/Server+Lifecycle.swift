import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI

extension Server {
    /// The methods every session has: the LSP lifecycle, discovery and the daemon's own.
    func registerLifecycleMethods() {
        router.on(Initialize.self, gate: [.beforeInitialize]) { [unowned self] params, ctx throws(RPCError) in
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
                capabilities: self.capabilities(),
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
                self.stop(exitCode: self.stdioShutdownRequested ? 0 : 1)
            } else {
                conn.close(reason: "exit")
            }
        }

        router.on(Discover.self, gate: [.beforeInitialize, .whileStopping]) { _, _ throws(RPCError) in
            try OpenRPC.document()
        }

        router.on(DaemonStatus.self, gate: [.whileStopping]) { [unowned self] _, _ in self.status() }

        router.on(Ping.self) { _, _ in EmptyResult() }

        router.on(Stop.self) { [unowned self] _, ctx in
            self.logger.info("stop requested by a client", metadata: ["conn": "\(ctx.connection.id)"])
            // Answer first; the stop begins on the next loop iteration.
            self.loop.post { [loopBound = LoopBound(self, loop: self.loop)] in loopBound.value.stop(exitCode: 0) }
            return EmptyResult()
        }

        if config.enableDebugMethods { registerDebugMethods() }
    }

    func capabilities() -> JSONValue {
        [
            // Utterance files (docs/editors.md): open/close and incremental changes, hover.
            "textDocumentSync": ["openClose": true, "change": 2],
            "hoverProvider": true,
            "experimental": [
                "robustd": [
                    "methods": .array(router.methodNames.map { .string($0) }),
                    "framing": ["contentLength", "ndjson"],
                    "maxMessageBytes": .int(Int64(config.maxMessageBytes)),
                ],
            ],
        ]
    }

    private func registerDebugMethods() {
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
