import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Testing

@Suite("Bad input over the socket")
struct BadInputTests {
    /// Sends raw bytes and returns the next message.
    func exchange(_ c: RPCClient, _ raw: String) throws -> JSONValue {
        try c.sendRaw(Array(raw.utf8))
        return try c.receive(timeout: 5)
    }

    @Test("each malformed message gets the right error and the connection keeps working")
    func ndjsonErrors() throws {
        let d = try DaemonProcess(extraArgs: ["--max-message-bytes", "4096", "--max-in-flight", "4"])
        let c = try d.client()
        let cases: [(String, Int64, JSONValue)] = [
            ("{not json}\n", -32700, .null),
            (#"{"jsonrpc":"2.0","id":1,"method":"nope"}"# + "\n", -32601, 1),
            (#"{"jsonrpc":"2.0","id":2,"method":"debug/sleep","params":{"ms":"soon"}}"# + "\n", -32602, 2),
            (#"{"jsonrpc":"2.0","id":3,"method":"debug/sleep","params":{}}"# + "\n", -32602, 3),
            (#"{"jsonrpc":"2.0","id":4,"method":"debug/sleep","params":{"ms":-1}}"# + "\n", -32602, 4),
            (#"{"id":5,"method":"daemon/ping"}"# + "\n", -32600, 5),
            (#"{"jsonrpc":"2.0","id":[6],"method":"daemon/ping"}"# + "\n", -32600, .null),
            ("[]\n", -32600, .null),
            ("\"just a string\"\n", -32600, .null),
            ("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"debug/echo\",\"params\":[\"\u{FF}\"]}\n", 0, 7),
            ("{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"debug/echo\",\"params\":{\"p\":\"" + String(repeating: "a", count: 5000) + "\"}}\n", -32600, .null),
            (String(repeating: "[", count: 3000) + "\n", -32700, .null),
        ]
        for (raw, code, id) in cases {
            let reply = try exchange(c, raw)
            if code == 0 {
                #expect(reply["result"] != nil, "\(raw.prefix(60)): \(reply)")
            } else {
                #expect(reply["error"]?["code"] == .int(code), "\(raw.prefix(60)): \(reply)")
                #expect(reply["error"]?["message"]?.stringValue?.isEmpty == false)
            }
            #expect(reply["id"] == id, "\(raw.prefix(60))")
        }
        // The invalid-params answer names the field and the expected form.
        let r = try exchange(c, #"{"jsonrpc":"2.0","id":9,"method":"debug/sleep","params":{"ms":"soon"}}"# + "\n")
        #expect(r["error"]?["data"]?["field"] == "ms")
        #expect(r["error"]?["data"]?["expected"] == "an integer")
        // Invalid UTF-8 inside a string is a parse error, not a crash.
        try c.sendRaw([UInt8](#"{"jsonrpc":"2.0","id":10,"method":"debug/echo","params":[""#.utf8) + [0xC3, 0x28] + Array("\"]}\n".utf8))
        #expect(try c.receive(timeout: 5)["error"]?["code"] == -32700)
        // Still alive and in sync.
        #expect(try c.call("daemon/ping", timeout: 5) == .success([:]))
    }

    @Test("Content-Length framing on the socket: bad headers, oversized and split frames")
    func contentLengthErrors() throws {
        let d = try DaemonProcess(extraArgs: ["--max-message-bytes", "4096"])
        let c = try d.client()
        func frame(_ s: String) -> String { "Content-Length: \(s.utf8.count)\r\n\r\n" + s }
        // A first frame selects Content-Length framing for the connection; replies use it too.
        try c.sendRaw(Array(frame(#"{"jsonrpc":"2.0","id":1,"method":"daemon/ping"}"#).utf8))
        var dec = FrameDecoder(style: .contentLength)
        func next() throws -> JSONValue {
            var buf = [UInt8](repeating: 0, count: 65536)
            while true {
                if case .message(let b)? = dec.next() { return try JSONParser.parse(b) }
                var pfd = pollfd(fd: c.fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 5000) > 0 else { throw ClientError("timeout") }
                let n = recv(c.fd, &buf, buf.count, 0)
                guard n > 0 else { throw ClientError("closed") }
                dec.feed(Array(buf[0..<n]))
            }
        }
        #expect(try next()["result"] == [:])
        try c.sendRaw(Array("Content-Length: -3\r\n\r\n".utf8))
        #expect(try next()["error"]?["code"] == -32700)
        try c.sendRaw(Array("Content-Length: 99999\r\n\r\n".utf8) + [UInt8](repeating: 0x20, count: 99999))
        let big = try next()
        #expect(big["error"]?["code"] == -32600)
        #expect(big["error"]?["data"]?["limit"] == 4096)
        // A frame split at every byte.
        for b in Array(frame(#"{"jsonrpc":"2.0","id":2,"method":"daemon/ping"}"#).utf8) { try c.sendRaw([b]) }
        #expect(try next()["id"] == 2)
    }

    @Test("more requests in flight than the limit are answered busy, not queued without bound")
    func inFlightLimit() throws {
        let d = try DaemonProcess(extraArgs: ["--max-in-flight", "3"])
        let c = try d.client()
        for i in 1...5 { try c.send(.request(id: .int(Int64(i)), method: "debug/sleep", params: ["ms": 300, "steps": 3])) }
        var codes: [Int64: JSONValue] = [:]
        while codes.count < 5 {
            let m = try c.receive(timeout: 10)
            if let id = m["id"]?.intValue { codes[id] = m["error"]?["code"] ?? "ok" }
        }
        #expect(codes.values.filter { $0 == -32010 }.count == 2)
        #expect(codes.values.filter { $0 == "ok" }.count == 3)
    }

    @Test("a client that vanishes mid-request does not disturb the daemon")
    func vanishingClient() throws {
        let d = try DaemonProcess()
        for _ in 0..<20 {
            let c = try d.client()
            try c.send(.request(id: .int(1), method: "debug/sleep", params: ["ms": 200, "steps": 20]))
            try c.sendRaw(Array(#"{"jsonrpc":"2.0","id":2,"method":"debug/ec"#.utf8))  // truncated, then gone
        }
        let c = try d.client()
        #expect(try c.call("daemon/ping", timeout: 5) == .success([:]))
        // Abandoned work is cancelled: the compute threads drain quickly.
        var pending: Int? = nil
        for _ in 0..<100 {
            let q = try c.call(DaemonStatus.self).get().queues
            pending = q.computePending
            if pending == 0 && q.computeRunning == 0 { break }
            usleep(50_000)
        }
        #expect(pending == 0)
    }

    @Test("a batch answers every request in one array; notifications get nothing")
    func batch() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        try c.sendRaw(Array((#"[{"jsonrpc":"2.0","id":1,"method":"daemon/ping"},{"jsonrpc":"2.0","method":"initialized"},"#
            + #"{"jsonrpc":"2.0","id":2,"method":"nope"},{"bad":1},{"jsonrpc":"2.0","id":3,"method":"debug/sleep","params":{"ms":50}}]"# + "\n").utf8))
        let reply = try c.receive(timeout: 5)
        let items = try #require(reply.arrayValue)
        #expect(items.count == 4)
        #expect(items.contains { $0["id"] == 1 && $0["result"] == [:] })
        #expect(items.contains { $0["id"] == 2 && $0["error"]?["code"] == -32601 })
        #expect(items.contains { $0["id"] == .null && $0["error"]?["code"] == -32600 })
        #expect(items.contains { $0["id"] == 3 && $0["result"]?["stepsDone"] != nil })
        // A batch of notifications only: no reply at all.
        try c.sendRaw(Array(#"[{"jsonrpc":"2.0","method":"initialized"}]"#.utf8) + [0x0a])
        #expect(try c.call("daemon/ping", timeout: 5) == .success([:]))
    }

    @Test("cancelling on the socket answers -32800 and frees the compute thread")
    func cancel() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        try c.send(.request(id: .string("long"), method: "debug/sleep", params: ["ms": 20_000, "steps": 2000]))
        usleep(100_000)
        try c.send(.notification(method: "$/cancelRequest", params: ["id": "long"]))
        let r = try c.awaitResponse(id: .string("long"), timeout: 5)
        #expect(r.map { _ in 0 } == .failure(RPCError(.requestCancelled, "Request cancelled")))
        // Cancelling an unknown id is harmless.
        try c.send(.notification(method: "$/cancelRequest", params: ["id": 12345]))
        var running: Int? = nil
        for _ in 0..<50 {
            running = try c.call(DaemonStatus.self).get().queues.computeRunning
            if running == 0 { break }
            usleep(20_000)
        }
        #expect(running == 0)
        #expect(try c.call(DaemonStatus.self).get().requests.cancelled == 1)
    }

    @Test("10,000 cancellations in flight over 10 connections: each answered -32800, and every count goes back to zero")
    func manyCancellations() throws {
        let d = try DaemonProcess()
        let clients = try (0..<10).map { _ in try d.client() }
        let rssBefore = d.rssKiB()
        for c in clients {
            for i in 0..<1000 { try c.send(.request(id: .int(Int64(i)), method: "debug/sleep", params: ["ms": 5000, "steps": 500])) }
        }
        for c in clients {
            for i in 0..<1000 { try c.send(.notification(method: "$/cancelRequest", params: ["id": .int(Int64(i))])) }
        }
        var cancelled = 0, other = 0
        for c in clients {
            for i in 0..<1000 {
                if case .failure(let e) = try c.awaitResponse(id: .int(Int64(i)), timeout: 30), e.code == RPCErrorCode(-32800) { cancelled += 1 } else { other += 1 }
            }
        }
        #expect(cancelled == 10_000 && other == 0)
        var status = try clients[0].call(DaemonStatus.self).get()
        for _ in 0..<200 {
            if status.queues.computeRunning == 0 && status.queues.computePending == 0 && status.requests.inFlight == 1 { break }
            usleep(20_000)
            status = try clients[0].call(DaemonStatus.self).get()
        }
        #expect(status.queues.computeRunning == 0 && status.queues.computePending == 0,
                "running \(status.queues.computeRunning), pending \(status.queues.computePending)")
        #expect(status.requests.inFlight == 1, "only the status call itself: \(status.requests.inFlight)")
        #expect(status.requests.cancelled == 10_000)
        #expect(d.rssKiB() < rssBefore + 64 * 1024, "RSS \(rssBefore) KiB before, \(d.rssKiB()) KiB after")
        #expect(d.terminate() == 0)
    }
}
