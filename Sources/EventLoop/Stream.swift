import CLibUV
import Glibc

/// A connected byte stream: a Unix-socket connection, a pipe (stdio) or a terminal.
///
/// Writes are tried immediately (`uv_try_write`); what the kernel does not take is queued
/// with `uv_write`, and ``queuedBytes`` counts it so a caller can bound a slow reader.
///
/// - Important: Use only on the loop thread.
public class Stream: Handle {
    public enum ReadEvent {
        case data(UnsafeRawBufferPointer)
        case eof
        case error(UVError)
    }

    private var onRead: ((ReadEvent) -> Void)?
    private var onDrain: (() -> Void)?
    private var onWriteError: ((UVError) -> Void)?
    private var onQueueChange: ((Int) -> Void)?
    /// Bytes handed to `uv_write` whose callback has not run yet.
    public private(set) var queuedBytes = 0
    private var pendingWrites = 0
    public private(set) var isReading = false

    var stream: UnsafeMutablePointer<uv_stream_t> { raw.assumingMemoryBound(to: uv_stream_t.self) }

    /// The OS file descriptor, for socket options and peer credentials.
    public var fileDescriptor: Int32? {
        var fd: uv_os_fd_t = -1
        return uv_fileno(handle, &fd) == 0 ? fd : nil
    }

    /// Starts delivering reads to `callback`. The buffer in `.data` is valid only during the call.
    public func startReading(_ callback: @escaping (ReadEvent) -> Void) throws(UVError) {
        onRead = callback
        guard !isReading, !isClosing else { return }
        try uvCheck(uv_read_start(stream, { h, suggested, buf in
            let me = Handle.from(h)
            buf!.pointee = uv_buf_init(me.loop.readBuffer.baseAddress!.assumingMemoryBound(to: CChar.self),
                                       UInt32(me.loop.readBuffer.count))
        }, { s, nread, buf in
            let me = Handle.from(UnsafeMutableRawPointer(s!).assumingMemoryBound(to: uv_handle_t.self)) as! Stream
            if nread > 0 {
                me.onRead?(.data(UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)))
            } else if nread == Int(UV_EOF.rawValue) {
                me.stopReading()
                me.onRead?(.eof)
            } else if nread < 0 {
                me.stopReading()
                me.onRead?(.error(UVError(code: Int32(nread), function: "read")))
            }
        }), "uv_read_start")
        isReading = true
    }

    /// Stops reading (backpressure or shutdown); ``startReading(_:)`` resumes.
    public func stopReading() {
        guard isReading else { return }
        uv_read_stop(stream)
        isReading = false
    }

    public func resumeReading() throws(UVError) {
        guard let cb = onRead else { return }
        try startReading(cb)
    }

    /// Called once every queued write has completed.
    public func whenDrained(_ callback: @escaping () -> Void) {
        if pendingWrites == 0 { callback() } else { onDrain = callback }
    }

    public func onWriteFailure(_ callback: @escaping (UVError) -> Void) { onWriteError = callback }

    /// Tells `callback` of every change of ``queuedBytes`` (the difference), so that an owner
    /// of many streams keeps their total without walking them.
    public func onQueuedBytesChange(_ callback: @escaping (Int) -> Void) { onQueueChange = callback }

    /// Writes `bytes`: immediately what the kernel takes, the rest queued.
    public func write(_ bytes: [UInt8]) {
        guard !isClosing, !bytes.isEmpty else { return }
        var offset = 0
        if pendingWrites == 0 {
            let n = bytes.withUnsafeBufferPointer { p -> Int32 in
                var buf = uv_buf_init(UnsafeMutableRawPointer(mutating: p.baseAddress!).assumingMemoryBound(to: CChar.self), UInt32(p.count))
                return uv_try_write(stream, &buf, 1)
            }
            if n > 0 { offset = Int(n) }
            else if n < 0 && n != UV_EAGAIN.rawValue {
                onWriteError?(UVError(code: n, function: "uv_try_write"))
                return
            }
            if offset == bytes.count { return }
        }
        // One allocation holds the request and a copy of the remaining bytes.
        let remaining = bytes.count - offset
        let reqSize = MemoryLayout<uv_write_t>.stride
        let block = UnsafeMutableRawPointer.allocate(byteCount: reqSize + remaining, alignment: 16)
        bytes.withUnsafeBytes { src in
            (block + reqSize).copyMemory(from: src.baseAddress! + offset, byteCount: remaining)
        }
        let req = block.assumingMemoryBound(to: uv_write_t.self)
        req.pointee.data = UnsafeMutableRawPointer(bitPattern: remaining)
        var buf = uv_buf_init((block + reqSize).assumingMemoryBound(to: CChar.self), UInt32(remaining))
        let r = uv_write(req, stream, &buf, 1) { req, status in
            let size = Int(bitPattern: req!.pointee.data)
            let me = Handle.from(UnsafeMutableRawPointer(req!.pointee.handle).assumingMemoryBound(to: uv_handle_t.self)) as! Stream
            UnsafeMutableRawPointer(req!).deallocate()
            me.queuedBytes -= size
            me.onQueueChange?(-size)
            me.pendingWrites -= 1
            if status < 0 && status != UV_ECANCELED.rawValue {
                me.onWriteError?(UVError(code: status, function: "uv_write"))
            }
            if me.pendingWrites == 0, let cb = me.onDrain {
                me.onDrain = nil
                cb()
            }
        }
        if r < 0 {
            block.deallocate()
            onWriteError?(UVError(code: r, function: "uv_write"))
            return
        }
        queuedBytes += remaining
        onQueueChange?(remaining)
        pendingWrites += 1
    }

    override func willClose() {
        onRead = nil
        onWriteError = nil
    }

    override func didClose() {
        // Pending write callbacks run (with ECANCELED) before the close callback.
        onQueueChange = nil
        if let cb = onDrain { onDrain = nil; cb() }
    }
}

