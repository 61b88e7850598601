import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import EventLoop
import Scoring
import Store

extension Server {
    static let noVersionError = RPCError(.noVersion, "No active version: fit one with model/fit {dataset} (or activate one)")

    func registerScoreMethods() {
        router.onDeferred(Score.self) { [unowned self] params, ctx in
            self.runScoring(params, ctx, useCache: true) { version, scores, _, cached in
                ctx.reply(Score.Result(version: version.id, results: Self.encode(scores, inputs: params.inputs, cached: cached)))
            }
        }
        router.onDeferred(RiskFlag.self) { [unowned self] params, ctx in
            let settings = self.flagSettings
            let weights = self.impactWeights
            let failures = self.failureVectors
            self.runScoring(params, ctx, useCache: false) { version, scores, vectors, _ in
                let D = vectors.count / max(1, scores.count)
                ctx.compute({ _ -> [[RiskFlag.Reason]] in
                    scores.indices.map { i in
                        Self.reasons(scores[i], vector: Array(vectors[(i * D)..<((i + 1) * D)]), settings: settings,
                                     impact: weights[scores[i].label] ?? 1, failures: failures)
                    }
                }, then: { reasons in
                    var flagged: [JSONValue] = []
                    let encoded = Self.encode(scores, inputs: params.inputs, cached: Set())
                    for i in scores.indices where !reasons[i].isEmpty || scores[i].risk.level != "low" {
                        var o = encoded[i].objectValue ?? [:]
                        o["index"] = .int(Int64(i))
                        o["text"] = .string(params.inputs[i].text)
                        o["reasons"] = (try? JSONValueEncoder().encode(reasons[i])) ?? .array([])
                        o["cached"] = nil
                        flagged.append(.object(o))
                    }
                    ctx.reply(RiskFlag.Result(version: version.id, scored: scores.count, flagged: flagged))
                })
            }
        }
    }

    static func encode(_ scores: [InputScore], inputs: [Score.Input], cached: Set<Int>) -> [JSONValue] {
        inputs.indices.map { i in
            var o = (try? JSONValueEncoder().encode(scores[i]))?.objectValue ?? [:]
            if let id = inputs[i].id { o["id"] = .string(id) }
            o["cached"] = .bool(cached.contains(i))
            return .object(o)
        }
    }

    /// Why an input is risky, each reason with the number behind it (docs/risk-model.md).
    static func reasons(_ s: InputScore, vector: [Float], settings: ConfigFile.RiskSettings, impact: Double,
                        failures: [[Float]]) -> [RiskFlag.Reason] {
        var out: [RiskFlag.Reason] = []
        if s.confidence < settings.lowConfidence {
            out.append(.init(reason: "low_confidence", value: s.confidence, threshold: settings.lowConfidence))
        }
        if s.margin < settings.smallMargin {
            out.append(.init(reason: "small_margin", value: s.margin, threshold: settings.smallMargin))
        }
        if s.outOfScope.flagged {
            out.append(.init(reason: "out_of_scope", value: s.outOfScope.neighbourDistance, threshold: s.outOfScope.threshold))
        }
        if let st = s.stability, st.flipRate >= settings.thresholds.unstableFlipRate {
            out.append(.init(reason: "unstable", value: st.flipRate, threshold: settings.thresholds.unstableFlipRate))
        }
        if impact > 1 { out.append(.init(reason: "high_impact", value: impact, threshold: 1)) }
        if !failures.isEmpty, !vector.isEmpty {
            var norm: Float = 0
            for x in vector { norm += x * x }
            let inv = 1 / max(norm.squareRoot(), 1e-12)
            var best: Float = -1
            for f in failures where f.count == vector.count {
                var dot: Float = 0, fn: Float = 0
                for d in 0..<f.count { dot += f[d] * vector[d]; fn += f[d] * f[d] }
                best = max(best, dot * inv / max(fn.squareRoot(), 1e-12))
            }
            if Double(best) >= settings.nearFailureSimilarity {
                out.append(.init(reason: "near_failure", value: Double(best), threshold: settings.nearFailureSimilarity))
            }
        }
        return out
    }

