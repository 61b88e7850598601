import Daemon
import RobustdAPI
import Testing

/// Utterance documents and LSP positions (the document fuzz target checks the same rules on
/// arbitrary edits; these are the cases it found and the ones LSP names).
@Suite("Utterance documents")
struct UtteranceDocumentTests {
    func edit(_ doc: UtteranceDocument, _ l0: Int, _ c0: Int, _ l1: Int, _ c1: Int, _ text: String) {
        doc.apply(.init(range: LSPRange(start: LSPPosition(line: l0, character: c0), end: LSPPosition(line: l1, character: c1)), text: text))
    }

    @Test("lines end at LF, CRLF or CR, as LSP counts them: an edit on line 1 of a CRLF file lands on line 1")
    func lineEnds() {
        for sep in ["\n", "\r\n", "\r"] {
            let doc = UtteranceDocument(uri: "file:///a", version: 1, text: ["where is my card", "I was charged twice", "last"].joined(separator: sep))
            edit(doc, 1, 2, 1, 5, "got")
            #expect(doc.text == ["where is my card", "I got charged twice", "last"].joined(separator: sep), "separator \(Array(sep.utf8))")
            let lines = UtteranceLine.parse(doc.text)
            #expect(lines.map(\.line) == [0, 1, 2] && lines.map(\.text) == ["where is my card", "I got charged twice", "last"])
        }
    }

    @Test("positions count UTF-16 units; past a line's end is its end; inside a surrogate pair is its start; past the last line is the end")
    func positions() {
        let doc = UtteranceDocument(uri: "file:///a", version: 1, text: "caf\u{E9} \u{1F600}!\nx")
        #expect(doc.offset(LSPPosition(line: 0, character: 6)) == 5, "inside the emoji's pair: its start")
        #expect(doc.offset(LSPPosition(line: 0, character: 7)) == 7)
        #expect(doc.offset(LSPPosition(line: 0, character: 99)) == 8, "past the end of line 0: before its line break")
        #expect(doc.offset(LSPPosition(line: 7, character: 0)) == 10)
        edit(doc, 0, 5, 0, 7, "?")
        #expect(doc.text == "caf\u{E9} ?!\nx")
        // A combining accent is its own scalar: LSP may put a position between it and its letter.
        let d2 = UtteranceDocument(uri: "file:///b", version: 1, text: "e\u{301}x")
        edit(d2, 0, 1, 0, 1, "Z")
        #expect(Array(d2.text.unicodeScalars) == ["e", "Z", "\u{301}", "x"])
    }

    @Test("# expect: annotations and utterance ranges on each line")
    func parse() {
        let lines = UtteranceLine.parse("# expect: card_arrival\r\n  where is my card  \r\n\r\nlost it # expect: lost_or_stolen_card\r\n")
        #expect(lines.count == 2)
        #expect(lines[0].line == 1 && lines[0].start == 2 && lines[0].end == 18 && lines[0].expect == "card_arrival")
        #expect(lines[1].line == 3 && lines[1].text == "lost it" && lines[1].expect == "lost_or_stolen_card")
        // Found by the document fuzz target: a space and a combining mark are one Character, but
        // only the mark is the utterance's; its range starts after the space.
        let mark = UtteranceLine.parse(" \u{301}x ")
        #expect(mark.count == 1 && mark[0].text == "\u{301}x" && mark[0].start == 1 && mark[0].end == 3)
    }
}
