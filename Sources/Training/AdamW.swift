import Foundation
import Tensor

/// AdamW (Loshchilov & Hutter): Adam on the gradient, weight decay applied to the weights
/// directly. Here the decay pulls toward a reference (the parent version's weights), which
/// is L2-SP (Li et al., 2018): `w ← w − lr · (m̂/(√v̂+ε) + λ·(w − w₀))`.
public final class AdamW {
    public var learningRate: Float
    public let beta1: Float, beta2: Float, eps: Float
    public var decay: Float
    private var step = 0
    private var m: [Tensor] = [], v: [Tensor] = []

    public init(learningRate: Float, decay: Float = 0.01, beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8) {
        self.learningRate = learningRate
        self.decay = decay
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
    }

    /// One update of every parameter from its gradient; `anchors` (same shapes, or nil per
    /// tensor) are the weights the decay pulls toward (nil: toward zero).
    public func update(_ params: [Tensor], _ grads: [Tensor], anchors: [Tensor?]) {
        precondition(params.count == grads.count && params.count == anchors.count)
        if m.isEmpty {
            m = params.map { Tensor(shape: $0.shape) }
            v = params.map { Tensor(shape: $0.shape) }
        }
        step += 1
        let c1 = 1 - powf(beta1, Float(step)), c2 = 1 - powf(beta2, Float(step))
        for k in params.indices {
            let p = params[k].data, g = grads[k].data, mk = m[k].data, vk = v[k].data
            let anchor = anchors[k]?.data
            for i in 0..<params[k].count {
                mk[i] = beta1 * mk[i] + (1 - beta1) * g[i]
                vk[i] = beta2 * vk[i] + (1 - beta2) * g[i] * g[i]
                let update = (mk[i] / c1) / ((vk[i] / c2).squareRoot() + eps)
                let pull = p[i] - (anchor?[i] ?? 0)
                p[i] -= learningRate * (update + decay * pull)
            }
        }
    }
}

