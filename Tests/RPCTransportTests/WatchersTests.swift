import Foundation
import JSON
import JSONRPC
import RPCTransport
import Testing

@Suite("Watchers: a notification reaches each open watcher once, in its framing; closed ones leave")
struct WatchersTests {
    @Test("three watchers, one added twice, one closed: the two open ones hear each notification once")
    func notifiesOpenOnes() throws {
        let h = try Harness()
        let (a, sa) = try h.connect()
        let (b, sb) = try h.connect(.stdio)
        let (c, sc) = try h.connect()
        // a speaks newline-delimited JSON; b has not spoken, so it is answered Content-Length framed.
        sa.feed(#"{"jsonrpc":"2.0","method":"test/nothing"}"# + "\n")
        h.run(until: { true })
        _ = sa.takeOutput()
        var w = Watchers()
        w.add(a); w.add(b); w.add(a); w.add(c)
        #expect(w.count == 3)
        c.close(reason: "test")
        w.notify(Note.self, .init(n: 7))
        w.notify(Note.self, .init(n: 8))
        #expect(w.count == 2)
        let ra = replies(sa), rb = framedReplies(sb), rc = replies(sc)
        #expect(ra.map { $0["params"]?["n"]?.intValue } == [7, 8])
        #expect(ra.allSatisfy { $0["method"]?.stringValue == "test/note" && $0["id"] == nil })
        #expect(rb.map { $0["params"]?["n"]?.intValue } == [7, 8])
        #expect(rc.isEmpty)
        w.remove(b)
        w.notify(Note.self, .init(n: 9))
        #expect(framedReplies(sb).isEmpty)
        #expect(replies(sa).count == 1)
        h.finish()
    }

    @Test("with no watcher open, nothing is encoded or written")
    func noneOpen() throws {
        let h = try Harness()
        let (a, sa) = try h.connect()
        var w = Watchers()
        w.add(a)
        a.close(reason: "test")
        w.notify(Note.self, .init(n: 1))
        #expect(w.isEmpty)
        #expect(sa.takeOutput().isEmpty)
        h.finish()
    }
}
