import Foundation
import JSON
import JSONRPC

/// Why a client call failed before a JSON-RPC answer came back.
public struct ClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A blocking JSON-RPC client over a Unix socket (newline-delimited JSON), for robustctl,
/// the benchmarks and the end-to-end tests.
///
/// Not thread-safe: one client per thread.
public final class RPCClient {
    public let path: String
    public let fd: Int32
    private var decoder = FrameDecoder(style: .ndjson)
    private var nextID: Int64 = 1
    private var readBuffer = [UInt8](repeating: 0, count: 64 << 10)
    /// Notifications that arrived while waiting for a response.
    public var onNotification: ((String, JSONValue?) -> Void)?
    /// Sees every successful result of `call` with its method (the tests validate them).
    public var onResult: ((String, JSONValue) -> Void)?

    /// Connects to the daemon's socket.
    ///
    /// - Throws: `ClientError` saying whether the socket is missing, refused, or not ours.
    public init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket(): \(String(cString: strerror(errno)))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            Glibc.close(fd)
            throw ClientError("socket path too long (\(bytes.count) bytes): \(path)")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r != 0 {
            let e = errno
            Glibc.close(fd)
            switch e {
            case ENOENT, ECONNREFUSED:
                throw ClientError("""
                    robustd is not running: nothing answers on \(path).
                    Start it with:  robustd --socket \(path) &
                    """)
            case EACCES, EPERM:
                throw ClientError("permission denied on \(path): the socket belongs to another user")
            default:
                throw ClientError("cannot connect to \(path): \(String(cString: strerror(e)))")
            }
        }
        self.fd = fd
    }

    deinit { Glibc.close(fd) }

    /// Sends raw bytes as they are (tests use it for malformed input).
    public func sendRaw(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError("send: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }

    /// Sends one message.
    public func send(_ message: Message) throws {
        try sendRaw(FramingStyle.ndjson.frame(message.bytes))
    }

    /// The next message from the daemon, waiting at most `timeout` seconds (nil: forever).
    public func receive(timeout: Double? = nil) throws -> JSONValue {
        while true {
            if let frame = decoder.next() {
                guard case .message(let body) = frame else { throw ClientError("bad frame from the daemon: \(frame)") }
                do { return try JSONParser.parse(body) } catch { throw ClientError("bad JSON from the daemon: \(error)") }
            }
            if let timeout {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let r = poll(&pfd, 1, Int32(timeout * 1000))
                if r == 0 { throw ClientError("no answer within \(timeout) s") }
            }
            let n = readBuffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ClientError("recv: \(String(cString: strerror(errno)))")
            }
            if n == 0 { throw ClientError("the daemon closed the connection") }
            readBuffer.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
        }
    }

    /// Calls `method` and waits for its response; notifications in between go to `onNotification`.
    ///
    /// - Returns: the result, or the JSON-RPC error as a failure.
    public func call(_ method: String, _ params: JSONValue? = nil, timeout: Double? = nil) throws -> Result<JSONValue, RPCError> {
        let id = RequestID.int(nextID)
        nextID += 1
        try send(.request(id: id, method: method, params: params))
        let result = try awaitResponse(id: id, timeout: timeout)
        if case .success(let v) = result { onResult?(method, v) }
        return result
    }

    /// Calls a typed method: its params encoded, its result decoded into `M.Result`.
    ///
    /// - Returns: the result, or the JSON-RPC error as a failure.
    /// - Throws: ``ClientError`` when the daemon cannot be reached or its result does not decode.
    public func call<M: RPCRequest>(_ method: M.Type, _ params: M.Params, timeout: Double? = nil) throws -> Result<M.Result, RPCError> {
        let encoded: JSONValue
        do { encoded = try JSONValueEncoder().encode(params) } catch { throw ClientError("cannot encode the params of \(M.name): \(error)") }
        switch try call(M.name, encoded, timeout: timeout) {
        case .failure(let e): return .failure(e)
        case .success(let v):
            do { return .success(try JSONValueDecoder().decode(M.Result.self, from: v)) } catch {
                throw ClientError("the result of \(M.name) does not decode: \(error)")
            }
        }
    }

    /// Calls a typed method that takes no params.
    public func call<M: RPCRequest>(_ method: M.Type, timeout: Double? = nil) throws -> Result<M.Result, RPCError> where M.Params == EmptyParams {
        try call(method, EmptyParams(), timeout: timeout)
    }

    /// Sends a typed notification (no answer comes back).
    public func notify<N: RPCNotification>(_ notification: N.Type, _ params: N.Params) throws {
        let encoded: JSONValue
        do { encoded = try JSONValueEncoder().encode(params) } catch { throw ClientError("cannot encode the params of \(N.name): \(error)") }
        try send(.notification(method: N.name, params: encoded))
    }

    /// The params of `message` when it is a notification of type `N` whose params decode; nil
    /// for anything else (a response, another notification).
    public static func notification<N: RPCNotification>(_ type: N.Type, in message: JSONValue) -> N.Params? {
        guard message["id"] == nil, let method = message["method"]?.stringValue else { return nil }
        return notification(type, method: method, params: message["params"])
    }

    /// The same for a notification's parts, as ``onNotification`` hands them over.
    public static func notification<N: RPCNotification>(_ type: N.Type, method: String, params: JSONValue?) -> N.Params? {
        guard method == N.name else { return nil }
        return try? JSONValueDecoder().decode(N.Params.self, from: params ?? .object([:]))
    }

    /// Issues the next id for a request sent by hand.
    public func makeID() -> RequestID {
        defer { nextID += 1 }
        return .int(nextID)
    }

    public func awaitResponse(id: RequestID, timeout: Double? = nil) throws -> Result<JSONValue, RPCError> {
        while true {
            let v = try receive(timeout: timeout)
            switch Message.from(v) {
            case .success(.response(let rid, let result)) where rid == id:
                return result
            case .success(.notification(let m, let p)):
                onNotification?(m, p)
            case .success(.response(nil, .failure(let e))):
                return .failure(e)
            default:
                continue
            }
        }
    }
}
