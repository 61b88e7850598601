import Foundation
import RobustdTestSupport
import Testing
@testable import Encoder
import Tensor
import Scoring
@testable import Training

/// Central differences (step 1e-3) on 8 entries of every tensor against its analytic
/// gradient; the worst relative error must stay under 3%.
func expectGradientsMatch(_ params: [Tensor], _ grads: [Tensor], _ loss: () -> Double) {
    let eps: Float = 1e-3
    for (k, (p, d)) in zip(params, grads).enumerated() {
        var worst: Float = 0
        for j in 0..<min(8, p.count) {
            let i = (j * 7919 + k) % p.count
            let saved = p[i]
            p[i] = saved + eps; let lp = loss()
            p[i] = saved - eps; let lm = loss()
            p[i] = saved
            let numeric = Float((lp - lm) / Double(2 * eps))
            worst = max(worst, abs(numeric - d[i]) / max(1e-2, abs(numeric), abs(d[i])))
        }
        #expect(worst < 3e-2, "tensor \(k): worst relative error \(worst)")
    }
}

@Suite("Training the top of the model")
struct TrainingTests {
    /// The tiny model, its hidden states after layer 0 for a few sequences, and a stack that
    /// trains layer 1 and a 3-class head.
    func setup(normalize: Bool = true, lora: Bool = false) throws -> (ClassifierStack, Tensor, Packing, [Int], TempFolder) {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let enc = try SentenceEncoder.load(folder: dir.path)
        let seqs: [[Int32]] = [[2, 9, 6, 7, 8, 3], [2, 5, 6, 11, 3], [2, 12, 13, 14, 3], [2, 6, 10, 3], [2, 9, 6, 3], [2, 12, 3]]
        let labels = [0, 1, 2, 0, 0, 2]
        // With LoRA both layers train, so that the input gradient through the adapters counts too.
        let first = lora ? 0 : 1
        let (h, packing) = enc.model.hiddenStates(seqs, workspace: Workspace(config: enc.config), layerCount: first)
        let H = enc.config.hiddenSize, C = 3
        var s: UInt64 = 5
        let w = Tensor(shape: [C, H]), b = Tensor(shape: [C])
        for i in 0..<w.count { s = s &* 6364136223846793005 &+ 1442695040888963407; w[i] = (Float(s >> 40) / Float(1 << 24) - 0.5) }
        let layers = (first..<2).map { l -> TrainableLayer in
            var adapters: TrainableLayer.Adapters? = nil
            if lora {
                adapters = .init(hidden: H, intermediate: enc.config.intermediateSize, rank: 2, alpha: 4, seed: UInt64(l))
                // B non-zero, else A's gradient is zero and the check proves little.
                for ad in adapters!.all { for i in 0..<ad.b.count { s = s &* 6364136223846793005 &+ 1442695040888963407; ad.b[i] = Float(s >> 40) / Float(1 << 24) - 0.5 } }
            }
            return TrainableLayer(params: .init(copying: enc.model.weights.layers[l]), adapters: adapters, heads: enc.config.heads, eps: enc.config.layerNormEps)
        }
        let stack = ClassifierStack(layers: layers, headWeight: w, headBias: b, mean: [Float](repeating: 0.01, count: H),
                                    scale: [Float](repeating: 2, count: H), normalize: normalize)
        return (stack, h.copy(), packing, labels, dir)
    }

    @Test("the gradient of the loss for every trainable tensor matches central differences (own weights, or LoRA adapters)",
          arguments: [(true, false), (false, false), (true, true)])
    func gradients(normalize: Bool, lora: Bool) throws {
        let (stack, hidden, packing, labels, _dir) = try setup(normalize: normalize, lora: lora)
        _ = _dir
        let g = stack.makeGradients()
        _ = stack.step(hidden: hidden, packing: packing, labels: labels, grads: g)
        let (params, grads) = stack.parameters(g)
        func loss() -> Double {
            let probs = Tensor(shape: [packing.count, stack.classes])
            return Double(crossEntropyForward(probs: probs, logits: stack.logits(hidden: hidden, packing: packing), labels: labels))
        }
        expectGradientsMatch(params, grads, loss)
    }

