import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring

/// One utterance of an utterance file: its line, the text, where it sits on the line (UTF-16
/// units, as LSP counts), and the intent an `# expect:` annotation names.
struct UtteranceLine: Equatable {
    var line: Int
    var text: String
    var start: Int
    var end: Int
    var expect: String?

    /// An utterance file: one utterance a line; blank lines and `#` lines are skipped;
    /// `# expect: intent` on its own line applies to the next utterance, and after an
    /// utterance on the same line to that one.
    static func parse(_ text: String) -> [UtteranceLine] {
        var out: [UtteranceLine] = []
        var pending: String? = nil
        for (i, sub) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var raw = String(sub)
            if raw.hasSuffix("\r") { raw.removeLast() }
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { pending = nil; continue }
            if trimmed.hasPrefix("#") {
                if let e = expectation(trimmed) { pending = e }
                continue
            }
            var body = Substring(raw)
            var expect = pending
            pending = nil
            if let r = raw.range(of: "# expect:") {
                expect = String(raw[r.upperBound...]).trimmingCharacters(in: .whitespaces)
                body = raw[..<r.lowerBound]
            }
            let lead = body.prefix { $0 == " " || $0 == "\t" }
            let utterance = body.trimmingCharacters(in: .whitespaces)
            guard !utterance.isEmpty else { continue }
            let start = lead.utf16.count
            out.append(UtteranceLine(line: i, text: utterance, start: start, end: start + utterance.utf16.count,
                                     expect: expect?.isEmpty == false ? expect : nil))
        }
        return out
    }

    static func expectation(_ comment: String) -> String? {
        guard let r = comment.range(of: "expect:") else { return nil }
        let e = comment[r.upperBound...].trimmingCharacters(in: .whitespaces)
        return e.isEmpty ? nil : e
    }
}

/// An open utterance file of one connection, and the scores of its utterances.
///
/// - Important: Used only on the loop thread.
final class UtteranceDocument {
    let uri: String
    var version: Int?
    var text: String
    /// Scores by utterance text, all from the version `scoredBy`.
    var scores: [String: InputScore] = [:]
    var scoredBy: Int?
    var scoring = false
    var stale = false

    init(uri: String, version: Int?, text: String) {
        self.uri = uri
        self.version = version
        self.text = text
    }

    /// Applies one LSP change: a whole new text, or a replacement of a range.
    func apply(_ c: DidChangeTextDocument.Params.Change) {
        guard let r = c.range else { text = c.text; return }
        let a = index(r.start), b = index(r.end)
        text.replaceSubrange(a..<max(a, b), with: c.text)
    }

    /// The index of an LSP position (line, UTF-16 units), clamped to the text.
    func index(_ p: LSPPosition) -> String.Index {
        var i = text.startIndex
        var line = 0
        while line < p.line {
            guard let nl = text[i...].firstIndex(of: "\n") else { return text.endIndex }
            i = text.index(after: nl)
            line += 1
        }
        let lineEnd = text[i...].firstIndex(of: "\n") ?? text.endIndex
        let u = text.utf16
        var t = u.index(i, offsetBy: max(0, p.character), limitedBy: lineEnd) ?? lineEnd
        // Inside a surrogate pair: back to the character's start.
        while t > i, t.samePosition(in: text) == nil { t = u.index(before: t) }
        return t
    }
}
