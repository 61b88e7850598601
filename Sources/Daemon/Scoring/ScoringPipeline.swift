import Encoder
import EventLoop
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring

/// The one embed → score path: texts through the shared batcher (their typo variants in the
/// same batch), the version's head and risk on the compute pool, cached by (version,
/// options, text). Used by score, risk/flag, feedback/report, documents, model/fit and eval.
///
/// - Important: Used only on the loop thread; the work runs on the batcher's and the pool's threads.
final class ScoringPipeline {
    /// Scores of one call, in input order.
    struct Scored {
        var scores: [InputScore]
        /// `[N, D]` vectors of every input (only when asked for, which skips the cache).
        var vectors: [Float]
        var dimension: Int
        /// Inputs answered from the cache.
        var cached: Set<Int>
    }

    private let compute: ComputePool
    private let policy: RiskPolicy
    private let cache = ScoreCache()

    init(model: ActiveModel, policy: RiskPolicy, compute: ComputePool) {
        self.compute = compute
        self.policy = policy
        // Cached scores name their version; a new version makes them useless.
        model.onChange { [cache] _ in cache.clear() }
    }

    /// Options of a score or risk/flag request, checked.
    static func options(_ params: Score.Params) throws(RPCError) -> ScoreOptions {
        let inputs = params.inputs
        guard !inputs.isEmpty, inputs.count <= Score.maxInputs else {
            throw .invalidParams("'inputs' must hold 1 to \(Score.maxInputs) inputs", field: "inputs",
                                 expected: "1 to \(Score.maxInputs) inputs", found: "\(inputs.count)")
        }
        if let i = inputs.firstIndex(where: { $0.text.unicodeScalars.allSatisfy(\.properties.isWhitespace) }) {
            throw .invalidParams("input \(i) has an empty text; there is nothing to score", field: "inputs[\(i)].text",
                                 expected: "a non-empty string", found: "\"\(inputs[i].text)\"")
        }
        var options = ScoreOptions()
        options.topK = params.topK ?? 3
        guard (1...100).contains(options.topK) else {
            throw .invalidParams("'topK' must be 1 to 100", field: "topK", expected: "1…100", found: "\(options.topK)")
        }
        if let p = params.perturb {
            guard (1...32).contains(p.n) else {
                throw .invalidParams("'perturb.n' must be 1 to 32", field: "perturb.n", expected: "1…32", found: "\(p.n)")
            }
            let rate = p.rate ?? 0.1
            guard rate > 0 && rate <= 1 else {
                throw .invalidParams("'perturb.rate' must be in (0, 1]", field: "perturb.rate", expected: "0 < rate ≤ 1", found: "\(rate)")
            }
            options.perturbations = p.n
            options.typoRate = rate
            options.seed = UInt64(truncatingIfNeeded: p.seed ?? 0)
        }
        let total = inputs.count * (1 + options.perturbations)
        guard total <= Score.maxTextsWithVariants else {
            throw .invalidParams("\(inputs.count) inputs with \(options.perturbations) variants each make \(total) texts; at most \(Score.maxTextsWithVariants) per request",
                                 field: "perturb.n", expected: "inputs × (1 + n) ≤ \(Score.maxTextsWithVariants)", found: "\(total)")
        }
        return options
    }

    /// Scores `texts` with `serving`; `done` runs on the loop. With `vectors`, every text is
    /// embedded (no cache lookups) and the vectors come back too.
    func score(_ texts: [String], with serving: ActiveModel.Serving, options: ScoreOptions = ScoreOptions(),
               token: CancellationToken, vectors keepVectors: Bool = false, background: Bool = false,
               done: @escaping (Result<Scored, RPCError>) -> Void) {
        let version = serving.version
        let signature = "\(options.topK)/\(options.perturbations)/\(options.typoRate)/\(options.seed)"
        var results = [InputScore?](repeating: nil, count: texts.count)
        var missing: [Int] = []
        for (i, text) in texts.enumerated() {
            if !keepVectors, let hit = cache.get(.init(version: version.id, options: signature, text: text)) { results[i] = hit }
            else { missing.append(i) }
        }
        let cached = Set(texts.indices).subtracting(missing)
        if missing.isEmpty {
            done(.success(Scored(scores: results.map { $0! }, vectors: [], dimension: 0, cached: cached)))
            return
        }
        // The missing texts and their typo variants, in one batch request, each through the
        // version's normaliser (the variants stand for noisy input, which it sees too).
        let n = options.perturbations
        let normalised = missing.map { version.normaliser?.normalise(texts[$0]) }
        var batch = zip(missing, normalised).map { i, nz in nz?.text ?? texts[i] }
        for i in missing {
            for k in 0..<n {
                batch.append(version.encoderText(Typos.perturb(texts[i], rate: options.typoRate,
                                                               seed: options.seed &+ UInt64(k) &* 7919 &+ UInt64(texts[i].hashValueStable))))
            }
        }
        let policy = self.policy
        serving.batcher.submit(batch, encoder: serving.encoder, token: token, background: background) { [weak self] embedded in
            switch embedded {
            case .failure(let e): done(.failure(e))
            case .success(let r):
                let m = missing.count, D = r.dimension
                let main = Array(r.vectors[0..<(m * D)])
                let variants = n > 0 ? Array(r.vectors[(m * D)...]) : nil
                self?.compute.submit(token: token, work: { _ -> [InputScore] in
                    Scorer.score(version, vectors: main, count: m, variants: variants, perturbations: n, options: options,
                                 thresholds: policy.thresholds, impact: { policy.impact($0) })
                }, completion: { [weak self] scores in
                    guard let self, let scores else { done(.failure(.cancelled)); return }
                    for (j, i) in missing.enumerated() {
                        var sc = scores[j]
                        sc.truncated = r.truncated[j]
                        if let nz = normalised[j], !nz.corrections.isEmpty { sc.normalised = .init(text: nz.text, corrections: nz.corrections) }
                        results[i] = sc
                        self.cache.put(.init(version: version.id, options: signature, text: texts[i]), sc)
                    }
                    done(.success(Scored(scores: results.map { $0! }, vectors: keepVectors ? main : [], dimension: D, cached: cached)))
                })
            }
        }
    }

