import Foundation
import JSONRPC
import RobustdAPI
import Scoring

extension Server {
    static let noVersionError = RPCError(.noVersion, "No active version: fit one with model/fit {dataset} (or activate one)")

    func registerScoreMethods() {
        router.onDeferred(Score.self) { [unowned self] params, ctx in self.score(params, ctx) }
    }

    private func score(_ params: Score.Params, _ ctx: RequestContext) {
        guard let batcher else { ctx.reply(.failure(Self.noModelError)); return }
        // The request finishes on the version it started with, whatever is activated meanwhile.
        guard let version = activeVersion else { ctx.reply(.failure(Self.noVersionError)); return }
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
        let signature = "\(options.topK)/\(options.perturbations)/\(options.typoRate)/\(options.seed)"
        var results = [InputScore?](repeating: nil, count: inputs.count)
        var missing: [Int] = []
        for (i, input) in inputs.enumerated() {
            if let hit = scoreCache.get(.init(version: version.id, options: signature, text: input.text)) { results[i] = hit }
            else { missing.append(i) }
        }
        let missingSet = Set(missing)
        let reply = { [unowned self] (scores: [InputScore?]) in
            self.recordTraffic(scores.compactMap { $0 })
            let encoded: [JSONValue] = inputs.indices.map { i in
                var o = (try? JSONValueEncoder().encode(scores[i]!))?.objectValue ?? [:]
                if let id = inputs[i].id { o["id"] = .string(id) }
                o["cached"] = .bool(!missingSet.contains(i))
                return .object(o)
            }
            ctx.reply(Score.Result(version: version.id, results: encoded))
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
        batcher.submit(texts, token: ctx.token) { [unowned self] embedded in
            switch embedded {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let r):
                let m = missing.count, D = r.dimension
                let main = Array(r.vectors[0..<(m * D)])
                let variants = n > 0 ? Array(r.vectors[(m * D)...]) : nil
                ctx.compute({ _ -> [InputScore] in
                    Scorer.score(version, vectors: main, count: m, variants: variants, perturbations: n, options: fixedOptions,
                                 thresholds: thresholds, impact: { impacts[$0] ?? 1 })
                }, then: { [unowned self] scores in
                    for (j, i) in missing.enumerated() {
                        results[i] = scores[j]
                        self.scoreCache.put(.init(version: version.id, options: signature, text: inputs[i].text), scores[j])
                    }
                    reply(results)
                })
            }
        }
    }

    /// Counts of scored traffic by predicted label, for the regions' traffic shares.
    func recordTraffic(_ scores: [InputScore]) {
        for s in scores { trafficByLabel[s.label, default: 0] += 1 }
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
