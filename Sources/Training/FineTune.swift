import Encoder
import Foundation
import Scoring
import Tensor

/// Local fine-tuning of the top of the model on labelled texts: the frozen lower layers run
/// once per example and their output is cached; only the trainable top layers and the head
/// run forward and backward, minibatch by minibatch.
public final class FineTuner {
    public enum Method: String, Sendable, CaseIterable { case head, lora, topLayers = "top-layers" }

    public struct Settings: Sendable {
        public var method = Method.topLayers
        /// Trainable top layers (top-layers), or layers with adapters (lora).
        public var layers = 2
        /// LoRA rank and α (the adapter's term is scaled by α / rank).
        public var rank = 8
        public var alpha: Float = 16
        public var epochs = 2
        public var batchSize = 32
        public var learningRate: Float = 1e-4
        public var headLearningRate: Float = 1e-3
        /// L2-SP strength toward the parent's weights.
        public var decay: Float = 0.01
        /// λ of the consistency term: KL between the predictions on a clean example and on each
        /// of its noisy variants, which train in the same minibatch (0: plain cross-entropy).
        public var consistency: Float = 0
        /// Embedding-space adversarial training: each step also trains on the inputs of the
        /// first trainable layer moved by ε · their norm along the loss's gradient (0: off), its
        /// cross-entropy weighted `adversarialWeight`. Costs a second forward and backward.
        public var adversarialEpsilon: Float = 0
        public var adversarialWeight: Float = 1
        public var seed: UInt64 = 1
        public init() {}

        /// The defaults of a method for a fine-tune of a few regions from a fitted head: a
        /// brisk head alone; adapters at LoRA's usual rate with a gentle head; a gentle rate for
        /// the layers themselves (measured in robustd-bench finetune, docs/finetuning.md).
        public init(method: Method) {
            self.method = method
            switch method {
            case .head: headLearningRate = 1e-3
            case .lora: learningRate = 1e-3; headLearningRate = 1e-4
            case .topLayers: learningRate = 5e-5; headLearningRate = 1e-4
            }
        }
    }

    public struct Progress: Sendable {
        public var epoch: Int
        public var step: Int
        public var steps: Int
        public var loss: Float
    }

    public let encoder: SentenceEncoder
    public let settings: Settings
    /// First layer that trains (the ones below are frozen and cached).
    public let firstTrainable: Int

    /// Floating-point operations spent so far (multiply-adds count 2): the frozen layers'
    /// caching, every training step's forward and backward, and held-out evaluations.
    public private(set) var flops: Double = 0
    private let flopLock = NSLock()
    func addFlops(_ f: Double) { flopLock.lock(); flops += f; flopLock.unlock() }

    public init(encoder: SentenceEncoder, settings: Settings) {
        self.encoder = encoder
        self.settings = settings
        let L = encoder.config.layers
        firstTrainable = settings.method == .head ? L : max(0, L - settings.layers)
    }

    /// FLOPs of one encoder layer's forward pass over sequences of these lengths.
    public static func layerForwardFlops(_ lengths: [Int], config c: BertConfig) -> Double {
        let H = Double(c.hiddenSize), I = Double(c.intermediateSize)
        return lengths.reduce(0.0) { acc, t in
            let T = Double(t)
            return acc + 2 * T * (4 * H * H + 2 * H * I) + 4 * T * T * H
        }
    }

    /// FLOPs of training every layer (the embeddings excepted) and the head on examples of
    /// these lengths for `epochs` epochs: forward plus a backward of twice the forward.
    public static func fullFineTuneFlops(_ lengths: [Int], epochs: Int, classes: Int, config c: BertConfig) -> Double {
        let head = 2.0 * Double(classes * c.hiddenSize) * Double(lengths.count)
        return Double(epochs) * 3 * (Double(c.layers) * layerForwardFlops(lengths, config: c) + head)
    }