    /// Embeds `texts` in batch-sized chunks through the shared batcher, so that other clients'
    /// requests interleave; reports progress; `done` gets `[N, D]` floats. An error or a
    /// cancellation is answered on `ctx`, and `done` does not run.
    func embedAll(_ texts: [String], batcher: MicroBatcher, encoder versionEncoder: SentenceEncoder? = nil, ctx: RequestContext,
                  progress: WorkDoneProgress?, percentOf: (from: Int, to: Int) = (0, 80), done: @escaping ([Float]) -> Void) {
        var vectors: [Float] = []
        let chunk = max(1, batcher.maxBatch)
        func next(_ start: Int) {
            if ctx.isCancelled || ctx.hasReplied { progress?.end(message: "cancelled"); return }
            guard start < texts.count else { done(vectors); return }
            let end = min(start + chunk, texts.count)
            batcher.submit(Array(texts[start..<end]), encoder: versionEncoder, token: ctx.token) { result in
                switch result {
                case .failure(let e): progress?.end(message: "failed"); ctx.reply(.failure(e))
                case .success(let r):
                    vectors.append(contentsOf: r.vectors)
                    if (end / chunk) % 10 == 0 || end == texts.count {
                        progress?.report(message: "embedded \(end) of \(texts.count) texts",
                                         percentage: percentOf.from + end * (percentOf.to - percentOf.from) / texts.count)
                    }
                    next(end)
                }
            }
        }
        next(0)
    }

    /// Why an input is risky, each reason with the number behind it (docs/risk-model.md).
    /// The one place risk reasons are decided; `vector` and `failures` may be empty (no
    /// "near a known failure" check then).
    static func reasons(_ s: InputScore, vector: ArraySlice<Float>, policy: RiskPolicy, failures: [[Float]]) -> [RiskFlag.Reason] {
        let settings = policy.flags
        var out: [RiskFlag.Reason] = []
        if s.confidence < settings.lowConfidence {
            out.append(.init(reason: .lowConfidence, value: s.confidence, threshold: settings.lowConfidence))
        }
        if s.margin < settings.smallMargin {
            out.append(.init(reason: .smallMargin, value: s.margin, threshold: settings.smallMargin))
        }
        if s.outOfScope.flagged {
            out.append(.init(reason: .outOfScope, value: s.outOfScope.neighbourDistance, threshold: s.outOfScope.threshold))
        }
        if let st = s.stability, st.flipRate >= settings.thresholds.unstableFlipRate {
            out.append(.init(reason: .unstable, value: st.flipRate, threshold: settings.thresholds.unstableFlipRate))
        }
        let impact = policy.impact(s.label)
        if impact > 1 { out.append(.init(reason: .highImpact, value: impact, threshold: 1)) }
        if !failures.isEmpty, !vector.isEmpty {
            var norm: Float = 0
            for x in vector { norm += x * x }
            let inv = 1 / max(norm.squareRoot(), 1e-12)
            var best: Float = -1
            let base = vector.startIndex
            for f in failures where f.count == vector.count {
                var dot: Float = 0, fn: Float = 0
                for d in 0..<f.count { dot += f[d] * vector[base + d]; fn += f[d] * f[d] }
                best = max(best, dot * inv / max(fn.squareRoot(), 1e-12))
            }
            if Double(best) >= settings.nearFailureSimilarity {
                out.append(.init(reason: .nearFailure, value: Double(best), threshold: settings.nearFailureSimilarity))
            }
        }
        return out
    }
}
