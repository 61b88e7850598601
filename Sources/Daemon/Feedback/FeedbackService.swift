import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport
import Scoring
import Store

/// `feedback/report` and `feedback/list`: failure cases (and confirmations) with their cost,
/// durable before the answer; remembers the newest failure vectors for risk/flag.
///
/// - Important: Used only on the loop thread.
final class FeedbackService: DaemonService {
    private let model: ActiveModel
    private let pipeline: ScoringPipeline
    private let policy: RiskPolicy
    private let store: StoreThread
    private let recent: RecentInputs
    private let failures: FailureMemory
    private let metrics: LiveMetrics
    private let logger: Logger
    private let rollout: RolloutService

    init(model: ActiveModel, pipeline: ScoringPipeline, policy: RiskPolicy, store: StoreThread, recent: RecentInputs,
         failures: FailureMemory, metrics: LiveMetrics, rollout: RolloutService, logger: Logger) {
        self.rollout = rollout
        self.model = model
        self.pipeline = pipeline
        self.policy = policy
        self.store = store
        self.recent = recent
        self.failures = failures
        self.metrics = metrics
        self.logger = logger
        failures.load(from: store)
    }

    func register(on router: Router) {
        router.onDeferred(FeedbackReport.self) { [unowned self] params, ctx in
            self.model.whenReady { [weak self] serving in
                switch serving {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let s): self?.report(params, serving: s, ctx)
                }
            }
        }

        router.onDeferred(FeedbackList.self) { [unowned self] params, ctx in
            let limit = params.limit ?? 100
            guard (1...1000).contains(limit) else {
                ctx.reply(.failure(.invalidParams("'limit' must be 1 to 1000", field: "limit", expected: "1…1000", found: "\(limit)")))
                return
            }
            // The position is the last report's (at, id), `at` as its bit pattern (exact).
            let position: [Int]?
            do throws(RPCError) { position = try PageCursor.decode(FeedbackList.name, params.cursor, count: 2) } catch {
                ctx.reply(.failure(error)); return
            }
            let after = position.map { (at: Double(bitPattern: UInt64(bitPattern: Int64($0[0]))), id: $0[1]) }
            let filter = FeedbackFilter(kind: params.kind?.rawValue, label: params.label, version: params.version,
                                        since: params.since, until: params.until, limit: limit + 1, after: after)
            self.store.run({ store throws(StoreError) -> [FeedbackRecord] in try store.feedback(filter) }, completion: { result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let list):
                    let page = list.prefix(limit)
                    let next = list.count > limit ? page.last.map { PageCursor.encode(FeedbackList.name, [Int(Int64(bitPattern: $0.at.bitPattern)), $0.id]) } : nil
                    ctx.reply(FeedbackList.Result(feedback: page.map { Self.entry($0, duplicate: nil) }, nextCursor: next))
                }
            })
        }
    }

    static func entry(_ f: FeedbackRecord, duplicate: Bool?) -> FeedbackEntry {
        FeedbackEntry(id: f.id, kind: FeedbackKind(rawValue: f.kind) ?? .complaint, cost: f.cost, text: f.text, inputId: f.inputID,
                      predictedLabel: f.predictedLabel, correctLabel: f.correctLabel, version: f.version, at: f.at,
                      recordedAt: f.recordedAt, duplicate: duplicate, idempotencyKey: f.idempotencyKey)
    }

    private func report(_ p: FeedbackReport.Params, serving: ActiveModel.Serving, _ ctx: RequestContext) {
        let version = serving.version
        let atValue = p.at?.secondsSince1970
        var cost = p.cost ?? policy.feedbackCosts[p.kind.rawValue] ?? 0
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
        var answeredBy: Int? = nil
        switch (p.inputId, p.text) {
        case (let id?, nil):
            guard let entry = recent[id] else {
                ctx.reply(.failure(.invalidParams("no recent scored input has id '\(id)'; send its text instead", field: "inputId",
                                                  expected: "the id of an input scored since the daemon started", found: "\"\(id)\"")))
                return
            }
            text = entry.text
            answeredBy = entry.version
            knownLabel = entry.label
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
        // Which version answered: the input's record, the report's word, the canary's routing, else the active one.
        if let v = p.version, answeredBy == nil {
            guard v == version.id || rollout.serving(version: v) != nil else {
                ctx.reply(.failure(.invalidParams("version \(v) is neither the active version (\(version.id)) nor a rollout's candidate", field: "version")))
                return
            }
            answeredBy = v
        }
        let servedID = answeredBy ?? rollout.servedVersion(text: text) ?? version.id
        let answering = servedID == version.id ? serving : (rollout.serving(version: servedID) ?? serving)
        if answering.version.id != servedID { knownLabel = nil }
        let now = Date().timeIntervalSince1970
        let kind = p.kind.rawValue, key = p.idempotencyKey, inputID = p.inputId, correct = p.correctLabel
        let explicitCost = p.cost
        // Embed the text (for the failure-mode clusters) and, if needed, find its predicted label.
        pipeline.score([text], with: answering, token: ctx.token, vectors: true) { [weak self] scored in
            guard let self else { return }
            guard case .success(let s) = scored else {
                if case .failure(let e) = scored { ctx.reply(.failure(e)) }
                return
            }
            let vector = s.vectors
            let predicted = knownLabel ?? s.scores[0].label
            // Without an explicit cost, a configured misrouting cost for (meant, answered) wins.
            if explicitCost == nil, let correct, let m = self.policy.misrouting[correct]?[predicted] { cost = m }
            let record = FeedbackRecord(idempotencyKey: key, inputID: inputID, text: text, kind: kind, cost: cost, correctLabel: correct,
                                        predictedLabel: predicted, version: servedID, at: atValue ?? now, recordedAt: now, vector: vector)
            self.store.run({ store throws(StoreError) -> (FeedbackRecord, duplicate: Bool) in try store.recordFeedback(record) },
                           completion: { [weak self] result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let (stored, duplicate)):
                    if !duplicate, let self {
                        self.logger.debug("feedback recorded", metadata: ["id": "\(stored.id)", "kind": "\(kind)"])
                        self.rollout.feedbackRecorded(stored)
                        if kind != "confirmation" {
                            self.failures.remember(vector)
                            self.metrics.recordFailure(kind: kind, intent: stored.correctLabel ?? stored.predictedLabel, at: LiveMetrics.now())
                        }
                    }
                    ctx.reply(Self.entry(stored, duplicate: duplicate))
                }
            })
        }
    }
}