    /// Hidden states after the frozen layers, one `[T, H]` block per text. The texts are cut
    /// into `threads` contiguous shares, each run on its own core with one BLAS thread (the
    /// batch-split mode the encoder benchmark chose).
    public func cacheFrozen(_ texts: [String], batch: Int = 64, threads: Int = ProcessInfo.processInfo.activeProcessorCount) -> [[Float]] {
        let parts = max(1, min(threads, texts.count))
        let box = ResultBox(count: parts)
        let encoder = self.encoder, first = firstTrainable
        let saved = BLASThreads.count
        if parts > 1 { BLASThreads.count = 1 }
        DispatchQueue.concurrentPerform(iterations: parts) { k in
            let lo = texts.count * k / parts, hi = texts.count * (k + 1) / parts
            let ws = Workspace(config: encoder.config)
            let H = encoder.hiddenSize
            var out: [[Float]] = []
            var i = lo
            while i < hi {
                let ids = encoder.encode(Array(texts[i..<min(i + batch, hi)])).map(\.ids)
                let (h, packing) = encoder.model.hiddenStates(ids, workspace: ws, layerCount: first)
                for s in 0..<packing.count {
                    out.append(Array(UnsafeBufferPointer(start: h.data + packing.offsets[s] * H, count: packing.lengths[s] * H)))
                }
                i += batch
            }
            box.set(k, out)
        }
        BLASThreads.count = saved
        let out = box.joined
        let H = encoder.hiddenSize
        addFlops(Double(first) * Self.layerForwardFlops(out.map { $0.count / H }, config: encoder.config))
        return out
    }

    /// Results of the parallel shares, each written by one thread.
    final class ResultBox: @unchecked Sendable {
        private var parts: [[[Float]]]
        private let lock = NSLock()
        init(count: Int) { parts = Array(repeating: [], count: count) }
        func set(_ k: Int, _ v: [[Float]]) { lock.lock(); parts[k] = v; lock.unlock() }
        var joined: [[Float]] { parts.flatMap { $0 } }
    }

    /// Builds the trainable stack from the encoder's top layers and a parent head.
    public func makeStack(headWeight: [Float], headBias: [Float], mean: [Float], scale: [Float]) -> ClassifierStack {
        let c = encoder.config
        let layers = (firstTrainable..<c.layers).map { l -> TrainableLayer in
            let adapters = settings.method == .lora
                ? TrainableLayer.Adapters(hidden: c.hiddenSize, intermediate: c.intermediateSize, rank: settings.rank, alpha: settings.alpha,
                                          seed: settings.seed &* 1000 &+ UInt64(l))
                : nil
            return TrainableLayer(params: .init(copying: encoder.model.weights.layers[l]), adapters: adapters, heads: c.heads, eps: c.layerNormEps)
        }
        let C = headBias.count, H = encoder.hiddenSize
        return ClassifierStack(layers: layers, headWeight: Tensor(shape: [C, H], values: headWeight), headBias: Tensor(shape: [C], values: headBias),
                               mean: mean, scale: scale, normalize: encoder.normalize)
    }

    /// Packs cached blocks into one `[N, H]` tensor.
    public func pack(_ cached: [[Float]], _ indices: [Int]) -> (Tensor, Packing) {
        let H = encoder.hiddenSize
        let packing = Packing(lengths: indices.map { cached[$0].count / H })
        let t = Tensor(shape: [packing.totalTokens, H])
        for (s, i) in indices.enumerated() {
            cached[i].withUnsafeBufferPointer { (t.data + packing.offsets[s] * H).update(from: $0.baseAddress!, count: $0.count) }
        }
        return (t, packing)
    }

    /// Early stopping: every `every` steps `evaluate` scores the stack on held-out data; the best
    /// trained parameters seen are restored at the end, and training stops after `patience`
    /// evaluations without improvement. The starting point (the parent) is scored for the
    /// record but never chosen: whether the result beats the parent is the gate's question, on
    /// data early stopping has not looked at; early stopping only chooses when to stop.
    public struct EarlyStopping {
        public var every: Int
        public var patience: Int
        /// Training never stops before this many steps (the first steps toward new data often
        /// cost held-out accuracy before they gain it).
        public var minSteps: Int
        public var evaluate: () -> Double
        public init(every: Int, patience: Int, minSteps: Int = 0, evaluate: @escaping () -> Double) {
            self.every = every
            self.patience = patience
            self.minSteps = minSteps
            self.evaluate = evaluate
        }
    }

    /// What training did.
    public struct Outcome: Sendable {
        public var steps: Int
        /// The held-out score of the parameters kept (nil without early stopping).
        public var bestScore: Double?
        /// The held-out score before training.
        public var initialScore: Double?
        public var bestStep: Int?
        public var stoppedEarly: Bool
    }

