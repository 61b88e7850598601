import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring

/// Utterance files over LSP (docs/editors.md): text sync, diagnostics for risky lines and
/// expectation mismatches, hover; only changed lines are scored, and open files are scored
/// again when a new version becomes active.
///
/// - Important: Used only on the loop thread.
final class DocumentService: DaemonService {
    private let model: ActiveModel
    private let pipeline: ScoringPipeline
    private let policy: RiskPolicy
    /// Open utterance files by connection id and URI.
    private var documents: [Int: [String: UtteranceDocument]] = [:]
    private struct WeakConnection { weak var connection: Connection? }
    private var connections: [Int: WeakConnection] = [:]
    /// Utterances scored (changed lines only).
    private var linesScored = 0

    init(model: ActiveModel, pipeline: ScoringPipeline, policy: RiskPolicy) {
        self.model = model
        self.pipeline = pipeline
        self.policy = policy
        model.onChange { [weak self] _ in self?.rescoreOpenDocuments() }
    }

    func connectionClosed(_ connection: Connection) {
        documents[connection.id] = nil
        connections[connection.id] = nil
    }

    func gauges(into values: inout [String: Double]) {
        values["documents.open"] = Double(documents.values.reduce(0) { $0 + $1.count })
        values["documents.linesScored"] = Double(linesScored)
    }

    static let utteranceLanguage = "utterances"
    static let utteranceExtensions = [".utter", ".utterances"]

    static func isUtteranceFile(uri: String, languageId: String?) -> Bool {
        languageId == Self.utteranceLanguage || Self.utteranceExtensions.contains { uri.hasSuffix($0) }
    }

    func register(on router: Router) {
        router.onNotification(DidOpenTextDocument.self) { [unowned self] p, conn in
            let item = p.textDocument
            guard Self.isUtteranceFile(uri: item.uri, languageId: item.languageId) else { return }
            let doc = UtteranceDocument(uri: item.uri, version: item.version, text: item.text)
            self.documents[conn.id, default: [:]][item.uri] = doc
            self.connections[conn.id] = WeakConnection(connection: conn)
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
            guard let doc = self.documents[ctx.connection.id]?[p.textDocument.uri] else { return nil }
            guard let u = UtteranceLine.parse(doc.text).first(where: { $0.line == p.position.line }), let s = doc.scores[u.text] else { return nil }
            return Hover.Info(contents: .init(value: Self.hoverText(s, expect: u.expect)),
                              range: LSPRange(start: .init(line: u.line, character: u.start), end: .init(line: u.line, character: u.end)))
        }
    }

    /// Scores the utterances whose scores are missing (new or changed lines; all of them after
    /// a version change), then publishes the document's diagnostics.
    func rescore(_ doc: UtteranceDocument, _ conn: Connection) {
        // At start, the stored active version may still be loading: score once it is in.
        if model.isLoading {
            model.whenReady { [weak self, weak conn] _ in
                guard let self, let conn, !conn.isClosed else { return }
                self.rescore(doc, conn)
            }
            return
        }
        guard case .success(let serving) = model.serving else {
            conn.notify(PublishDiagnostics.self, .init(uri: doc.uri, version: doc.version, diagnostics: []))
            return
        }
        let version = serving.version
        if doc.scoredBy != version.id { doc.scores = [:]; doc.scoredBy = version.id }
        if doc.scoring { doc.stale = true; return }  // one batch at a time per document; the latest text goes next
        let lines = UtteranceLine.parse(doc.text)
        var seen = Set<String>()
        let missing = lines.map(\.text).filter { doc.scores[$0] == nil && seen.insert($0).inserted }
        guard !missing.isEmpty else { publish(doc, conn); return }
        doc.scoring = true
        pipeline.score(missing, with: serving, token: CancellationToken()) { [weak self, weak conn] scored in
            doc.scoring = false
            guard let self, let conn, !conn.isClosed, self.documents[conn.id]?[doc.uri] === doc else { return }
            if case .success(let s) = scored, doc.scoredBy == version.id {
                for (t, score) in zip(missing, s.scores) { doc.scores[t] = score }
                self.linesScored += missing.count
            }
            if doc.stale || doc.scoredBy != self.model.version?.id {
                doc.stale = false
                self.rescore(doc, conn)
            } else {
                self.publish(doc, conn)
            }
        }
    }

    func publish(_ doc: UtteranceDocument, _ conn: Connection) {
        var diagnostics: [PublishDiagnostics.Diagnostic] = []
        let known = Set(model.version?.labels ?? [])
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
            // The reasons risk/flag gives, without the near-failure check (no vectors kept here).
            let reasons = ScoringPipeline.reasons(s, vector: [], policy: policy, failures: []).map(Self.describe)
            let severity = s.risk.level == .high || s.outOfScope.flagged ? 2 : s.risk.level == .medium ? 3 : 0
            if severity > 0 {
                diagnostics.append(.init(range: range, severity: severity, code: s.outOfScope.flagged ? "out_of_scope" : "risk",
                                         message: String(format: "risk %@ %.2f = p(wrong) %.2f × impact %.1f; %@", s.risk.level.rawValue as NSString, s.risk.score,
                                                         s.risk.pWrong, s.risk.impact, summary as NSString)
                                             + (reasons.isEmpty ? "" : "; " + reasons.joined(separator: ", "))))
            }
        }
        conn.notify(PublishDiagnostics.self, .init(uri: doc.uri, version: doc.version, diagnostics: diagnostics))
    }

    /// A new version is active: every open utterance file is scored again and republished.
    private func rescoreOpenDocuments() {
        for (id, docs) in documents {
            guard let conn = connections[id]?.connection, !conn.isClosed else { documents[id] = nil; connections[id] = nil; continue }
            for doc in docs.values { rescore(doc, conn) }
        }
    }

    /// A risk reason in words, for a diagnostic.
    static func describe(_ r: RiskFlag.Reason) -> String {
        switch r.reason {
        case .outOfScope: return String(format: "out of scope (neighbour distance %.3f > %.3f)", r.value, r.threshold)
        case .lowConfidence: return String(format: "low confidence (< %.2f)", r.threshold)
        case .smallMargin: return String(format: "small margin (< %.2f)", r.threshold)
        case .highImpact: return String(format: "high-impact intent (× %.1f)", r.value)
        case .unstable: return String(format: "unstable under typos (%.0f%% flips)", 100 * r.value)
        case .nearFailure: return String(format: "near a known failure (similarity %.2f)", r.value)
        }
    }

    static func hoverText(_ s: InputScore, expect: String?) -> String {
        var t = "**\(s.label)**, confidence \(String(format: "%.3f", s.confidence)), margin \(String(format: "%.3f", s.margin)) (version \(s.version))\n\n"
        if let e = expect { t += (e == s.label ? "✓ matches" : "✗ differs from") + " `# expect: \(e)`\n\n" }
        t += "| intent | p |\n| --- | --- |\n" + s.top.map { "| \($0.label) | \(String(format: "%.3f", $0.p)) |" }.joined(separator: "\n") + "\n\n"
        t += String(format: "risk **%@** %.3f = p(wrong) %.3f × impact %.2f\n\n", s.risk.level.rawValue as NSString, s.risk.score, s.risk.pWrong, s.risk.impact)
        t += String(format: "out of scope: %@ (neighbour distance %.3f, threshold %.3f; Mahalanobis %.1f)",
                     (s.outOfScope.flagged ? "yes" : "no") as NSString, s.outOfScope.neighbourDistance, s.outOfScope.threshold, s.outOfScope.mahalanobis)
        return t
    }
}
