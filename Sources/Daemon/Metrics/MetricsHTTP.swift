import EventLoop
import Logging

/// Serves `GET /metrics` (Prometheus) over HTTP on a TCP port, from the loop; nothing else.
///
/// - Important: Used only on the loop thread.
final class MetricsHTTP {
    private let loop: Loop
    private let logger: Logger
    /// The exposition text, made when a scrape arrives.
    private let text: () -> String
    private var listener: TCPListener?
    /// Scrapes being served now; past `maxOpen`, a new connection is closed at once, so that
    /// clients that never finish their request cannot pile up (each is dropped after 5 s).
    private(set) var open = 0
    let maxOpen = 64

    init(loop: Loop, logger: Logger, text: @escaping () -> String) {
        self.loop = loop
        self.logger = logger
        self.text = text
    }

    func close() {
        listener?.close()
        listener = nil
    }

    /// Serves `GET /metrics` on `host:port` from the loop; nothing else.
    func listen(host: String, port: Int) throws {
        let l = try TCPListener(loop: loop)
        do {
            try l.bind(host: host, port: port)
            try l.listen { [unowned self] result in
                guard case .success(let tcp) = result else { return }
                guard self.open < self.maxOpen else {
                    self.logger.warning("metrics listener: too many open scrapes; closing a new one", metadata: ["open": "\(self.open)"])
                    tcp.close()
                    return
                }
                self.serveHTTP(tcp)
            }
        } catch {
            l.close()
            throw SocketSetupError(description: "cannot listen for metrics on \(host):\(port): \(error)")
        }
        listener = l
        logger.info("metrics on http://\(host.contains(":") ? "[\(host)]" : host):\(l.port ?? port)/metrics")
    }

    private func serveHTTP(_ tcp: TCP) {
        var request: [UInt8] = []
        var answered = false
        var closed = false
        open += 1
        let timer = try? EventLoop.Timer(loop: loop)
        // Closes once, whichever comes first: the reply written, the client gone, the timeout.
        let finish = { [weak self] in
            guard !closed else { return }
            closed = true
            timer?.close()
            tcp.close()
            self?.open -= 1
        }
        func respond(_ status: String, _ body: String, contentType: String = "text/plain; charset=utf-8") {
            guard !answered else { return }
            answered = true
            tcp.stopReading()
            let bytes = Array(body.utf8)
            let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bytes.count)\r\nConnection: close\r\n\r\n"
            tcp.write(Array(head.utf8) + bytes)
            tcp.whenDrained { finish() }
        }
        // A client that never finishes its request, or never reads the reply, is dropped after 5 s.
        timer?.start(timeoutMs: 5000) { finish() }
        do {
            try tcp.startReading { [unowned self] event in
                switch event {
                case .data(let chunk):
                    request += Array(chunk)
                    guard let end = Self.headerEnd(request) else {
                        if request.count > 8192 { respond("431 Request Header Fields Too Large", "request headers too large\n") }
                        return
                    }
                    let line = String(decoding: request[..<end], as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
                    let parts = line.split(separator: " ")
                    guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { respond("400 Bad Request", "bad request\n"); return }
                    guard parts[0] == "GET" || parts[0] == "HEAD" else { respond("405 Method Not Allowed", "only GET /metrics\n"); return }
                    let path = parts[1].split(separator: "?").first.map(String.init) ?? ""
                    guard path == "/metrics" else { respond("404 Not Found", "only /metrics is served here\n"); return }
                    respond("200 OK", parts[0] == "HEAD" ? "" : self.text(), contentType: Prometheus.contentType)
                case .eof, .error:
                    if !answered { answered = true; finish() }
                }
            }
        } catch {
            finish()
        }
    }

    static func headerEnd(_ b: [UInt8]) -> Int? {
        guard b.count >= 4 else { return nil }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return i }
        return nil
    }
}
