import Foundation
import EventLoop
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Testing

@Suite("RPCTransport over in-memory streams: routing, limits, sessions, cancellation, counters")
struct TransportTests {
    /// A harness with the test methods registered; `held` keeps the contexts of test/hold.
    final class Fixture {
        let h: Harness
        var held: [RequestContext] = []
        var notes: [Int] = []
        init(limits: TransportLimits = TransportLimits()) throws {
            h = try Harness(limits: limits)
            h.router.on(Add.self) { p, _ in Add.Result(sum: p.a + p.b) }
            h.router.onDeferred(Hold.self) { [unowned self] _, ctx in self.held.append(ctx) }
            h.router.onDeferred(Square.self) { p, ctx in
                ctx.compute { _ throws(RPCError) -> Square.Result in Square.Result(y: p.x * p.x) }
            }
            h.router.onDeferred(Drop.self) { _, _ in }
            h.router.onNotification(Note.self) { [unowned self] p, _ in self.notes.append(p.n) }
        }
    }

    @Test("a request reaches its typed handler; unknown methods and bad params answer with their codes")
    func routing() throws {
        let f = try Fixture()
        let (_, s) = try f.h.connect()
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":2,"b":3}}"# + "\n")
        s.feed(#"{"jsonrpc":"2.0","id":2,"method":"test/nope"}"# + "\n")
        s.feed(#"{"jsonrpc":"2.0","id":3,"method":"test/add","params":{"a":"x","b":3}}"# + "\n")
        s.feed("{not json\n")
        let r = replies(s)
        #expect(r.count == 4)
        #expect(r[0]["result"]?["sum"]?.intValue == 5)
        #expect(r[1].errorCode == -32601)
        #expect(r[2].errorCode == -32602)
        #expect(r[2]["error"]?["data"]?["field"]?.stringValue == "a")
        #expect(r[3].errorCode == -32700)
        #expect(f.h.transport.counters.served == 4)
        #expect(f.h.transport.counters.failed == 3)
        f.h.finish()
    }

    @Test("a reply uses the framing the client spoke (Content-Length)")
    func framing() throws {
        let f = try Fixture()
        let (_, s) = try f.h.connect()
        let body = #"{"jsonrpc":"2.0","id":"a","method":"test/add","params":{"a":1,"b":1}}"#
        // Split mid-header and mid-body.
        let frame = Array("Content-Length: \(body.utf8.count)\r\n\r\n\(body)".utf8)
        s.feed(Array(frame[0..<7]))
        s.feed(Array(frame[7..<30]))
        s.feed(Array(frame[30...]))
        let r = framedReplies(s)
        #expect(r.count == 1)
        #expect(r.first?["id"]?.stringValue == "a")
        #expect(r.first?["result"]?["sum"]?.intValue == 2)
        f.h.finish()
    }

    @Test("a batch is answered in one array, notifications leave no slot; an oversized batch is refused")
    func batches() throws {
        let f = try Fixture(limits: TransportLimits(maxBatchSize: 3))
        let (_, s) = try f.h.connect()
        s.feed(#"[{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":1,"b":2}},{"jsonrpc":"2.0","method":"test/note","params":{"n":7}},{"jsonrpc":"2.0","id":2,"method":"x"}]"# + "\n")
        let r = replies(s)
        #expect(r.count == 1)
        #expect(r[0].arrayValue?.count == 2)
        #expect(r[0][0]?["result"]?["sum"]?.intValue == 3)
        #expect(r[0][1]?.errorCode == -32601)
        #expect(f.notes == [7])
        s.feed("[" + Array(repeating: #"{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":1,"b":2}}"#, count: 4).joined(separator: ",") + "]\n")
        #expect(replies(s).first?.errorCode == -32600)
        f.h.finish()
    }

    @Test("stdio sessions: -32002 before initialize; a duplicate id in flight and the in-flight limit are refused")
    func sessionAndLimits() throws {
        let f = try Fixture(limits: TransportLimits(maxInFlightPerConnection: 2))
        let (conn, s) = try f.h.connect(.stdio)
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":1,"b":2}}"# + "\n")
        #expect(replies(s).first?.errorCode == -32002)
        conn.session = .initialized
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/hold"}"# + "\n")
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/hold"}"# + "\n")
        #expect(replies(s).first?.errorCode == -32600)
        s.feed(#"{"jsonrpc":"2.0","id":2,"method":"test/hold"}"# + "\n")
        s.feed(#"{"jsonrpc":"2.0","id":3,"method":"test/hold"}"# + "\n")
        #expect(replies(s).first?.errorCode == -32010)
        #expect(f.held.count == 2)
        #expect(f.h.transport.counters.inFlight == 2)
        for ctx in f.held { ctx.reply(EmptyResult()) }
        #expect(replies(s).count == 2)
        #expect(f.h.transport.counters.inFlight == 0)
        #expect(f.h.idleCount == 1)
        f.h.finish()
    }

    @Test("$/cancelRequest answers -32800 at once and cancels the token; the late reply is dropped")
    func cancellation() throws {
        let f = try Fixture()
        let (_, s) = try f.h.connect()
        s.feed(#"{"jsonrpc":"2.0","id":9,"method":"test/hold"}"# + "\n")
        #expect(replies(s).isEmpty)
        s.feed(#"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":9}}"# + "\n")
        let r = replies(s)
        #expect(r.count == 1)
        #expect(r.first?.errorCode == -32800)
        #expect(f.held.first?.isCancelled == true)
        f.held.first?.reply(EmptyResult())
        #expect(replies(s).isEmpty)
        #expect(f.h.transport.counters.cancelled == 1)
        f.h.finish()
    }

    @Test("work on the compute pool answers on the loop; a context dropped without a reply answers -32603")
    func computeAndDropped() throws {
        let f = try Fixture()
        let (_, s) = try f.h.connect()
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/square","params":{"x":3}}"# + "\n")
        var got: [JSONValue] = []
        f.h.run { got += replies(s); return !got.isEmpty }
        #expect(got.first?["result"]?["y"]?.doubleValue == 9)
        s.feed(#"{"jsonrpc":"2.0","id":2,"method":"test/drop"}"# + "\n")
        let r = replies(s)
        #expect(r.first?.errorCode == -32603)
        #expect(f.h.transport.counters.inFlight == 0)
        f.h.finish()
    }

    @Test("an oversized message is answered and skipped; the connection goes on")
    func oversized() throws {
        let f = try Fixture(limits: TransportLimits(maxMessageBytes: 100))
        let (_, s) = try f.h.connect()
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":1,"b":2,"pad":""# + String(repeating: "x", count: 200) + "\"}}\n")
        s.feed(#"{"jsonrpc":"2.0","id":2,"method":"test/add","params":{"a":1,"b":2}}"# + "\n")
        let r = replies(s)
        #expect(r.count == 2)
        #expect(r[0].errorCode == -32600)
        #expect(r[1]["result"]?["sum"]?.intValue == 3)
        f.h.finish()
    }

    @Test("a client that stops reading is dropped past the output limit; the counters are kept as things change")
    func slowReaderAndCounters() throws {
        let f = try Fixture(limits: TransportLimits(maxQueuedOutputBytes: 1000))
        let (a, sa) = try f.h.connect()
        let (_, sb) = try f.h.connect()
        _ = try f.h.connect(.stdio)
        let c = f.h.transport.counters
        #expect(c.open == 3 && c.openSocket == 2 && c.openStdio == 1 && c.accepted == 2)
        sb.isStalled = true
        sb.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":1,"b":2}}"# + "\n")
        #expect(c.queuedOutputBytes > 0)
        sb.drain()
        #expect(c.queuedOutputBytes == 0)
        sa.isStalled = true
        for i in 0..<40 { sa.feed(#"{"jsonrpc":"2.0","id":\#(i),"method":"test/add","params":{"a":1,"b":2}}"# + "\n") }
        #expect(a.isClosed)
        #expect(c.dropped == 1)
        #expect(c.queuedOutputBytes == 0)
        #expect(c.open == 2 && c.openSocket == 1)
        #expect(f.h.closed == [a.id])
        f.h.finish()
    }

    @Test("end of input: the connection closes after its last reply, and its owner is told")
    func endOfInput() throws {
        let f = try Fixture()
        let (conn, s) = try f.h.connect()
        s.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/hold"}"# + "\n")
        s.end()
        #expect(f.h.inputEnded == [conn.id])
        #expect(!conn.isClosed)
        f.held[0].reply(EmptyResult())
        #expect(replies(s).count == 1)
        #expect(conn.isClosed)
        #expect(f.h.transport.connections.isEmpty)
        f.h.finish()
    }

    @Test("a socket client that leaves a message half sent is closed past the timeout; an idle one and a stdio session are not")
    func partialMessageTimeout() throws {
        let f = try Fixture(limits: TransportLimits(partialMessageTimeoutMs: 100))
        let (slow, s1) = try f.h.connect()
        let (idle, s2) = try f.h.connect()
        let (stdio, s3) = try f.h.connect(.stdio)
        s1.feed("Content-Length: 100\r\n\r\n{\"jsonrpc\":")
        s3.feed("Content-Length: 100\r\n\r\n{\"jsonrpc\":")
        s2.feed(#"{"jsonrpc":"2.0","id":1,"method":"test/add","params":{"a":1,"b":2}}"# + "\n")
        // Bytes that trickle in do not restart the clock: only a finished message does.
        for _ in 0..<3 { usleep(20_000); f.h.run(until: { false }, seconds: 0.001); s1.feed(" ") }
        f.h.run(until: { slow.isClosed }, seconds: 2)
        #expect(slow.isClosed)
        #expect(f.h.transport.counters.timedOut == 1)
        f.h.run(until: { false }, seconds: 0.3)
        #expect(!idle.isClosed && !stdio.isClosed)
        #expect(replies(s2).count == 1)
        #expect(f.h.transport.counters.open == 2)
        f.h.finish()
    }
}
