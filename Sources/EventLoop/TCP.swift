import CLibUV
import Glibc

/// A TCP connection.
public final class TCP: Stream {
    public init(loop: Loop) throws(UVError) {
        super.init(loop: loop, type: UV_TCP)
        let r = uv_tcp_init(loop.raw, raw.assumingMemoryBound(to: uv_tcp_t.self))
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_tcp_init") }
        didInit()
    }
}

/// A listening TCP socket (the metrics endpoint).
public final class TCPListener: Listener<TCP> {
    public init(loop: Loop) throws(UVError) {
        super.init(loop: loop, type: UV_TCP)
        let r = uv_tcp_init(loop.raw, raw.assumingMemoryBound(to: uv_tcp_t.self))
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_tcp_init") }
        didInit()
    }

    /// Binds an IPv4 or IPv6 address given as text ("127.0.0.1", "::1").
    public func bind(host: String, port: Int) throws(UVError) {
        var storage = sockaddr_storage()
        let r: Int32 = withUnsafeMutablePointer(to: &storage) { p in
            if host.contains(":") {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(host, Int32(port), $0) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(host, Int32(port), $0) }
        }
        try uvCheck(r, "uv_ip_addr")
        let b = withUnsafePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(raw.assumingMemoryBound(to: uv_tcp_t.self), $0, 0) }
        }
        try uvCheck(b, "uv_tcp_bind")
    }

    /// The port actually bound (for port 0).
    public var port: Int? {
        var storage = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &storage) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(raw.assumingMemoryBound(to: uv_tcp_t.self), $0, &len) }
        }
        guard r == 0 else { return nil }
        if Int32(storage.ss_family) == AF_INET6 {
            return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin6_port)) } }
        }
        return withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { Int(UInt16(bigEndian: $0.pointee.sin_port)) } }
    }

    override func makeClient() throws(UVError) -> TCP { try TCP(loop: loop) }

}
