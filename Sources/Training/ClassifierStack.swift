import Encoder
import Foundation
import Tensor

// B sequences, N packed tokens, H hidden, C classes.

/// The trainable top of the model: the top k encoder layers, mean pooling, optional L2
/// normalisation, the fixed standardisation of the parent head, and the head itself.
/// Inputs are the frozen lower layers' hidden states, computed once per example.
public final class ClassifierStack {
    public let layers: [TrainableLayer]
    public let headWeight: Tensor  // [C, H]
    public let headBias: Tensor    // [C]
    let mean: [Float], scale: [Float]
    let normalize: Bool

    public struct Gradients {
        public let layers: [TrainableLayer.Gradients]
        public let headWeight: Tensor, headBias: Tensor
        public func zero() { for l in layers { l.zero() }; headWeight.zero(); headBias.zero() }
    }

    public init(layers: [TrainableLayer], headWeight: Tensor, headBias: Tensor, mean: [Float], scale: [Float], normalize: Bool) {
        self.layers = layers
        self.headWeight = headWeight
        self.headBias = headBias
        self.mean = mean
        self.scale = scale
        self.normalize = normalize
    }

    public var classes: Int { headWeight.shape[0] }
    public var hidden: Int { headWeight.shape[1] }

    public func makeGradients() -> Gradients {
        Gradients(layers: layers.map { TrainableLayer.Gradients(for: $0) },
                  headWeight: Tensor(shape: headWeight.shape), headBias: Tensor(shape: headBias.shape))
    }

    /// Every trainable tensor, and its gradient, in one order.
    public func parameters(_ g: Gradients) -> (params: [Tensor], grads: [Tensor]) {
        var p: [Tensor] = [], d: [Tensor] = []
        for (l, gl) in zip(layers, g.layers) { p += l.trainable; d += gl.all }
        p += [headWeight, headBias]; d += [g.headWeight, g.headBias]
        return (p, d)
    }

    struct Pass {
        var caches: [TrainableLayer.Cache] = []
        var outputs: [Tensor] = []
        var pooled: Tensor
        var norms: Tensor?
        var normalized: Tensor
        var standardized: Tensor
        var probs: Tensor
    }

    /// Logits `[B, C]` for packed hidden states (no caches kept).
    public func logits(hidden: Tensor, packing: Packing) -> Tensor {
        let (logits, _) = run(hidden: hidden, packing: packing)
        return logits
    }

    /// Sentence vectors `[B, H]` (pooled, normalised when the model normalises) and logits `[B, C]`.
    public func vectorsAndLogits(hidden: Tensor, packing: Packing) -> (vectors: Tensor, logits: Tensor) {
        let (logits, pass) = run(hidden: hidden, packing: packing)
        return (pass.normalized, logits)
    }

    func run(hidden: Tensor, packing: Packing) -> (Tensor, Pass) {
        let N = packing.totalTokens, B = packing.count, H = hidden.shape[1], C = classes
        var x = hidden
        var caches: [TrainableLayer.Cache] = [], outputs: [Tensor] = []
        for l in layers {
            let out = Tensor(shape: [N, H])
            caches.append(l.forward(out: out, input: x, packing: packing))
            outputs.append(out)
            x = out
        }
        let pooled = Tensor(shape: [B, H])
        meanPoolForward(out: pooled, input: x, packing: packing)
        var norms: Tensor? = nil
        let normalized = Tensor(shape: [B, H])
        if normalize {
            norms = Tensor(shape: [B])
            l2NormalizeForward(out: normalized, norms: norms, input: pooled)
        } else {
            normalized.data.update(from: pooled.data, count: pooled.count)
        }
        let z = Tensor(shape: [B, H])
        for b in 0..<B { for h in 0..<H { z[b * H + h] = (normalized[b * H + h] - mean[h]) * scale[h] } }
        let logits = Tensor(shape: [B, C])
        linearForward(out: logits, input: z, weight: headWeight, bias: headBias)
        return (logits, Pass(caches: caches, outputs: outputs, pooled: pooled, norms: norms, normalized: normalized, standardized: z,
                             probs: Tensor(shape: [B, C])))
    }

    /// Forward and backward for one minibatch: returns the (weighted) mean cross-entropy and
    /// accumulates the gradients.
    ///
    /// - Parameters:
    ///   - hidden: `[N, H]` frozen hidden states of the batch, packed
    ///   - labels: B class indices
    ///   - weights: B example weights (nil: all 1)
    ///   - consistency: pairs of batch rows (a clean example, a noisy variant of it) and λ:
    ///     the loss gains λ · the mean over pairs of KL(p_clean ‖ p_noisy), both sides
    ///     differentiated
    ///   - adversarial: embedding-space adversarial training at the input of the first
    ///     trainable layer (the fast-gradient method of Miyato et al. 2017): each sequence's
    ///     input is moved by ε · its norm along the loss's input gradient, and the loss gains
    ///     `weight` · the cross-entropy there (the move held fixed)
    public func step(hidden: Tensor, packing: Packing, labels: [Int], weights: [Float]? = nil,
                     consistency: (pairs: [(clean: Int, noisy: Int)], weight: Float)? = nil,
                     adversarial: (epsilon: Float, weight: Float)? = nil, grads g: Gradients) -> Float {
        guard let adversarial, adversarial.epsilon > 0, adversarial.weight > 0 else {
            return forwardBackward(hidden: hidden, packing: packing, labels: labels, weights: weights, consistency: consistency, grads: g).loss
        }
        let (loss, dHidden) = forwardBackward(hidden: hidden, packing: packing, labels: labels, weights: weights, consistency: consistency,
                                              grads: g, inputGradient: true)
        let moved = Self.adversarialInput(hidden: hidden, gradient: dHidden!, packing: packing, epsilon: adversarial.epsilon)
        let extra = forwardBackward(hidden: moved, packing: packing, labels: labels, weights: weights, scale: adversarial.weight, grads: g).loss
        return loss + extra
    }

