import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring
import Store

extension Server {
    /// Default business cost per feedback kind (the configuration file overrides them).
    static let defaultFeedbackCosts: [String: Double] = ["complaint": 10, "reinquiry": 3, "escalation": 25, "correction": 1, "confirmation": 0]

    func registerFeedbackMethods() {
        router.onDeferred(FeedbackReport.self) { [unowned self] params, ctx in self.report(params, ctx) }

        router.onDeferred(FeedbackList.self) { [unowned self] params, ctx in
            let limit = params.limit ?? 100
            guard (1...1000).contains(limit) else {
                ctx.reply(.failure(.invalidParams("'limit' must be 1 to 1000", field: "limit", expected: "1…1000", found: "\(limit)")))
                return
            }
            let filter = FeedbackFilter(kind: params.kind?.rawValue, label: params.label, version: params.version,
                                        since: params.since, until: params.until, limit: limit)
            self.store.run({ store throws(StoreError) -> [FeedbackRecord] in try store.feedback(filter) }, completion: { result in
                ctx.reply(result.map { list in
                    (try? JSONValue.encoding(FeedbackList.Result(feedback: list.map { Self.entry($0, duplicate: nil) }))) ?? .null
                })
            })
        }
    }

    /// Keeps the newest failure vectors (at most 5,000) for the "near a known failure" reason.
    func rememberFailure(_ v: [Float]) {
        failureVectors.append(v)
        if failureVectors.count > 5000 { failureVectors.removeFirst(failureVectors.count - 5000) }
    }

    /// Loads the newest failure vectors at start.
    func loadFailureVectors() {
        store.run({ store throws(StoreError) -> [[Float]] in
            try store.feedback(FeedbackFilter(limit: 5000, withVectors: true)).filter { $0.kind != "confirmation" && !$0.vector.isEmpty }.map(\.vector)
        }, completion: { [unowned self] r in
            if case .success(let vs) = r { self.failureVectors = vs.reversed() + self.failureVectors }
        })
    }

    static func entry(_ f: FeedbackRecord, duplicate: Bool?) -> FeedbackEntry {
        FeedbackEntry(id: f.id, kind: f.kind, cost: f.cost, text: f.text, inputId: f.inputID, predictedLabel: f.predictedLabel,
                      correctLabel: f.correctLabel, version: f.version, at: f.at, recordedAt: f.recordedAt, duplicate: duplicate)
    }

    /// Seconds since 1970 from a number or an ISO 8601 string.
    static func time(_ v: JSONValue?) -> Double?? {
        guard let v else { return .some(nil) }
        if let d = v.doubleValue, d.isFinite, d >= 0 { return .some(d) }
        if let s = v.stringValue {
            let f = ISO8601DateFormatter()
            f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
            if let d = f.date(from: s) { return .some(d.timeIntervalSince1970) }
            f.formatOptions = [.withInternetDateTime]
            if let d = f.date(from: s) { return .some(d.timeIntervalSince1970) }
        }
        return nil
    }

    private func report(_ p: FeedbackReport.Params, _ ctx: RequestContext) {
        guard let batcher else { ctx.reply(.failure(Self.noModelError)); return }
        guard let version = activeVersion else { ctx.reply(.failure(Self.noVersionError)); return }
        guard let atValue = Self.time(p.at) else {
            ctx.reply(.failure(.invalidParams("'at' must be seconds since 1970 or an ISO 8601 time", field: "at", expected: "a number or \"2026-11-29T10:00:00Z\"", found: p.at.map { $0.foundDescription } ?? "")))
            return
        }
        var cost = p.cost ?? feedbackCosts[p.kind.rawValue] ?? 0
        guard cost.isFinite, cost >= 0 else {
            ctx.reply(.failure(.invalidParams("'cost' must be a finite number ≥ 0", field: "cost", expected: "a number ≥ 0", found: "\(cost)")))
            return
        }
        if let l = p.correctLabel, !version.labels.contains(l) {
            let near = version.labels.filter { $0.contains(l) || l.contains($0) }.prefix(5)
            ctx.reply(.failure(.invalidParams("'\(l)' is not an intent of version \(version.id)" + (near.isEmpty ? "" : "; did you mean \(near.joined(separator: ", "))?"),
                                              field: "correctLabel", expected: "one of the \(version.labels.count) labels of version \(version.id)", found: "\"\(l)\"")))
            return
        }
        if let k = p.idempotencyKey, k.isEmpty || k.count > 200 {
            ctx.reply(.failure(.invalidParams("'idempotencyKey' must be 1 to 200 characters", field: "idempotencyKey")))
            return
        }
        var text: String
        var knownLabel: String? = nil
        switch (p.inputId, p.text) {
        case (let id?, nil):
            guard let recent = recentInputs[id] else {
                ctx.reply(.failure(.invalidParams("no recent scored input has id '\(id)'; send its text instead", field: "inputId",
                                                  expected: "the id of an input scored since the daemon started", found: "\"\(id)\"")))
                return
            }
            text = recent.text
            if recent.version == version.id { knownLabel = recent.label }
        case (_, let t?):
            text = t
        case (nil, nil):
            ctx.reply(.failure(.invalidParams("give 'inputId' or 'text'", field: "text", expected: "the input's text or its id")))
            return
        }
        guard !text.unicodeScalars.allSatisfy(\.properties.isWhitespace) else {
            ctx.reply(.failure(.invalidParams("the text is empty", field: "text", expected: "a non-empty string")))
            return
        }
        text = String(text.prefix(20_000))
        let now = Date().timeIntervalSince1970
        let kind = p.kind.rawValue, key = p.idempotencyKey, inputID = p.inputId, correct = p.correctLabel
        let explicitCost = p.cost
        let thresholds = riskThresholds
        // Embed the text (for the failure-mode clusters) and, if needed, find its predicted label.
        batcher.submit([text], encoder: activeEncoder, token: ctx.token) { [unowned self] embedded in
            guard case .success(let r) = embedded else {
                if case .failure(let e) = embedded { ctx.reply(.failure(e)) }
                return
            }
            let vector = r.vectors
            let predicted = knownLabel ?? Scorer.score(version, vectors: vector, count: 1, variants: nil, perturbations: 0,
                                                       options: ScoreOptions(), thresholds: thresholds, impact: { _ in 1 })[0].label
            // Without an explicit cost, a configured misrouting cost for (meant, answered) wins.
            if explicitCost == nil, let correct, let m = self.misroutingCosts[correct]?[predicted] { cost = m }
            let finalCost = cost
            let record = FeedbackRecord(idempotencyKey: key, inputID: inputID, text: text, kind: kind, cost: finalCost, correctLabel: correct,
                                        predictedLabel: predicted, version: version.id, at: atValue ?? now, recordedAt: now, vector: vector)
            self.store.run({ store throws(StoreError) -> (FeedbackRecord, duplicate: Bool) in try store.recordFeedback(record) },
                           completion: { result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let (stored, duplicate)):
                    if !duplicate {
                        self.logger.debug("feedback recorded", metadata: ["id": "\(stored.id)", "kind": "\(kind)"])
                        if kind != "confirmation" {
                            self.rememberFailure(vector)
                            self.metrics.recordFailure(kind: kind, intent: stored.correctLabel ?? stored.predictedLabel, at: LiveMetrics.now())
                        }
                    }
                    ctx.reply(Self.entry(stored, duplicate: duplicate))
                }
            })
        }
    }
}