    @Test("consistency training: the gradient of cross-entropy + λ·KL(clean ‖ noisy) matches central differences, on both sides of each pair",
          arguments: [false, true])
    func consistencyGradients(lora: Bool) throws {
        let (stack, hidden, packing, labels, _dir) = try setup(lora: lora)
        _ = _dir
        // Rows 0 and 4 are a sentence and its "noisy" shorter variant; 2 and 5 another pair.
        let pairs: [(clean: Int, noisy: Int)] = [(0, 4), (2, 5)]
        let lambda: Float = 1.5
        let g = stack.makeGradients()
        let reported = stack.step(hidden: hidden, packing: packing, labels: labels, consistency: (pairs, lambda), grads: g)
        let (params, grads) = stack.parameters(g)
        func loss() -> Double {
            let probs = Tensor(shape: [packing.count, stack.classes])
            let logits = stack.logits(hidden: hidden, packing: packing)
            let ce = Double(crossEntropyForward(probs: probs, logits: logits, labels: labels))
            let C = stack.classes
            var kl = 0.0
            for (a, b) in pairs {
                func logp(_ r: Int) -> [Double] {
                    let row = (0..<C).map { Double(logits[r * C + $0]) }
                    let m = row.max()!
                    let lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
                    return row.map { $0 - lse }
                }
                let lp = logp(a), lq = logp(b)
                for c in 0..<C { kl += exp(lp[c]) * (lp[c] - lq[c]) }
            }
            return ce + Double(lambda) * kl / Double(pairs.count)
        }
        #expect(abs(Double(reported) - loss()) < 1e-4 * max(1, abs(loss())))
        expectGradientsMatch(params, grads, loss)
        // The term is not zero here: it changed the head's gradient.
        let plain = stack.makeGradients()
        _ = stack.step(hidden: hidden, packing: packing, labels: labels, grads: plain)
        let diff = zip(plain.headWeight.values, g.headWeight.values).map { abs($0 - $1) }.max()!
        #expect(diff > 1e-4)
    }

    @Test("embedding-space adversarial training: the step's gradient is the clean loss's plus λ × the loss at the moved input, which matches central differences with the move held fixed",
          arguments: [(false, false), (true, false), (false, true)])
    func adversarialGradients(lora: Bool, headOnly: Bool) throws {
        var (stack, hidden, packing, labels, _dir) = try setup(lora: lora)
        _ = _dir
        if headOnly {
            stack = ClassifierStack(layers: [], headWeight: stack.headWeight, headBias: stack.headBias, mean: stack.mean, scale: stack.scale, normalize: true)
        }
        let epsilon: Float = 0.05, lambda: Float = 0.7
        // The move: ε · ‖h_s‖ along the clean loss's input gradient, per sequence.
        let probe = stack.makeGradients()
        let (_, dHidden) = stack.forwardBackward(hidden: hidden, packing: packing, labels: labels, grads: probe, inputGradient: true)
        let moved = ClassifierStack.adversarialInput(hidden: hidden, gradient: dHidden!, packing: packing, epsilon: epsilon)
        let H = hidden.shape[1]
        for s in 0..<packing.count {
            let lo = packing.offsets[s] * H, hi = lo + packing.lengths[s] * H
            var dn: Float = 0, hn: Float = 0
            for i in lo..<hi { dn += (moved[i] - hidden[i]) * (moved[i] - hidden[i]); hn += hidden[i] * hidden[i] }
            #expect(abs(dn.squareRoot() - epsilon * hn.squareRoot()) < 1e-3 * hn.squareRoot())
        }
        // The input gradient itself matches central differences.
        func ce(_ h: Tensor) -> Double {
            let probs = Tensor(shape: [packing.count, stack.classes])
            return Double(crossEntropyForward(probs: probs, logits: stack.logits(hidden: h, packing: packing), labels: labels))
        }
        for j in 0..<6 {
            let i = (j * 7919) % hidden.count
            let saved = hidden[i]
            hidden[i] = saved + 1e-3; let lp = ce(hidden)
            hidden[i] = saved - 1e-3; let lm = ce(hidden)
            hidden[i] = saved
            let numeric = Float((lp - lm) / 2e-3)
            #expect(abs(numeric - dHidden![i]) <= 3e-2 * max(1e-2, abs(numeric), abs(dHidden![i])), "input \(i)")
        }
        // The step: loss and gradients of CE(h) + λ·CE(h + δ), δ held fixed.
        let g = stack.makeGradients()
        let reported = stack.step(hidden: hidden, packing: packing, labels: labels, adversarial: (epsilon, lambda), grads: g)
        func loss() -> Double { ce(hidden) + Double(lambda) * ce(moved) }
        #expect(abs(Double(reported) - loss()) < 1e-4 * max(1, loss()))
        let (params, grads) = stack.parameters(g)
        expectGradientsMatch(params, grads, loss)
    }

