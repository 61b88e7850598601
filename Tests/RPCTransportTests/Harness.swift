import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RPCTransport

/// A transport over in-memory streams, driven on the test's thread: no socket, no process.
final class Harness: TransportDelegate {
    let loop: Loop
    let compute: ComputePool
    let router = Router()
    let transport: Transport
    var closed: [Int] = []
    var inputEnded: [Int] = []
    var idleCount = 0

    init(limits: TransportLimits = TransportLimits()) throws {
        loop = try Loop()
        compute = ComputePool(loop: loop, threads: 1)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        transport = Transport(loop: loop, compute: compute, router: router, limits: limits, logger: logger)
        transport.delegate = self
    }

    func connect(_ kind: Connection.Kind = .socket) throws -> (Connection, MemoryStream) {
        let s = MemoryStream()
        return (try transport.open(kind: kind, input: s, output: s), s)
    }

    /// Runs the loop until `done` holds (or `seconds` pass).
    func run(until done: () -> Bool, seconds: Double = 5) {
        let deadline = Date().addingTimeInterval(seconds)
        while !done() && Date() < deadline { loop.runOnce(wait: false); usleep(200) }
    }

    func finish() {
        compute.shutdown()
        _ = loop.close()
    }

    func transport(_ transport: Transport, inputEndedOn connection: Connection) { inputEnded.append(connection.id) }
    func transport(_ transport: Transport, closed connection: Connection) { closed.append(connection.id) }
    func transportBecameIdle(_ transport: Transport) { idleCount += 1 }
}

/// The JSON values of newline-delimited replies.
func replies(_ s: MemoryStream) -> [JSONValue] {
    String(decoding: s.takeOutput(), as: UTF8.self).split(separator: "\n").compactMap { try? JSONParser.parse(String($0)) }
}

/// Content-Length framed replies.
func framedReplies(_ s: MemoryStream) -> [JSONValue] {
    var out: [JSONValue] = []
    var text = Substring(String(decoding: s.takeOutput(), as: UTF8.self))
    while let r = text.range(of: "\r\n\r\n") {
        let header = text[..<r.lowerBound]
        guard let n = Int(header.replacingOccurrences(of: "Content-Length: ", with: "")) else { break }
        let body = text[r.upperBound...].utf8.prefix(n)
        if let v = try? JSONParser.parse(Array(body)) { out.append(v) }
        text = Substring(String(decoding: text[r.upperBound...].utf8.dropFirst(n), as: UTF8.self))
    }
    return out
}

extension JSONValue {
    var errorCode: Int64? { self["error"]?["code"]?.intValue }
}

// Methods of a tiny service, for the tests.
enum Add: RPCRequest {
    static let name = "test/add"
    struct Params: Codable, Sendable { var a: Int; var b: Int }
    struct Result: Codable, Sendable { var sum: Int }
}

enum Hold: RPCRequest {
    static let name = "test/hold"
    typealias Params = EmptyParams
    typealias Result = EmptyResult
}

enum Square: RPCRequest {
    static let name = "test/square"
    struct Params: Codable, Sendable { var x: Double }
    struct Result: Codable, Sendable { var y: Double }
}

enum Drop: RPCRequest {
    static let name = "test/drop"
    typealias Params = EmptyParams
    typealias Result = EmptyResult
}

enum Note: RPCNotification {
    static let name = "test/note"
    struct Params: Codable, Sendable { var n: Int }
}
