import Testing
import JSON
@testable import JSONRPC
import RobustdTestSupport

@Suite("Framing")
struct FramingTests {
    static let bodies: [[UInt8]] = [
        Array(#"{"jsonrpc":"2.0","id":1,"method":"a"}"#.utf8),
        Array(#"{"jsonrpc":"2.0","method":"b","params":{"text":"é\nx"}}"#.utf8),
        Array(#"[{"jsonrpc":"2.0","id":"s","method":"c"}]"#.utf8),
    ]

    func decodeAll(_ stream: [UInt8], chunks: [Int], style: FramingStyle? = nil, max: Int = 1 << 20) -> [Frame] {
        var d = FrameDecoder(style: style, maxMessageBytes: max)
        var out: [Frame] = []
        var i = 0
        var c = 0
        while i < stream.count {
            let n = min(chunks[c % chunks.count], stream.count - i)
            d.feed(Array(stream[i..<(i + n)]))
            while let f = d.next() { out.append(f) }
            i += n
            c += 1
        }
        while let f = d.next() { out.append(f) }
        return out
    }

    @Test("decodes both framings across random chunk boundaries", arguments: [FramingStyle.contentLength, .ndjson])
    func randomSplits(style: FramingStyle) {
        var stream: [UInt8] = []
        for _ in 0..<20 { for b in Self.bodies { stream += style.frame(b) } }
        var rng = SplitMix(seed: 42)
        for _ in 0..<200 {
            let chunks = (0..<8).map { _ in 1 + Int(rng.next() % 40) }
            let frames = decodeAll(stream, chunks: chunks)
            #expect(frames.count == 60)
            for (i, f) in frames.enumerated() { #expect(f == .message(Self.bodies[i % 3])) }
        }
        // One byte at a time.
        #expect(decodeAll(stream, chunks: [1]).count == 60)
    }

    @Test("detects the framing from the first byte")
    func detection() {
        var d = FrameDecoder()
        d.feed(Array("\n  {\"a\":1}\n".utf8))
        #expect(d.next() == .message(Array("{\"a\":1}".utf8)))
        #expect(d.style == .ndjson)
        var e = FrameDecoder()
        e.feed(Array("Content-Length: 2\r\n\r\n{}".utf8))
        #expect(e.next() == .message(Array("{}".utf8)))
        #expect(e.style == .contentLength)
    }

    @Test("headers are case-insensitive; Content-Type is optional and checked")
    func headers() {
        var d = FrameDecoder(style: .contentLength)
        d.feed(Array("content-length:2\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{}".utf8))
        #expect(d.next() == .message(Array("{}".utf8)))
        d.feed(Array("CONTENT-LENGTH: 2\r\nX-Other: 1\r\n\r\n[]".utf8))
        #expect(d.next() == .message(Array("[]".utf8)))
        d.feed(Array("Content-Length: 2\r\nContent-Type: text/plain; charset=latin1\r\n\r\n{}Content-Length: 2\r\n\r\n{}".utf8))
        guard case .badHeader(let why)? = d.next() else { Issue.record("latin1 accepted"); return }
        #expect(why.contains("charset"))
        // The body of the refused message is not a header: the decoder re-syncs at the next block.
        var frames: [Frame] = []
        while let f = d.next() { frames.append(f) }
        #expect(frames.last == .message(Array("{}".utf8)))
    }

    @Test("bad Content-Length values are reported and the stream resynchronises", arguments: [
        "-5", "abc", "99999999999999999999999", "1.5", "", "0x10",
    ])
    func badLength(value: String) {
        var d = FrameDecoder(style: .contentLength)
        d.feed(Array("Content-Length: \(value)\r\n\r\nContent-Length: 2\r\n\r\n{}".utf8))
        guard case .badHeader? = d.next() else { Issue.record("accepted Content-Length \(value)"); return }
        #expect(d.next() == .message(Array("{}".utf8)))
    }

    @Test("a missing Content-Length and a header line without a colon are errors")
    func missingLength() {
        var d = FrameDecoder(style: .contentLength)
        d.feed(Array("Content-Type: x\r\n\r\n".utf8))
        guard case .badHeader(let a)? = d.next() else { Issue.record("no error"); return }
        #expect(a.contains("missing Content-Length"))
        d.feed(Array("garbage here\r\n\r\n".utf8))
        guard case .badHeader(let b)? = d.next() else { Issue.record("no error"); return }
        #expect(b.contains("without ':'"))
    }

    @Test("an endless header block is cut off at its limit")
    func endlessHeader() {
        var d = FrameDecoder(style: .contentLength)
        d.feed([UInt8](repeating: UInt8(ascii: "x"), count: 20_000))
        guard case .badHeader? = d.next() else { Issue.record("no error"); return }
        #expect(d.bufferedBytes < 16)
    }

    @Test("oversized messages are skipped whole, in both framings, without buffering them")
    func oversized() {
        var d = FrameDecoder(style: .contentLength, maxMessageBytes: 100)
        d.feed(Array("Content-Length: 1000\r\n\r\n".utf8))
        #expect(d.next() == .oversized(size: 1000, limit: 100))
        d.feed([UInt8](repeating: 0x20, count: 600))
        #expect(d.next() == nil)
        d.feed([UInt8](repeating: 0x20, count: 400) + Array("Content-Length: 2\r\n\r\n{}".utf8))
        #expect(d.next() == .message(Array("{}".utf8)))

        var n = FrameDecoder(style: .ndjson, maxMessageBytes: 100)
        for _ in 0..<10 { n.feed([UInt8](repeating: UInt8(ascii: "a"), count: 50)) ; #expect(n.next() == nil) }
        #expect(n.bufferedBytes <= 150)
        n.feed(Array("\n{}\n".utf8))
        #expect(n.next() == .oversized(size: 500, limit: 100))
        #expect(n.next() == .message(Array("{}".utf8)))
    }

    @Test("a long NDJSON line in many small chunks decodes whole, followed by the next line")
    func longLineInChunks() {
        var d = FrameDecoder(style: .ndjson, maxMessageBytes: 4 << 20)
        let body = Array(("{\"t\":\"" + String(repeating: "x", count: 3 << 20) + "\"}").utf8)
        let stream = body + [0x0a] + Array("{}\n".utf8)
        var frames: [Frame] = []
        var i = 0
        while i < stream.count {
            d.feed(Array(stream[i..<min(i + 4096, stream.count)]))
            while let f = d.next() { frames.append(f) }
            i += 4096
        }
        #expect(frames == [.message(body), .message(Array("{}".utf8))])
        #expect(d.bufferedBytes == 0)
    }

    @Test("a truncated frame waits for more bytes")
    func truncated() {
        var d = FrameDecoder(style: .contentLength)
        d.feed(Array("Content-Length: 10\r\n\r\n{\"a\"".utf8))
        #expect(d.next() == nil)
        d.feed(Array("12".utf8))
        #expect(d.next() == nil)
        d.feed(Array("3456".utf8))
        #expect(d.next() == .message(Array("{\"a\"123456".utf8)))
        var h = FrameDecoder(style: .contentLength)
        h.feed(Array("Content-Le".utf8))
        #expect(h.next() == nil)
    }

    @Test("random garbage never traps the decoder")
    func garbage() {
        var rng = SplitMix(seed: 99)
        for style in [FramingStyle.contentLength, .ndjson] {
            var d = FrameDecoder(style: style, maxMessageBytes: 4096)
            for _ in 0..<2000 {
                let n = Int(rng.next() % 200)
                d.feed((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
                while let f = d.next() {
                    if case .message(let body) = f { _ = Payload.parse(body) }
                }
            }
        }
    }
}