/// A pipe handle: a Unix-domain socket or an anonymous pipe.
public final class Pipe: Stream {
    public init(loop: Loop) throws(UVError) {
        super.init(loop: loop, type: UV_NAMED_PIPE)
        let r = uv_pipe_init(loop.raw, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_pipe_init") }
        didInit()
    }

    /// Wraps an existing file descriptor (stdin, stdout, one end of a socketpair).
    public convenience init(loop: Loop, fd: Int32) throws(UVError) {
        try self.init(loop: loop)
        let r = uv_pipe_open(raw.assumingMemoryBound(to: uv_pipe_t.self), fd)
        if r < 0 { close(); throw UVError(code: r, function: "uv_pipe_open") }
    }

    /// The uid and pid of the process at the other end (SO_PEERCRED).
    public func peerCredentials() -> (uid: uid_t, pid: pid_t)? {
        guard let fd = fileDescriptor else { return nil }
        var uid: uid_t = 0
        var pid: pid_t = 0
        return robustd_peer_uid(fd, &uid, &pid) == 0 ? (uid, pid) : nil
    }
}

/// A terminal (stdin or stdout when attached to a tty).
public final class TTY: Stream {
    public init(loop: Loop, fd: Int32) throws(UVError) {
        super.init(loop: loop, type: UV_TTY)
        let r = uv_tty_init(loop.raw, raw.assumingMemoryBound(to: uv_tty_t.self), fd, 0)
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_tty_init") }
        didInit()
    }
}

/// What libuv's connection callback calls (non-generic: a C callback cannot capture generics).
protocol Accepting: AnyObject {
    func acceptOne(status: Int32)
}

private func onNewConnection(_ server: UnsafeMutablePointer<uv_stream_t>?, _ status: Int32) {
    (Handle.from(UnsafeMutableRawPointer(server!).assumingMemoryBound(to: uv_handle_t.self)) as! any Accepting).acceptOne(status: status)
}

/// A listening stream socket that accepts connections of type `Client`.
public class Listener<Client: Stream>: Handle, Accepting {
    private var onConnection: ((Result<Client, UVError>) -> Void)?

    /// A fresh, unconnected client handle to accept into.
    func makeClient() throws(UVError) -> Client { fatalError("subclass") }

    /// Starts accepting; `callback` gets each accepted connection (or the accept error).
    public func listen(backlog: Int32 = 511, _ callback: @escaping (Result<Client, UVError>) -> Void) throws(UVError) {
        onConnection = callback
        try uvCheck(uv_listen(raw.assumingMemoryBound(to: uv_stream_t.self), backlog, onNewConnection), "uv_listen")
    }

    func acceptOne(status: Int32) {
        guard status >= 0 else {
            onConnection?(.failure(UVError(code: status, function: "listen")))
            return
        }
        do {
            let client = try makeClient()
            let r = uv_accept(raw.assumingMemoryBound(to: uv_stream_t.self), client.stream)
            if r < 0 {
                client.close()
                onConnection?(.failure(UVError(code: r, function: "uv_accept")))
                return
            }
            onConnection?(.success(client))
        } catch {
            onConnection?(.failure(error))
        }
    }

    override func willClose() { onConnection = nil }
}

/// A listening Unix-domain socket.
public final class PipeListener: Listener<Pipe> {
    public init(loop: Loop) throws(UVError) {
        super.init(loop: loop, type: UV_NAMED_PIPE)
        let r = uv_pipe_init(loop.raw, raw.assumingMemoryBound(to: uv_pipe_t.self), 0)
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_pipe_init") }
        didInit()
    }

    public func bind(path: String) throws(UVError) {
        try uvCheck(uv_pipe_bind(raw.assumingMemoryBound(to: uv_pipe_t.self), path), "uv_pipe_bind")
    }

    override func makeClient() throws(UVError) -> Pipe { try Pipe(loop: loop) }
}
