import CLibUV
import EventLoop
import Foundation

/// Opens stdin or stdout as a loop stream.
///
/// Pipes and sockets are used directly and terminals through `uv_tty_t`. A regular file or
/// anything else libuv cannot poll (`robustd --stdio < session.txt`) is bridged: a thread
/// copies between the file and one end of a socketpair, and the loop reads the other end.
enum StdioStream {
    static func open(loop: Loop, fd: Int32) throws -> EventLoop.Stream {
        switch uv_guess_handle(fd) {
        case UV_NAMED_PIPE:
            return try EventLoop.Pipe(loop: loop, fd: fd)
        case UV_TTY:
            return try TTY(loop: loop, fd: fd)
        default:
            return try bridge(loop: loop, fd: fd)
        }
    }

    private static func bridge(loop: Loop, fd: Int32) throws -> EventLoop.Stream {
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
            throw SocketSetupError(description: "socketpair failed: \(String(cString: strerror(errno)))")
        }
        let (ours, theirs) = (pair[0], pair[1])
        let reading = fd == 0
        let t = Thread {
            var buf = [UInt8](repeating: 0, count: 64 << 10)
            let (src, dst) = reading ? (fd, theirs) : (theirs, fd)
            while true {
                let n = buf.withUnsafeMutableBytes { read(src, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                var off = 0
                while off < n {
                    let w = buf.withUnsafeBytes { write(dst, $0.baseAddress! + off, n - off) }
                    if w < 0 && errno == EINTR { continue }
                    if w <= 0 { off = n; break }
                    off += w
                }
            }
            if reading { shutdown(theirs, Int32(SHUT_WR)) }
            Glibc.close(theirs)
        }
        t.name = reading ? "robustd-stdin" : "robustd-stdout"
        t.start()
        return try EventLoop.Pipe(loop: loop, fd: ours)
    }
}
