import EventLoop
import Foundation
import Logging
import RPCTransport

/// The Unix socket: created 0600 in a 0700 folder; every connection's peer uid is checked
/// (SO_PEERCRED) and only the daemon's own user is served.
///
/// - Important: Used only on the loop thread.
final class SocketListener {
    private let loop: Loop
    private let transport: Transport
    private let logger: Logger
    private var listener: PipeListener?
    /// The bound path, until the listener closes (and the file is removed).
    private(set) var path: String?

    init(loop: Loop, transport: Transport, logger: Logger) {
        self.loop = loop
        self.transport = transport
        self.logger = logger
    }

    func listen(on path: String) throws {
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
        self.path = path
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
        guard !transport.isStopping else { pipe.close(); return }
        do {
            let conn = try transport.open(kind: .socket, input: pipe, output: pipe, peerPid: cred.pid)
            logger.debug("connection accepted", metadata: ["conn": "\(conn.id)", "peerPid": "\(cred.pid)"])
        } catch {
            logger.warning("could not read from a new connection", metadata: ["error": "\(error)"])
            pipe.close()
        }
    }

    /// Stops accepting and removes the socket file.
    func close() {
        listener?.close()
        listener = nil
        if let path { unlink(path) }
        path = nil
    }
}
