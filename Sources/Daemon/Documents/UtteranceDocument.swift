import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring

/// One utterance of an utterance file: its line, the text, where it sits on the line (UTF-16
/// units, as LSP counts), and the intent an `# expect:` annotation names.
public struct UtteranceLine: Equatable, Sendable {
    public var line: Int
    public var text: String
    public var start: Int
    public var end: Int
    public var expect: String?

    /// An utterance file: one utterance a line; blank lines and `#` lines are skipped;
    /// `# expect: intent` on its own line applies to the next utterance, and after an
    /// utterance on the same line to that one.
    public static func parse(_ text: String) -> [UtteranceLine] {
        var out: [UtteranceLine] = []
        var pending: String? = nil
        for (i, sub) in lines(text).enumerated() {
            let raw = String(sub)
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
            // The utterance is the line without its leading and trailing white space, counted in
            // scalars (a space and a combining mark after it are one Character, but the space
            // is trimmed and the mark is kept).
            let utterance = body.trimmingCharacters(in: .whitespaces)
            guard !utterance.isEmpty else { continue }
            let start = body.unicodeScalars.prefix { CharacterSet.whitespaces.contains($0) }.reduce(0) { $0 + UTF16.width($1) }
            out.append(UtteranceLine(line: i, text: utterance, start: start, end: start + utterance.utf16.count,
                                     expect: expect?.isEmpty == false ? expect : nil))
        }
        return out
    }

    /// The text's lines, as LSP counts them: each of `\n`, `\r\n` and `\r` ends one (a `\r\n` is
    /// one Character in Swift, so splitting on `"\n"` alone would not see it).
    public static func lines(_ text: String) -> [Substring] {
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
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
public final class UtteranceDocument {
    public let uri: String
    var version: Int?
    public internal(set) var text: String
    /// Scores by utterance text, all from the version `scoredBy`.
    var scores: [String: InputScore] = [:]
    var scoredBy: Int?
    var scoring = false
    var stale = false

    public init(uri: String, version: Int?, text: String) {
        self.uri = uri
        self.version = version
        self.text = text
    }

    /// Applies one LSP change: a whole new text, or a replacement of a range. Positions count
    /// UTF-16 units and lines end at `\n`, `\r\n` or `\r`, as LSP says; a position past its line's
    /// end is the line's end, one inside a surrogate pair the pair's start, one past the last
    /// line the text's end.
    public func apply(_ c: DidChangeTextDocument.Params.Change) {
        guard let r = c.range else { text = c.text; return }
        var u = Array(text.utf16)
        let a = Self.offset(r.start, in: u), b = max(a, Self.offset(r.end, in: u))
        u.replaceSubrange(a..<b, with: c.text.utf16)
        text = String(decoding: u, as: UTF16.self)
    }

    /// The UTF-16 offset of an LSP position in the text.
    public func offset(_ p: LSPPosition) -> Int { Self.offset(p, in: Array(text.utf16)) }

    static func offset(_ p: LSPPosition, in u: [UInt16]) -> Int {
        let lf: UInt16 = 0x0A, cr: UInt16 = 0x0D
        var i = 0
        var line = 0
        while line < p.line {
            guard let j = u[i...].firstIndex(where: { $0 == lf || $0 == cr }) else { return u.count }
            i = u[j] == cr && j + 1 < u.count && u[j + 1] == lf ? j + 2 : j + 1
            line += 1
        }
        let lineEnd = u[i...].firstIndex(where: { $0 == lf || $0 == cr }) ?? u.count
        var t = i + min(max(0, p.character), lineEnd - i)
        if t > i, t < u.count, UTF16.isTrailSurrogate(u[t]) { t -= 1 }
        return t
    }
}
