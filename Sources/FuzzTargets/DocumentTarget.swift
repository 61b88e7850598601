import Daemon
import RobustdAPI

extension FuzzTargets {
    /// LSP incremental edits on an utterance document. The bytes are chunks split at 0x00: the
    /// first is the opening text; each further chunk is an edit: four bytes give the start and
    /// end positions (line, character; 0xF0 and over stand for positions far past the text), a
    /// fifth whose low bit asks for a whole-text change, then the inserted text.
    ///
    /// Invariants, against a reference that walks the text's Characters (a different road
    /// from the document's UTF-16 scan): the edit lands where the reference puts each position
    /// (lines end at `\n`, `\r\n` or `\r`; past a line's end is its end; inside a surrogate pair
    /// is its start), the rest of the text is kept unit for unit, and each parsed utterance
    /// sits on its line at the UTF-16 range it claims.
    public static func document(_ bytes: [UInt8]) {
        let chunks = bytes.split(separator: 0, omittingEmptySubsequences: false)
        guard let first = chunks.first else { return }
        let doc = UtteranceDocument(uri: "file:///fuzz.utterances", version: 1, text: String(decoding: first, as: UTF8.self))
        for chunk in chunks.dropFirst().prefix(64) {
            let c = Array(chunk)
            guard c.count >= 5 else { continue }
            func coordinate(_ b: UInt8) -> Int { b >= 0xF0 ? Int(b) << 16 : Int(b % 24) }
            let range = LSPRange(start: LSPPosition(line: coordinate(c[0]), character: coordinate(c[1])),
                                 end: LSPPosition(line: coordinate(c[2]), character: coordinate(c[3])))
            let inserted = String(decoding: c[5...], as: UTF8.self)
            let before = Array(doc.text.utf16)
            if c[4] & 1 == 1 {
                doc.apply(.init(range: nil, text: inserted))
                precondition(doc.text == inserted, "a whole-text change did not replace the text")
                continue
            }
            let a = referenceOffset(range.start, in: doc.text), b = max(a, referenceOffset(range.end, in: doc.text))
            precondition(doc.offset(range.start) == a, "start \(range.start) at \(doc.offset(range.start)), the reference says \(a), in \(before)")
            doc.apply(.init(range: range, text: inserted))
            let after = Array(doc.text.utf16)
            let ins = Array(inserted.utf16)
            precondition(after.count == before.count - (b - a) + ins.count, "the edit \(range) changed \(before.count) units into \(after.count)")
            precondition(Array(after[..<a]) == Array(before[..<a]) && Array(after[(a + ins.count)...]) == Array(before[b...])
                         && Array(after[a..<(a + ins.count)]) == ins, "the edit \(range) touched text outside its range")
        }
        let lines = UtteranceLine.lines(doc.text)
        for u in UtteranceLine.parse(doc.text) {
            precondition(u.line < lines.count, "utterance on line \(u.line) of \(lines.count)")
            let l = Array(lines[u.line].utf16)
            precondition(u.start >= 0 && u.start <= u.end && u.end <= l.count && Array(l[u.start..<u.end]) == Array(u.text.utf16),
                         "utterance \(u.text) claims \(u.start)..<\(u.end) of line \(u.line)")
        }
    }

    /// Where an LSP position falls, found by walking Characters and scalars.
    static func referenceOffset(_ p: LSPPosition, in text: String) -> Int {
        var offset = 0, line = 0
        var lineStart: Int? = p.line == 0 ? 0 : nil
        var lineScalars: [Int] = []   // the UTF-16 offsets where the wanted line's scalars begin
        for ch in text {
            let isBreak = ch == "\n" || ch == "\r" || ch == "\r\n"
            if line == p.line {
                if isBreak { break }
                for s in ch.unicodeScalars {
                    lineScalars.append(offset)
                    offset += UTF16.width(s)
                }
                continue
            }
            offset += ch.utf16.count
            if isBreak {
                line += 1
                if line == p.line { lineStart = offset }
            }
        }
        guard let start = lineStart else { return text.utf16.count }
        let end = offset
        let want = start + min(max(0, p.character), end - start)
        return lineScalars.last(where: { $0 <= want }).map { want == end ? end : $0 } ?? start
    }
}
