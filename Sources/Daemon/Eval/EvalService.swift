import Datasets
import Encoder
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring
import Store

/// `eval/run`: a version (or two, paired) on labelled data with the business-cost metrics:
/// accuracy, macro-F1, cost, ECE, out-of-scope quality, accuracy under typos.
///
/// - Important: Used only on the loop thread; the evaluation runs on the compute pool.
final class EvalService: DaemonService {
    private let model: ActiveModel
    private let pipeline: ScoringPipeline
    private let policy: RiskPolicy
    private let store: StoreThread
    private let repository: VersionRepository

    init(model: ActiveModel, pipeline: ScoringPipeline, policy: RiskPolicy, store: StoreThread, repository: VersionRepository) {
        self.model = model
        self.pipeline = pipeline
        self.policy = policy
        self.store = store
        self.repository = repository
    }

    func register(on router: Router) {
        router.onDeferred(EvalRun.self) { [unowned self] params, ctx in
            // The default version is the active one: wait for it while it loads at start.
            self.model.whenReady { [weak self] _ in self?.evaluate(params, ctx) }
        }
    }

    private struct EvalData: Sendable {
        var dataset: String
        var split: String
        var texts: [String]
        var truth: [String]
    }

    private func evaluate(_ p: EvalRun.Params, _ ctx: RequestContext) {
        guard let batcher = model.batcher else { ctx.reply(.failure(DaemonError.noModel)); return }
        let started = Date()
        let rates = p.typoRates ?? [0.1, 0.2]
        guard rates.count <= 4, rates.allSatisfy({ $0 > 0 && $0 <= 1 }) else {
            ctx.reply(.failure(.invalidParams("'typoRates' must hold up to 4 rates in (0, 1]", field: "typoRates", expected: "0 < rate ≤ 1", found: "\(rates)")))
            return
        }
        if let l = p.limit, l < 1 { ctx.reply(.failure(.invalidParams("'limit' must be at least 1", field: "limit", expected: "≥ 1", found: "\(l)"))); return }
        guard let first = p.version ?? model.version?.id else { ctx.reply(.failure(DaemonError.noVersion)); return }
        let ids = [first] + (p.compare.map { [$0] } ?? [])
        let seed = UInt64(truncatingIfNeeded: p.seed ?? 1)
        let progress = ctx.progress(token: p.workDoneToken)
        progress?.begin(title: "Evaluating version\(ids.count > 1 ? "s" : "") \(ids.map(String.init).joined(separator: " and ")) on '\(p.dataset)'")
        let name = p.dataset, limit = p.limit
        store.run({ store throws(StoreError) -> EvalData in
            guard let info = try store.dataset(named: name) else { throw StoreError(.notFound, "no dataset named '\(name)' (dataset/list shows them)") }
            let all = try store.examples(dataset: info.id, split: nil)
            var split = p.split?.rawValue ?? (info.test > 0 ? "test" : info.validation > 0 ? "validation" : "all")
            var chosen = split == "all" ? all : all.filter { $0.split.rawValue == split }
            if chosen.isEmpty && p.split == nil { chosen = all; split = "all" }
            guard !chosen.isEmpty else { throw StoreError(.invalid, "dataset '\(name)' has no \(split) examples") }
            if let limit { chosen = Array(chosen.prefix(limit)) }
            return EvalData(dataset: name, split: split, texts: chosen.map(\.text), truth: chosen.map(\.label))
        }, completion: { [unowned self] result in
            switch result {
            case .failure(let e): progress?.end(message: "failed"); ctx.reply(.failure(e))
            case .success(let data):
                // The texts and their typo variants, embedded once per version.
                var texts = data.texts
                for (k, rate) in rates.enumerated() {
                    texts += data.texts.enumerated().map { i, t in Typos.perturb(t, rate: rate, seed: seed &* 1_000_003 &+ UInt64(k * 7_919 + i)) }
                }
                self.evaluateVersions(ids, index: 0, texts: texts, data: data, rates: rates, batcher: batcher, ctx: ctx, progress: progress,
                                      started: started, done: [])
            }
        })
    }

    private func evaluateVersions(_ ids: [Int], index: Int, texts: [String], data: EvalData, rates: [Double], batcher: MicroBatcher,
                                  ctx: RequestContext, progress: WorkDoneProgress?, started: Date,
                                  done: [(Evaluation.Report, Evaluation.Outcome, ModelVersion)]) {
        guard index < ids.count else {
            finishEvaluation(done, data: data, ctx: ctx, progress: progress, started: started)
            return
        }
        let id = ids[index]
        let share = (from: 100 * index / ids.count, to: 100 * (index + 1) / ids.count - 5)
        repository.serving(id, model: model, ctx: ctx) { [unowned self] version, encoder in
            // Read as serving reads them: through the version's normaliser.
            let read = version.normaliser == nil ? texts : texts.map { version.encoderText($0) }
            self.pipeline.embedAll(read, batcher: batcher, encoder: encoder, ctx: ctx, progress: progress, percentOf: share) { [unowned self] vectors in
                let D = self.model.encoder!.hiddenSize, N = data.texts.count
                let policy = self.policy
                ctx.compute({ _ -> EvalBox in
                    let typo = rates.enumerated().map { k, r in (rate: r, vectors: Array(vectors[((k + 1) * N * D)..<((k + 2) * N * D)])) }
                    let (report, outcome) = Evaluation.evaluate(version, vectors: Array(vectors[0..<(N * D)]), truth: data.truth, typoVectors: typo,
                                                                cost: { t, p in policy.cost(truth: t, predicted: p) },
                                                                misrouting: { t, p in policy.misrouting[t]?[p] })
                    return EvalBox(report: report, outcome: outcome)
                }, then: { [unowned self] box in
                    self.evaluateVersions(ids, index: index + 1, texts: texts, data: data, rates: rates, batcher: batcher, ctx: ctx,
                                          progress: progress, started: started, done: done + [(box.report, box.outcome, version)])
                })
            }
        }
    }

    struct EvalBox: @unchecked Sendable {
        let report: Evaluation.Report
        let outcome: Evaluation.Outcome
    }

    private func finishEvaluation(_ done: [(Evaluation.Report, Evaluation.Outcome, ModelVersion)], data: EvalData, ctx: RequestContext,
                                  progress: WorkDoneProgress?, started: Date) {
        var comparison: EvalComparison? = nil
        if done.count == 2 {
            let (a, b) = (done[0], done[1])
            // Examples in scope for both versions, paired.
            let known = Set(a.2.labels).intersection(b.2.labels)
            let idx = data.truth.indices.filter { known.contains(data.truth[$0]) }
            let pairs = idx.map { Gate.Pair(parentCost: a.1.cost[$0], candidateCost: b.1.cost[$0], parentCorrect: a.1.correct[$0], candidateCorrect: b.1.correct[$0]) }
            let c = Gate.compare(pairs, settings: Gate.Settings())
            let accA = Double(idx.filter { a.1.correct[$0] }.count) / Double(max(1, idx.count))
            let accB = Double(idx.filter { b.1.correct[$0] }.count) / Double(max(1, idx.count))
            comparison = EvalComparison(first: a.0.version, second: b.0.version, examples: idx.count, accuracyDifference: accB - accA, cost: c)
        }
        progress?.end(message: "done")
        ctx.reply(EvalRun.Result(dataset: data.dataset, split: data.split, examples: data.texts.count,
                                 reports: done.map(\.0), comparison: comparison,
                                 seconds: Date().timeIntervalSince(started)))
    }
}