    @Test("with consistency, a clean example and its noisy copies always share a minibatch, paired clean first; without, batches are plain")
    func consistencyBatches() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let enc = try SentenceEncoder.load(folder: dir.path)
        var settings = FineTuner.Settings()
        settings.batchSize = 5
        settings.consistency = 1
        let tuner = FineTuner(encoder: enc, settings: settings)
        // 12 examples: groups 0–2 each a clean example and two noisy copies, three singles.
        let groups: [(id: Int, noisy: Bool)?] = [(0, true), nil, (1, false), (0, false), (2, true), (1, true), nil,
                                                 (2, false), (0, true), (1, true), (2, true), nil]
        var order = Array(0..<12)
        var rng = SeededRandom(seed: 3)
        let batches = tuner.batches(order: &order, groups: groups, rng: &rng)
        #expect(batches.flatMap(\.indices).sorted() == Array(0..<12))
        for b in batches {
            #expect(b.indices.count <= 5)
            for (c, n) in b.pairs {
                #expect(groups[b.indices[c]]!.noisy == false && groups[b.indices[n]]!.noisy == true)
                #expect(groups[b.indices[c]]!.id == groups[b.indices[n]]!.id)
            }
        }
        #expect(batches.reduce(0) { $0 + $1.pairs.count } == 6)
        let plainTuner = FineTuner(encoder: enc, settings: FineTuner.Settings())
        var order2 = Array(0..<12)
        #expect(plainTuner.batches(order: &order2, groups: groups, rng: &rng).allSatisfy { $0.pairs.isEmpty })
    }

    @Test("LoRA: only the adapters and the head train, and merged weights serve the same outputs")
    func loraMerge() throws {
        let (stack, hidden, packing, labels, _dir) = try setup(lora: true)
        _ = _dir
        let g = stack.makeGradients()
        let (params, _) = stack.parameters(g)
        #expect(params.count == 2 * 12 + 2)  // two layers × six adapters × (A, B), and the head
        _ = stack.step(hidden: hidden, packing: packing, labels: labels, grads: g)
        let merged = stack.layers.map { TrainableLayer(params: $0.adapters!.merged(into: $0.params), heads: $0.heads, eps: $0.eps) }
        let plain = ClassifierStack(layers: merged, headWeight: stack.headWeight, headBias: stack.headBias, mean: stack.mean,
                                    scale: stack.scale, normalize: stack.normalize)
        let a = stack.logits(hidden: hidden, packing: packing), b = plain.logits(hidden: hidden, packing: packing)
        var worst: Float = 0
        for i in 0..<a.count { worst = max(worst, abs(a[i] - b[i])) }
        #expect(worst < 1e-4, "merged vs adapters: \(worst)")
        _ = labels
    }

    @Test("AdamW steps lower the loss; with no gradient, L2-SP pulls the weights toward the parent's")
    func optimiser() throws {
        let (stack, hidden, packing, labels, _dir) = try setup()
        _ = _dir
        let g = stack.makeGradients()
        let (params, grads) = stack.parameters(g)
        let opt = AdamW(learningRate: 1e-2, decay: 0)
        var losses: [Float] = []
        for _ in 0..<30 {
            g.zero()
            losses.append(stack.step(hidden: hidden, packing: packing, labels: labels, grads: g))
            opt.update(params, grads, anchors: params.map { _ in nil })
        }
        #expect(losses.last! < losses.first! * 0.5, "\(losses.first!) → \(losses.last!)")
        // L2-SP: a tensor away from its anchor moves back toward it.
        let p = Tensor(shape: [4], values: [1, 1, 1, 1]), anchor = Tensor(shape: [4]), zero = Tensor(shape: [4])
        let sp = AdamW(learningRate: 0.1, decay: 1)
        for _ in 0..<10 { sp.update([p], [zero], anchors: [anchor]) }
        #expect(p.values.allSatisfy { $0 < 0.5 && $0 > 0 })
    }
}

