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

extension Server {
    static let utteranceLanguage = "utterances"
    static let utteranceExtensions = [".utter", ".utterances"]

    func isUtteranceFile(uri: String, languageId: String?) -> Bool {
        languageId == Self.utteranceLanguage || Self.utteranceExtensions.contains { uri.hasSuffix($0) }
    }

    func registerDocumentMethods() {
        router.onNotification(DidOpenTextDocument.self) { [unowned self] p, conn in
            let item = p.textDocument
            guard self.isUtteranceFile(uri: item.uri, languageId: item.languageId) else { return }
            let doc = UtteranceDocument(uri: item.uri, version: item.version, text: item.text)
            self.documents[conn.id, default: [:]][item.uri] = doc
            self.rescore(doc, conn)
        }
        router.onNotification(DidChangeTextDocument.self) { [unowned self] p, conn in
            guard let doc = self.documents[conn.id]?[p.textDocument.uri] else { return }
            for c in p.contentChanges { doc.apply(c) }
            doc.version = p.textDocument.version
            self.rescore(doc, conn)
        }
        router.onNotification(DidCloseTextDocument.self) { [unowned self] p, conn in
            guard self.documents[conn.id]?.removeValue(forKey: p.textDocument.uri) != nil else { return }
            conn.notify(PublishDiagnostics.self, .init(uri: p.textDocument.uri, version: nil, diagnostics: []))
        }
        router.on(Hover.self) { [unowned self] p, ctx throws(RPCError) in
            guard let doc = self.documents[ctx.connection.id]?[p.textDocument.uri] else { return .null }
            guard let u = UtteranceLine.parse(doc.text).first(where: { $0.line == p.position.line }), let s = doc.scores[u.text] else { return .null }
            return .object([
                "contents": ["kind": "markdown", "value": .string(Self.hoverText(s, expect: u.expect))],
                "range": (try? JSONValueEncoder().encode(LSPRange(start: .init(line: u.line, character: u.start), end: .init(line: u.line, character: u.end)))) ?? .null,
            ])
        }
    }

    /// Scores the utterances whose scores are missing (new or changed lines; all of them after
    /// a version change), then publishes the document's diagnostics.
    func rescore(_ doc: UtteranceDocument, _ conn: Connection) {
        guard let version = activeVersion, let batcher else {
            conn.notify(PublishDiagnostics.self, .init(uri: doc.uri, version: doc.version, diagnostics: []))
            return
        }
        if doc.scoredBy != version.id { doc.scores = [:]; doc.scoredBy = version.id }
        if doc.scoring { doc.stale = true; return }  // one batch at a time per document; the latest text goes next
        let lines = UtteranceLine.parse(doc.text)
        var seen = Set<String>()
        let missing = lines.map(\.text).filter { doc.scores[$0] == nil && seen.insert($0).inserted }
        guard !missing.isEmpty else { publish(doc, conn); return }
        doc.scoring = true
        let thresholds = riskThresholds, impacts = impactWeights
        batcher.submit(missing, encoder: activeEncoder, token: CancellationToken()) { [weak self, weak conn] embedded in
            guard let self else { return }
            guard case .success(let r) = embedded else { doc.scoring = false; return }
            self.compute.submit(work: { _ in
                Scorer.score(version, vectors: r.vectors, count: missing.count, variants: nil, perturbations: 0, options: ScoreOptions(),
                             thresholds: thresholds, impact: { impacts[$0] ?? 1 })
            }, completion: { [weak self, weak conn] scores in
                doc.scoring = false
                guard let self, let conn, !conn.isClosed, self.documents[conn.id]?[doc.uri] === doc else { return }
                if let scores, doc.scoredBy == version.id {
                    for (t, s) in zip(missing, scores) { doc.scores[t] = s }
                    self.documentLinesScored += missing.count
                }
                if doc.stale || doc.scoredBy != self.activeVersion?.id {
                    doc.stale = false
                    self.rescore(doc, conn)
                } else {
                    self.publish(doc, conn)
                }
            })
        }
    }

