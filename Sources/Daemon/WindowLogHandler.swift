import EventLoop
import Logging
import RobustdAPI

/// Forwards warnings and errors to the stdio client as `window/logMessage`, so that an
/// editor shows what the daemon's stderr log says. Safe from any thread: each line is
/// posted to the loop, which sends it if an initialized stdio session exists.
struct WindowLogHandler: LogHandler {
    var logLevel: Logger.Level = .warning
    var metadata: Logger.Metadata = [:]
    let loop: Loop
    let server: LoopBound<WeakServer>

    final class WeakServer {
        weak var server: Server?
        init(_ s: Server) { server = s }
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
        let server = self.server
        let params = LogMessage.Params(type: type, message: text)
        loop.post {
            guard let s = server.value.server, let conn = s.stdio, conn.session == .initialized else { return }
            conn.notify(LogMessage.self, params)
        }
    }
}