    /// Minibatches of one epoch: example indices in a shuffled order, and the (clean, noisy)
    /// pairs of batch rows. With consistency and groups, a group (a clean example and its
    /// variants) is shuffled as a unit and never split across batches; batches are filled with
    /// whole groups up to the batch size.
    /// Without consistency, `order` is reshuffled each epoch and cut in batches.
    func batches(order: inout [Int], groups: [(id: Int, noisy: Bool)?]?, rng: inout SeededRandom) -> [(indices: [Int], pairs: [(clean: Int, noisy: Int)])] {
        let size = max(1, settings.batchSize), count = order.count
        guard settings.consistency > 0, let groups, groups.count == count else {
            order.shuffle(using: &rng)
            return stride(from: 0, to: count, by: size).map { (Array(order[$0..<min($0 + size, count)]), []) }
        }
        var units: [[Int]] = [], unitOf: [Int: Int] = [:]
        for i in 0..<count {
            guard let g = groups[i] else { units.append([i]); continue }
            if let u = unitOf[g.id] { units[u].append(i) } else { unitOf[g.id] = units.count; units.append([i]) }
        }
        // The clean member first.
        for u in units.indices { units[u].sort { (groups[$0]?.noisy == true ? 1 : 0, $0) < (groups[$1]?.noisy == true ? 1 : 0, $1) } }
        units.shuffle(using: &rng)
        var out: [(indices: [Int], pairs: [(clean: Int, noisy: Int)])] = []
        var current: [Int] = [], pairs: [(clean: Int, noisy: Int)] = []
        for u in units {
            if !current.isEmpty && current.count + u.count > size { out.append((current, pairs)); current = []; pairs = [] }
            let base = current.count
            if u.count > 1, groups[u[0]]?.noisy == false {
                for k in 1..<u.count where groups[u[k]]?.noisy == true { pairs.append((base, base + k)) }
            }
            current += u
        }
        if !current.isEmpty { out.append((current, pairs)) }
        return out
    }

    /// Trains `stack` on the cached examples. `shouldStop` is checked before every step.
    /// `groups` (one per example, nil: none) pairs clean examples with their noisy variants
    /// for the consistency term.
    @discardableResult
    public func train(_ stack: ClassifierStack, cached: [[Float]], labels: [Int], weights: [Float]? = nil,
                      groups: [(id: Int, noisy: Bool)?]? = nil, earlyStopping: EarlyStopping? = nil,
                      progress: ((Progress) -> Void)? = nil, shouldStop: () -> Bool = { false }) -> Outcome {
        let g = stack.makeGradients()
        let layerParams = stack.layers.flatMap(\.trainable)
        let layerGrads = g.layers.flatMap(\.all)
        // L2-SP pulls a layer's own weights toward the parent's; adapters decay toward zero,
        // which is the parent too (an adapter with B = 0 changes nothing).
        let anchors: [Tensor?] = stack.layers.flatMap { l in l.adapters == nil ? l.params.all.map { $0.copy() } : l.trainable.map { _ in nil } }
        let headAnchors: [Tensor?] = [stack.headWeight.copy(), stack.headBias.copy()]
        let layerOpt = AdamW(learningRate: settings.learningRate, decay: settings.decay)
        let headOpt = AdamW(learningRate: settings.headLearningRate, decay: settings.decay)
        var rng = SeededRandom(seed: settings.seed)
        var order = Array(labels.indices)
        let stepsPerEpoch = (labels.count + settings.batchSize - 1) / settings.batchSize
        var steps = 0
        let all = layerParams + [stack.headWeight, stack.headBias]
        var best: (score: Double, step: Int, snapshot: [Tensor])? = nil
        var sinceBest = 0
        var initial: Double? = nil
        func finish(_ early: Bool) -> Outcome {
            if let best {
                for (p, s) in zip(all, best.snapshot) { p.data.update(from: s.data, count: p.count) }
            }
            return Outcome(steps: steps, bestScore: best?.score, initialScore: initial, bestStep: best?.step, stoppedEarly: early)
        }
        if let es = earlyStopping { initial = es.evaluate() }
        for epoch in 0..<settings.epochs {
            for (idx, pairs) in batches(order: &order, groups: groups, rng: &rng) {
                if shouldStop() { return finish(true) }
                let (hidden, packing) = pack(cached, idx)
                g.zero()
                let loss = stack.step(hidden: hidden, packing: packing, labels: idx.map { labels[$0] },
                                      weights: weights.map { w in idx.map { w[$0] } },
                                      consistency: pairs.isEmpty ? nil : (pairs, settings.consistency),
                                      adversarial: settings.adversarialEpsilon > 0 ? (settings.adversarialEpsilon, settings.adversarialWeight) : nil,
                                      grads: g)
                // The adversarial pass is a second forward and backward.
                addFlops(stepFlops(stack, packing.lengths, backward: true) * (settings.adversarialEpsilon > 0 ? 2 : 1))
                if !layerParams.isEmpty { layerOpt.update(layerParams, layerGrads, anchors: anchors) }
                headOpt.update([stack.headWeight, stack.headBias], [g.headWeight, g.headBias], anchors: headAnchors)
                steps += 1
                progress?(Progress(epoch: epoch, step: steps, steps: stepsPerEpoch * settings.epochs, loss: loss))
                if let es = earlyStopping, steps % max(1, es.every) == 0 {
                    let score = es.evaluate()
                    if best == nil || score > best!.score {
                        best = (score, steps, all.map { $0.copy() })
                        sinceBest = 0
                    } else {
                        sinceBest += 1
                        if sinceBest > es.patience && steps >= es.minSteps { return finish(true) }
                    }
                }
            }
        }
        return finish(false)
    }

