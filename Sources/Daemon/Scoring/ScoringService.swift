import EventLoop
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring

/// `score` and `risk/flag`: the active version's answer for each input, and the risky ones
/// with their reasons. Records what it scored: traffic counters, live metrics, recent ids.
///
/// - Important: Used only on the loop thread.
final class ScoringService: DaemonService {
    private let model: ActiveModel
    private let pipeline: ScoringPipeline
    private let policy: RiskPolicy
    private let traffic: TrafficLedger
    private let recent: RecentInputs
    private let failures: FailureMemory
    private let metrics: LiveMetrics
    private let rollout: RolloutService

    init(model: ActiveModel, pipeline: ScoringPipeline, policy: RiskPolicy, traffic: TrafficLedger, recent: RecentInputs,
         failures: FailureMemory, metrics: LiveMetrics, rollout: RolloutService) {
        self.rollout = rollout
        self.model = model
        self.pipeline = pipeline
        self.policy = policy
        self.traffic = traffic
        self.recent = recent
        self.failures = failures
        self.metrics = metrics
    }

    func register(on router: Router) {
        router.onDeferred(Score.self) { [unowned self] params, ctx in
            self.run(params, ctx, vectors: false) { scored in
                ctx.reply(Score.Result(version: scored.scores.first?.version ?? 0, results: params.inputs.indices.map { i in
                    ScoredInput(scored.scores[i], id: params.inputs[i].id, cached: scored.cached.contains(i))
                }))
            }
        }
        router.onDeferred(RiskFlag.self) { [unowned self] params, ctx in
            let known = self.failures.vectors
            let policy = self.policy
            self.run(params, ctx, vectors: true) { scored in
                let scores = scored.scores, D = scored.dimension, vectors = scored.vectors
                ctx.compute({ _ -> [[RiskFlag.Reason]] in
                    scores.indices.map { i in
                        ScoringPipeline.reasons(scores[i], vector: vectors[(i * D)..<((i + 1) * D)], policy: policy, failures: known)
                    }
                }, then: { reasons in
                    let flagged = scores.indices.filter { !reasons[$0].isEmpty || scores[$0].risk.level != .low }.map { i in
                        FlaggedInput(index: i, text: params.inputs[i].text, score: ScoredInput(scores[i], id: params.inputs[i].id),
                                     reasons: reasons[i])
                    }
                    ctx.reply(RiskFlag.Result(version: scores.first?.version ?? 0, scored: scores.count, flagged: flagged))
                })
            }
        }
    }

    /// Scores the request's inputs with the version active when it arrived (waiting for the
    /// stored one at start), records them, and hands the scores to `done`.
    private func run(_ params: Score.Params, _ ctx: RequestContext, vectors: Bool, done: @escaping (ScoringPipeline.Scored) -> Void) {
        let options: ScoreOptions
        do throws(RPCError) { options = try ScoringPipeline.options(params) } catch { ctx.reply(.failure(error)); return }
        let started = DispatchTimeNanos.now()
        model.whenReady { [weak self] serving in
            guard let self else { return }
            guard case .success(let active) = serving else {
                if case .failure(let e) = serving { ctx.reply(.failure(e)) }
                return
            }
            let texts = params.inputs.map(\.text)
            // During a canary, the candidate answers its share of the traffic.
            let serving = self.rollout.route(key: params.routingKey, texts: texts) ?? active
            self.pipeline.score(texts, with: serving, options: options, token: ctx.token, vectors: vectors) { [weak self] result in
                guard let self else { return }
                switch result {
                case .failure(let e):
                    if e.code == .internalError { self.rollout.failed(version: serving.version.id) }
                    ctx.reply(.failure(e))
                case .success(let scored):
                    let seconds = Double(DispatchTimeNanos.now() - started) / 1e9
                    self.recordScored(scored.scores, inputs: params.inputs, seconds: seconds)
                    done(scored)
                    // After the reply: the rollout's evidence, and the shadow's work at background priority.
                    self.rollout.scored(texts, scores: scored.scores, version: serving.version.id, seconds: seconds)
                }
            }
        }
    }

    private func recordScored(_ scores: [InputScore], inputs: [Score.Input], seconds: Double) {
        traffic.record(scores)
        metrics.recordRequest(scores, seconds: seconds, unitCost: policy.unitCost)
        for (i, input) in inputs.enumerated() {
            if let id = input.id { recent[id] = RecentInputs.Entry(text: input.text, label: scores[i].label, version: scores[i].version) }
        }
    }

    func close() { traffic.close() }
}