    /// `hidden` moved, sequence by sequence, by ε · ‖h_s‖ · g_s / ‖g_s‖ (a sequence with no
    /// gradient stays where it is).
    static func adversarialInput(hidden: Tensor, gradient: Tensor, packing: Packing, epsilon: Float) -> Tensor {
        let H = hidden.shape[1]
        let out = hidden.copy()
        for s in 0..<packing.count {
            let lo = packing.offsets[s] * H, hi = lo + packing.lengths[s] * H
            var hn: Float = 0, gn: Float = 0
            for i in lo..<hi { hn += hidden[i] * hidden[i]; gn += gradient[i] * gradient[i] }
            guard gn > 0 else { continue }
            let f = epsilon * hn.squareRoot() / gn.squareRoot()
            for i in lo..<hi { out[i] += f * gradient[i] }
        }
        return out
    }

    /// One forward and backward pass; the loss and its gradients are multiplied by `scale`.
    /// With `inputGradient`, also the gradient of the loss with respect to `hidden`.
    func forwardBackward(hidden: Tensor, packing: Packing, labels: [Int], weights: [Float]? = nil,
                         consistency: (pairs: [(clean: Int, noisy: Int)], weight: Float)? = nil, scale lossScale: Float = 1,
                         grads g: Gradients, inputGradient: Bool = false) -> (loss: Float, dHidden: Tensor?) {
        let N = packing.totalTokens, B = packing.count, H = hidden.shape[1], C = classes
        let (logits, pass) = run(hidden: hidden, packing: packing)
        var loss = crossEntropyForward(probs: pass.probs, logits: logits, labels: labels, weights: weights)
        let dLogits = Tensor(shape: [B, C])
        crossEntropyBackward(dLogits: dLogits, probs: pass.probs, labels: labels, weights: weights)
        if let consistency, !consistency.pairs.isEmpty, consistency.weight > 0 {
            loss += Self.consistencyTerm(logits: logits, pairs: consistency.pairs, weight: consistency.weight, dLogits: dLogits)
        }
        if lossScale != 1 {
            loss *= lossScale
            for i in 0..<dLogits.count { dLogits[i] *= lossScale }
        }
        let dz = Tensor(shape: [B, H])
        linearBackward(dInput: dz, dWeight: g.headWeight, dBias: g.headBias, dOut: dLogits, input: pass.standardized, weight: headWeight)
        guard !layers.isEmpty || inputGradient else { return (loss, nil) }
        // Standardisation is fixed: dNormalized = dz · scale.
        let dNormalized = Tensor(shape: [B, H])
        for b in 0..<B { for h in 0..<H { dNormalized[b * H + h] = dz[b * H + h] * scale[h] } }
        let dPooled = Tensor(shape: [B, H])
        if normalize {
            l2NormalizeBackward(dInput: dPooled, dOut: dNormalized, out: pass.normalized, norms: pass.norms!)
        } else {
            dPooled.data.update(from: dNormalized.data, count: dPooled.count)
        }
        var dOut = Tensor(shape: [N, H])
        meanPoolBackward(dInput: dOut, dOut: dPooled, packing: packing)
        for k in stride(from: layers.count - 1, through: 0, by: -1) {
            let dIn: Tensor? = k > 0 || inputGradient ? Tensor(shape: [N, H]) : nil
            layers[k].backward(dInput: dIn, dOut: dOut, cache: pass.caches[k], grads: g.layers[k])
            if let dIn { dOut = dIn }
        }
        return (loss, inputGradient ? dOut : nil)
    }

    /// λ · mean over pairs of KL(p_a ‖ p_b), p = softmax(logits row); adds its gradient to
    /// `dLogits`: toward the noisy row, q − p; toward the clean row, p ⊙ (v − Σ p v) with
    /// v = log p − log q.
    static func consistencyTerm(logits: Tensor, pairs: [(clean: Int, noisy: Int)], weight: Float, dLogits: Tensor) -> Float {
        let C = logits.shape[1]
        let scale = weight / Float(pairs.count)
        func logSoftmax(_ row: Int) -> [Float] {
            var m = -Float.infinity
            for c in 0..<C { m = max(m, logits[row * C + c]) }
            var s: Float = 0
            for c in 0..<C { s += expf(logits[row * C + c] - m) }
            let lse = m + logf(s)
            return (0..<C).map { logits[row * C + $0] - lse }
        }
        var total: Float = 0
        for (a, b) in pairs {
            let lp = logSoftmax(a), lq = logSoftmax(b)
            var kl: Float = 0
            var v = [Float](repeating: 0, count: C), p = [Float](repeating: 0, count: C)
            for c in 0..<C {
                p[c] = expf(lp[c])
                v[c] = lp[c] - lq[c]
                kl += p[c] * v[c]
            }
            total += kl
            for c in 0..<C {
                dLogits[b * C + c] += scale * (expf(lq[c]) - p[c])
                dLogits[a * C + c] += scale * p[c] * (v[c] - kl)
            }
        }
        return scale * total
    }
}