    /// Scores the inputs with the active version: cached scores where allowed, the rest (and
    /// their typo variants) embedded in one batch. `done` gets the scores, the vectors of all
    /// inputs when the cache was not used, and which inputs came from the cache.
    func runScoring(_ params: Score.Params, _ ctx: RequestContext, useCache: Bool,
                    done: @escaping (ModelVersion, [InputScore], [Float], Set<Int>) -> Void) {
        guard let batcher else { ctx.reply(.failure(Self.noModelError)); return }
        // The request finishes on the version it started with, whatever is activated meanwhile.
        guard let version = activeVersion else { ctx.reply(.failure(Self.noVersionError)); return }
        let versionEncoder = activeEncoder
        let started = DispatchTimeNanos.now()
        let inputs = params.inputs
        guard !inputs.isEmpty, inputs.count <= Score.maxInputs else {
            ctx.reply(.failure(.invalidParams("'inputs' must hold 1 to \(Score.maxInputs) inputs", field: "inputs",
                                              expected: "1 to \(Score.maxInputs) inputs", found: "\(inputs.count)")))
            return
        }
        if let i = inputs.firstIndex(where: { $0.text.unicodeScalars.allSatisfy(\.properties.isWhitespace) }) {
            ctx.reply(.failure(.invalidParams("input \(i) has an empty text; there is nothing to score", field: "inputs[\(i)].text",
                                              expected: "a non-empty string", found: "\"\(inputs[i].text)\"")))
            return
        }
        var options = ScoreOptions()
        options.topK = params.topK ?? 3
        guard (1...100).contains(options.topK) else {
            ctx.reply(.failure(.invalidParams("'topK' must be 1 to 100", field: "topK", expected: "1…100", found: "\(options.topK)")))
            return
        }
        if let p = params.perturb {
            guard (1...32).contains(p.n) else {
                ctx.reply(.failure(.invalidParams("'perturb.n' must be 1 to 32", field: "perturb.n", expected: "1…32", found: "\(p.n)")))
                return
            }
            let rate = p.rate ?? 0.1
            guard rate > 0 && rate <= 1 else {
                ctx.reply(.failure(.invalidParams("'perturb.rate' must be in (0, 1]", field: "perturb.rate", expected: "0 < rate ≤ 1", found: "\(rate)")))
                return
            }
            options.perturbations = p.n
            options.typoRate = rate
            options.seed = UInt64(truncatingIfNeeded: p.seed ?? 0)
        }
        let total = inputs.count * (1 + options.perturbations)
        guard total <= Score.maxTextsWithVariants else {
            ctx.reply(.failure(.invalidParams("\(inputs.count) inputs with \(options.perturbations) variants each make \(total) texts; at most \(Score.maxTextsWithVariants) per request",
                                              field: "perturb.n", expected: "inputs × (1 + n) ≤ \(Score.maxTextsWithVariants)", found: "\(total)")))
            return
        }
        let signature = "\(options.topK)/\(options.perturbations)/\(options.typoRate)/\(options.seed)"
        var results = [InputScore?](repeating: nil, count: inputs.count)
        var missing: [Int] = []
        for (i, input) in inputs.enumerated() {
            if useCache, let hit = scoreCache.get(.init(version: version.id, options: signature, text: input.text)) { results[i] = hit }
            else { missing.append(i) }
        }
        let cachedSet = Set(inputs.indices).subtracting(missing)
        var allVectors: [Float] = []
        let reply = { [unowned self] (scores: [InputScore?]) in
            self.recordTraffic(scores.compactMap { $0 })
            self.recordMetrics(scores.compactMap { $0 }, seconds: Double(DispatchTimeNanos.now() - started) / 1e9)
            for (i, input) in inputs.enumerated() {
                if let id = input.id, let s = scores[i] { self.recentInputs[id] = RecentInputs.Entry(text: input.text, label: s.label, version: s.version) }
            }
            done(version, scores.map { $0! }, allVectors, cachedSet)
        }
        if missing.isEmpty { reply(results); return }
        // Embed the missing texts and their typo variants in one batch request.
        let n = options.perturbations
        var texts = missing.map { inputs[$0].text }
        for i in missing {
            for k in 0..<n {
                texts.append(Typos.perturb(inputs[i].text, rate: options.typoRate, seed: options.seed &+ UInt64(k) &* 7919 &+ UInt64(inputs[i].text.hashValueStable)))
            }
        }
        let thresholds = riskThresholds
        let impacts = impactWeights
        let fixedOptions = options
        batcher.submit(texts, encoder: versionEncoder, token: ctx.token) { [unowned self] embedded in
            switch embedded {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let r):
                let m = missing.count, D = r.dimension
                let main = Array(r.vectors[0..<(m * D)])
                if !useCache { allVectors = main }
                let variants = n > 0 ? Array(r.vectors[(m * D)...]) : nil
                ctx.compute({ _ -> [InputScore] in
                    Scorer.score(version, vectors: main, count: m, variants: variants, perturbations: n, options: fixedOptions,
                                 thresholds: thresholds, impact: { impacts[$0] ?? 1 })
                }, then: { [unowned self] scores in
                    for (j, i) in missing.enumerated() {
                        var sc = scores[j]
                        sc.truncated = r.truncated[j]
                        results[i] = sc
                        self.scoreCache.put(.init(version: version.id, options: signature, text: inputs[i].text), sc)
                    }
                    reply(results)
                })
            }
        }
    }

    /// Live metrics of one scoring request: its inputs, and its latency.
    func recordMetrics(_ scores: [InputScore], seconds: Double) {
        let t = LiveMetrics.now()
        let unit = feedbackCosts["complaint"] ?? 1
        metrics.scoreRequests.add(1, at: t)
        metrics.latency.observe(seconds, at: t)
        for s in scores {
            metrics.recordScored(label: s.label, flagged: s.risk.level != "low" || s.outOfScope.flagged, outOfScope: s.outOfScope.flagged,
                                 expectedCost: s.risk.pWrong * s.risk.impact * unit, at: t)
        }
    }

    /// Counts scored traffic by hour, version and predicted label, for the regions' traffic shares.
    func recordTraffic(_ scores: [InputScore]) {
        let hour = Int(Date().timeIntervalSince1970 / 3600)
        for s in scores {
            pendingTraffic[TrafficKey(hour: hour, version: s.version, label: s.label), default: TrafficTotal(count: 0, expectedErrors: 0)].count += 1
            pendingTraffic[TrafficKey(hour: hour, version: s.version, label: s.label)]!.expectedErrors += s.risk.pWrong
        }
    }

    /// Adds the pending counters to the store every 5 s (and at a graceful stop): a kill -9
    /// loses at most the last 5 s of traffic counts, never an acknowledged report.
    func startTrafficFlush() {
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        t?.start(timeoutMs: 5000, repeatMs: 5000) { [unowned self] in self.flushTraffic() }
        trafficTimer = t
    }

    func flushTraffic() {
        guard !pendingTraffic.isEmpty else { return }
        let counts = pendingTraffic.map {
            TrafficCount(hour: $0.key.hour, version: $0.key.version, label: $0.key.label, count: $0.value.count, expectedErrors: $0.value.expectedErrors)
        }
        pendingTraffic.removeAll()
        store.run({ store throws(StoreError) in try store.addTraffic(counts) }, completion: { [unowned self] r in
            if case .failure(let e) = r { self.logger.warning("traffic counters not saved", metadata: ["error": "\(e.message)"]) }
        })
    }
}

struct TrafficKey: Hashable {
    let hour: Int
    let version: Int
    let label: String
}

/// A bounded map from input ids to what was scored (two generations, like the score cache).
struct RecentInputs {
    struct Entry { let text: String; let label: String; let version: Int }
    private var current: [String: Entry] = [:], previous: [String: Entry] = [:]
    let capacity: Int
    init(capacity: Int) { self.capacity = max(2, capacity) }
    subscript(id: String) -> Entry? {
        get { current[id] ?? previous[id] }
        set {
            if current.count >= capacity / 2 { previous = current; current = [:] }
            current[id] = newValue
        }
    }
}

extension String {
    /// A hash that is the same in every process (Swift's hashValue is seeded per process),
    /// so typo variants are reproducible across restarts.
    var hashValueStable: UInt32 {
        var h: UInt32 = 2166136261
        for b in utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        return h
    }
}
