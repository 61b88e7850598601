import Tensor

// N packed tokens, H hidden, I intermediate, NH heads.

/// One transformer layer whose parameters train: an owned copy of a layer's weights, a forward
/// pass that keeps what the backward pass needs, and the backward pass itself (the kernels'
/// backward functions, called in reverse order of the forward).
public final class TrainableLayer {
    /// The parameters, in PyTorch's layouts (fused QKV as in ``BertLayerWeights``).
    public final class Parameters {
        public let qkvWeight: Tensor, qkvBias: Tensor           // [3H, H], [3H]
        public let attnOutWeight: Tensor, attnOutBias: Tensor   // [H, H], [H]
        public let norm1Weight: Tensor, norm1Bias: Tensor       // [H], [H]
        public let ffnInWeight: Tensor, ffnInBias: Tensor       // [I, H], [I]
        public let ffnOutWeight: Tensor, ffnOutBias: Tensor     // [H, I], [H]
        public let norm2Weight: Tensor, norm2Bias: Tensor       // [H], [H]

        public var all: [Tensor] {
            [qkvWeight, qkvBias, attnOutWeight, attnOutBias, norm1Weight, norm1Bias,
             ffnInWeight, ffnInBias, ffnOutWeight, ffnOutBias, norm2Weight, norm2Bias]
        }
        public static let names = ["qkv.weight", "qkv.bias", "attention.output.dense.weight", "attention.output.dense.bias",
                                   "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
                                   "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight", "output.dense.bias",
                                   "output.LayerNorm.weight", "output.LayerNorm.bias"]

        /// Zeroed tensors with the shapes of `like` (for gradients and optimiser state).
        public init(zerosLike like: Parameters) {
            let t = like.all.map { Tensor(shape: $0.shape) }
            (qkvWeight, qkvBias, attnOutWeight, attnOutBias, norm1Weight, norm1Bias) = (t[0], t[1], t[2], t[3], t[4], t[5])
            (ffnInWeight, ffnInBias, ffnOutWeight, ffnOutBias, norm2Weight, norm2Bias) = (t[6], t[7], t[8], t[9], t[10], t[11])
        }

        /// Copies of a loaded layer's weights.
        public init(copying w: BertLayerWeights) {
            qkvWeight = w.qkvWeight.copy(); qkvBias = w.qkvBias.copy()
            attnOutWeight = w.attnOutWeight.copy(); attnOutBias = w.attnOutBias.copy()
            norm1Weight = w.attnNormWeight.copy(); norm1Bias = w.attnNormBias.copy()
            ffnInWeight = w.ffnInWeight.copy(); ffnInBias = w.ffnInBias.copy()
            ffnOutWeight = w.ffnOutWeight.copy(); ffnOutBias = w.ffnOutBias.copy()
            norm2Weight = w.ffnNormWeight.copy(); norm2Bias = w.ffnNormBias.copy()
        }

        public func zero() { for t in all { t.zero() } }
    }

    /// What the forward pass keeps for the backward pass, named for its contents.
    public final class Cache {
        let input: Tensor          // [N, H]
        let qkv: Tensor            // [N, 3H]
        let probs: Tensor          // [NH · Σ T²]
        let context: Tensor        // [N, H]
        let sum1: Tensor           // [N, H] attention output + input
        let mean1: Tensor, rstd1: Tensor  // [N]
        let hidden1: Tensor        // [N, H] after the first layer norm
        let preActivation: Tensor  // [N, I]
        let activation: Tensor     // [N, I]
        let sum2: Tensor           // [N, H]
        let mean2: Tensor, rstd2: Tensor  // [N]
        let packing: Packing

        init(N: Int, H: Int, I: Int, NH: Int, packing: Packing, input: Tensor) {
            self.input = input
            qkv = Tensor(shape: [N, 3 * H]); probs = Tensor(shape: [NH * packing.totalSquares]); context = Tensor(shape: [N, H])
            sum1 = Tensor(shape: [N, H]); mean1 = Tensor(shape: [N]); rstd1 = Tensor(shape: [N]); hidden1 = Tensor(shape: [N, H])
            preActivation = Tensor(shape: [N, I]); activation = Tensor(shape: [N, I])
            sum2 = Tensor(shape: [N, H]); mean2 = Tensor(shape: [N]); rstd2 = Tensor(shape: [N])
            self.packing = packing
        }
    }

    public let params: Parameters
    public let heads: Int
    public let eps: Float

    public init(params: Parameters, heads: Int, eps: Float) {
        self.params = params
        self.heads = heads
        self.eps = eps
    }

    public var hidden: Int { params.norm1Weight.count }
    public var intermediate: Int { params.ffnInBias.count }