    func publish(_ doc: UtteranceDocument, _ conn: Connection) {
        var diagnostics: [PublishDiagnostics.Diagnostic] = []
        let known = Set(activeVersion?.labels ?? [])
        for u in UtteranceLine.parse(doc.text) {
            guard let s = doc.scores[u.text] else { continue }
            let range = LSPRange(start: .init(line: u.line, character: u.start), end: .init(line: u.line, character: u.end))
            let summary = String(format: "predicted %@ (confidence %.2f, margin %.2f)", s.label as NSString, s.confidence, s.margin)
            if let e = u.expect {
                if !known.contains(e) {
                    diagnostics.append(.init(range: range, severity: 2, code: "unknown_intent",
                                             message: "expect: '\(e)' is not an intent of version \(s.version)"))
                } else if e != s.label {
                    diagnostics.append(.init(range: range, severity: 1, code: "expectation", message: "expected \(e), \(summary)"))
                }
            }
            var reasons: [String] = []
            if s.outOfScope.flagged {
                reasons.append(String(format: "out of scope (neighbour distance %.3f > %.3f)", s.outOfScope.neighbourDistance, s.outOfScope.threshold))
            }
            if s.confidence < flagSettings.lowConfidence { reasons.append(String(format: "low confidence (< %.2f)", flagSettings.lowConfidence)) }
            if s.margin < flagSettings.smallMargin { reasons.append(String(format: "small margin (< %.2f)", flagSettings.smallMargin)) }
            if s.risk.impact > 1 { reasons.append(String(format: "high-impact intent (× %.1f)", s.risk.impact)) }
            let severity = s.risk.level == "high" || s.outOfScope.flagged ? 2 : s.risk.level == "medium" ? 3 : 0
            if severity > 0 {
                diagnostics.append(.init(range: range, severity: severity, code: s.outOfScope.flagged ? "out_of_scope" : "risk",
                                         message: String(format: "risk %@ %.2f = p(wrong) %.2f × impact %.1f; %@", s.risk.level as NSString, s.risk.score,
                                                         s.risk.pWrong, s.risk.impact, summary as NSString)
                                             + (reasons.isEmpty ? "" : "; " + reasons.joined(separator: ", "))))
            }
        }
        conn.notify(PublishDiagnostics.self, .init(uri: doc.uri, version: doc.version, diagnostics: diagnostics))
    }

    /// A new version is active: every open utterance file is scored again and republished.
    func rescoreOpenDocuments() {
        for (id, docs) in documents {
            guard let conn = connections[id], !conn.isClosed else { documents[id] = nil; continue }
            for doc in docs.values { rescore(doc, conn) }
        }
    }

    static func hoverText(_ s: InputScore, expect: String?) -> String {
        var t = "**\(s.label)**, confidence \(String(format: "%.3f", s.confidence)), margin \(String(format: "%.3f", s.margin)) (version \(s.version))\n\n"
        if let e = expect { t += (e == s.label ? "✓ matches" : "✗ differs from") + " `# expect: \(e)`\n\n" }
        t += "| intent | p |\n| --- | --- |\n" + s.top.map { "| \($0.label) | \(String(format: "%.3f", $0.p)) |" }.joined(separator: "\n") + "\n\n"
        t += String(format: "risk **%@** %.3f = p(wrong) %.3f × impact %.2f\n\n", s.risk.level as NSString, s.risk.score, s.risk.pWrong, s.risk.impact)
        t += String(format: "out of scope: %@ (neighbour distance %.3f, threshold %.3f; Mahalanobis %.1f)",
                     (s.outOfScope.flagged ? "yes" : "no") as NSString, s.outOfScope.neighbourDistance, s.outOfScope.threshold, s.outOfScope.mahalanobis)
        return t
    }
}
