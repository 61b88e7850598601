import EventLoop
import Logging
import RobustdAPI
import RPCTransport

/// Forwards warnings and errors to the stdio client as `window/logMessage`, so that an
/// editor shows what the daemon's stderr log says. Safe from any thread: each line is
/// posted to the loop, which sends it if an initialized stdio session exists.
struct WindowLogHandler: LogHandler {
    var logLevel: Logger.Level = .warning
    var metadata: Logger.Metadata = [:]
    let loop: Loop
    let stdio: LoopBound<StdioSession>

    /// The stdio connection, once attached.
    final class StdioSession {
        weak var connection: Connection?
        init() {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var text = "\(event.message)"
        var all = metadata
        if let m = event.metadata { all.merge(m) { _, new in new } }
        for k in all.keys.sorted() { text += " \(k)=\(all[k]!)" }
        let type: Int
        switch event.level {
        case .critical, .error: type = 1
        case .warning: type = 2
        case .notice, .info: type = 3
        default: type = 4
        }
        let stdio = self.stdio
        let params = LogMessage.Params(type: type, message: text)
        loop.post {
            guard let conn = stdio.value.connection, conn.session == .initialized else { return }
            conn.notify(LogMessage.self, params)
        }
    }
}

extension WindowLogHandler {
    /// `base`, and also the stdio client (warnings and errors) once it is initialized.
    static func teeing(_ base: Logger, loop: Loop, stdio: StdioSession) -> Logger {
        let window = WindowLogHandler(loop: loop, stdio: LoopBound(stdio, loop: loop))
        return Logger(label: base.label) { _ in MultiplexLogHandler([base.handler, window]) }
    }
}