    /// - Parameters:
    ///   - out: `[N, H]`
    ///   - input: `[N, H]`, kept by reference in the cache (do not overwrite it before backward)
    /// - Returns: the cache for ``backward(dInput:dOut:cache:grads:)``
    public func forward(out: Tensor, input: Tensor, packing: Packing) -> Cache {
        let N = packing.totalTokens, H = hidden, I = intermediate, p = params
        input.check([N, H], "input")
        out.check([N, H], "out")
        let c = Cache(N: N, H: H, I: I, NH: heads, packing: packing, input: input)
        linearForward(out: c.qkv, input: input, weight: p.qkvWeight, bias: p.qkvBias)
        attentionForward(out: c.context, probs: c.probs, scratch: nil, qkv: c.qkv, packing: packing, heads: heads)
        linearForward(out: c.sum1, input: c.context, weight: p.attnOutWeight, bias: p.attnOutBias)
        addInPlace(c.sum1, input)
        layerNormForward(out: c.hidden1, mean: c.mean1, rstd: c.rstd1, input: c.sum1, weight: p.norm1Weight, bias: p.norm1Bias, eps: eps)
        linearForward(out: c.preActivation, input: c.hidden1, weight: p.ffnInWeight, bias: p.ffnInBias)
        geluForward(out: c.activation, input: c.preActivation)
        linearForward(out: c.sum2, input: c.activation, weight: p.ffnOutWeight, bias: p.ffnOutBias)
        addInPlace(c.sum2, c.hidden1)
        layerNormForward(out: out, mean: c.mean2, rstd: c.rstd2, input: c.sum2, weight: p.norm2Weight, bias: p.norm2Bias, eps: eps)
        return c
    }

    /// Backward of ``forward(out:input:packing:)``: accumulates the parameter gradients into
    /// `grads` and writes the input's gradient into `dInput` (nil: the lowest trainable layer).
    ///
    /// - Parameters:
    ///   - dInput: `[N, H]`, overwritten, or nil
    ///   - dOut: `[N, H]`
    public func backward(dInput: Tensor?, dOut: Tensor, cache c: Cache, grads g: Parameters) {
        let N = c.packing.totalTokens, H = hidden, I = intermediate, p = params
        dOut.check([N, H], "dOut")
        // out = LN2(sum2), sum2 = ffnOut(activation) + hidden1
        let dSum2 = Tensor(shape: [N, H])
        layerNormBackward(dInput: dSum2, dWeight: g.norm2Weight, dBias: g.norm2Bias, dOut: dOut, input: c.sum2,
                          weight: p.norm2Weight, mean: c.mean2, rstd: c.rstd2)
        let dActivation = Tensor(shape: [N, I])
        linearBackward(dInput: dActivation, dWeight: g.ffnOutWeight, dBias: g.ffnOutBias, dOut: dSum2, input: c.activation, weight: p.ffnOutWeight)
        let dPre = Tensor(shape: [N, I])
        geluBackward(dInput: dPre, dOut: dActivation, input: c.preActivation)
        let dHidden1 = Tensor(shape: [N, H])
        linearBackward(dInput: dHidden1, dWeight: g.ffnInWeight, dBias: g.ffnInBias, dOut: dPre, input: c.hidden1, weight: p.ffnInWeight)
        addInPlace(dHidden1, dSum2)  // the residual around the feed-forward block
        // hidden1 = LN1(sum1), sum1 = attnOut(context) + input
        let dSum1 = Tensor(shape: [N, H])
        layerNormBackward(dInput: dSum1, dWeight: g.norm1Weight, dBias: g.norm1Bias, dOut: dHidden1, input: c.sum1,
                          weight: p.norm1Weight, mean: c.mean1, rstd: c.rstd1)
        let dContext = Tensor(shape: [N, H])
        linearBackward(dInput: dContext, dWeight: g.attnOutWeight, dBias: g.attnOutBias, dOut: dSum1, input: c.context, weight: p.attnOutWeight)
        let dQKV = Tensor(shape: [N, 3 * H])
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, c.packing.maxLength * c.packing.maxLength))
        defer { scratch.deallocate() }
        attentionBackward(dQKV: dQKV, dOut: dContext, qkv: c.qkv, probs: c.probs, packing: c.packing, heads: heads, scratch: scratch)
        if let dInput {
            dInput.check([N, H], "dInput")
            linearBackward(dInput: dInput, dWeight: g.qkvWeight, dBias: g.qkvBias, dOut: dQKV, input: c.input, weight: p.qkvWeight)
            addInPlace(dInput, dSum1)  // the residual around the attention block
        } else {
            linearBackward(dInput: nil, dWeight: g.qkvWeight, dBias: g.qkvBias, dOut: dQKV, input: c.input, weight: p.qkvWeight)
        }
    }
}