    /// FLOPs of one pass of the trainable stack over sequences of these lengths: the forward,
    /// and with `backward`, the backward (input gradients through every layer, weight
    /// gradients where the layer's own weights train; adapters add their small products).
    func stepFlops(_ stack: ClassifierStack, _ lengths: [Int], backward: Bool) -> Double {
        let c = encoder.config
        let layerF = Self.layerForwardFlops(lengths, config: c)
        let tokens = Double(lengths.reduce(0, +))
        var f = 2.0 * Double(stack.classes * stack.hidden) * Double(lengths.count)  // head
        for l in stack.layers {
            var adapter = 0.0
            if let a = l.adapters { adapter = a.all.reduce(0.0) { $0 + 2 * tokens * Double($1.rank * ($1.inputs + $1.outputs)) } }
            f += layerF + adapter
            if backward { f += (l.adapters == nil ? 2 * layerF : layerF) + 2 * adapter }
        }
        if backward { f += 4.0 * Double(stack.classes * stack.hidden) * Double(lengths.count) }
        return f
    }

    /// Sentence vectors `[N·H]` and logits `[N·C]` of `stack` on cached examples.
    public func vectorsAndLogits(_ stack: ClassifierStack, cached: [[Float]]) -> ([Float], [Float]) {
        var vectors: [Float] = [], logits: [Float] = []
        vectors.reserveCapacity(cached.count * stack.hidden)
        logits.reserveCapacity(cached.count * stack.classes)
        var i = 0
        while i < cached.count {
            let idx = Array(i..<min(i + 64, cached.count))
            let (hidden, packing) = pack(cached, idx)
            let (v, l) = stack.vectorsAndLogits(hidden: hidden, packing: packing)
            addFlops(stepFlops(stack, packing.lengths, backward: false))
            vectors += v.values
            logits += l.values
            i += 64
        }
        return (vectors, logits)
    }

    /// Accuracy of `stack` on cached examples.
    public func accuracy(_ stack: ClassifierStack, cached: [[Float]], labels: [Int]) -> Double {
        var correct = 0
        var i = 0
        while i < labels.count {
            let idx = Array(i..<min(i + 64, labels.count))
            let (hidden, packing) = pack(cached, idx)
            let logits = stack.logits(hidden: hidden, packing: packing)
            addFlops(stepFlops(stack, packing.lengths, backward: false))
            let C = stack.classes
            for (s, j) in idx.enumerated() {
                var best = 0
                for c in 1..<C where logits[s * C + c] > logits[s * C + best] { best = c }
                if best == labels[j] { correct += 1 }
            }
            i += 64
        }
        return Double(correct) / Double(max(1, labels.count))
    }
}