@Suite("Early stopping")
struct EarlyStoppingTests {
    /// A head-only fine-tune of the tiny model whose held-out score follows `script`
    /// (one value per evaluation, the starting point's first); returns what training did, the
    /// stack, and the head at each evaluation.
    func scripted(_ texts: [String], _ labels: [Int], every: Int, patience: Int, headLearningRate: Float? = nil,
                  script: [Double]) throws -> (FineTuner.Outcome, ClassifierStack, [[Float]]) {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let enc = try SentenceEncoder.load(folder: dir.path)
        var settings = FineTuner.Settings()
        settings.method = .head
        settings.epochs = 50
        settings.batchSize = 2
        if let headLearningRate { settings.headLearningRate = headLearningRate }
        let tuner = FineTuner(encoder: enc, settings: settings)
        let cached = tuner.cacheFrozen(texts)
        let H = enc.hiddenSize
        let stack = tuner.makeStack(headWeight: [Float](repeating: 0, count: 3 * H), headBias: [0, 0, 0],
                                    mean: [Float](repeating: 0, count: H), scale: [Float](repeating: 1, count: H))
        var calls = 0
        var snapshots: [[Float]] = []
        let outcome = tuner.train(stack, cached: cached, labels: labels, earlyStopping: .init(every: every, patience: patience) {
            snapshots.append(stack.headWeight.values)
            defer { calls += 1 }
            return script[min(calls, script.count - 1)]
        })
        return (outcome, stack, snapshots)
    }

    @Test("the best parameters seen on held-out data are restored, and training stops after the patience runs out")
    func restoresBest() throws {
        // Best at the second evaluation after the start.
        let (outcome, stack, snapshots) = try scripted(["my card is late", "the card ?", "a b c", "my card", "a b", "the ?"], [0, 1, 2, 0, 2, 1],
                                                       every: 3, patience: 2, headLearningRate: 0.05, script: [0.1, 0.3, 0.9, 0.5, 0.4, 0.2, 0.1])
        #expect(outcome.stoppedEarly)
        #expect(outcome.bestScore == 0.9)
        #expect(outcome.bestStep == 6)
        #expect(outcome.steps == 15)  // evaluations at steps 3…15; the third after the best ends it
        #expect(stack.headWeight.values == snapshots[2])
        #expect(outcome.initialScore == 0.1)
    }

    @Test("early stopping never chooses the starting point: the best trained parameters are kept even when the parent scored higher")
    func neverTheParent() throws {
        let (outcome, stack, snapshots) = try scripted(["my card is late", "the card ?", "a b c", "my card"], [0, 1, 2, 0],
                                                       every: 2, patience: 2, script: [0.9, 0.2, 0.5, 0.3, 0.1, 0.1, 0.1])
        #expect(outcome.initialScore == 0.9)
        #expect(outcome.bestScore == 0.5)
        #expect(outcome.bestStep == 4)
        #expect(stack.headWeight.values == snapshots[2])
        #expect(stack.headWeight.values.contains { $0 != 0 })
    }
}

@Suite("Caching the frozen layers")
struct CacheFrozenTests {
    @Test("two cores give the same hidden states as one, in the same order")
    func parallelEqualsSerial() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let enc = try SentenceEncoder.load(folder: dir.path)
        var settings = FineTuner.Settings()
        settings.layers = 1
        let tuner = FineTuner(encoder: enc, settings: settings)
        let texts = (0..<37).map { ["my card is late", "the card ?", "a b c", "cards"][$0 % 4] + String(repeating: " a", count: $0 % 5) }
        let one = tuner.cacheFrozen(texts, batch: 8, threads: 1), two = tuner.cacheFrozen(texts, batch: 8, threads: 2)
        #expect(one.count == 37 && two.count == 37)
        for (a, b) in zip(one, two) {
            #expect(a.count == b.count)
            #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-5 })
        }
    }
}
