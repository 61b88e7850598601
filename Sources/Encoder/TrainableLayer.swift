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

        /// Copies of another set of parameters.
        public init(copying p: Parameters) {
            let t = p.all.map { $0.copy() }
            (qkvWeight, qkvBias, attnOutWeight, attnOutBias, norm1Weight, norm1Bias) = (t[0], t[1], t[2], t[3], t[4], t[5])
            (ffnInWeight, ffnInBias, ffnOutWeight, ffnOutBias, norm2Weight, norm2Bias) = (t[6], t[7], t[8], t[9], t[10], t[11])
        }

        /// From tensors in the order of ``all``.
        public init(_ t: [Tensor]) {
            precondition(t.count == 12)
            (qkvWeight, qkvBias, attnOutWeight, attnOutBias, norm1Weight, norm1Bias) = (t[0], t[1], t[2], t[3], t[4], t[5])
            (ffnInWeight, ffnInBias, ffnOutWeight, ffnOutBias, norm2Weight, norm2Bias) = (t[6], t[7], t[8], t[9], t[10], t[11])
        }

        /// The tensors under HuggingFace BERT's names for layer `index` (Q, K, V split again).
        public func huggingFaceTensors(layer index: Int) -> [(String, Tensor)] {
            let H = norm1Weight.count
            let p = "encoder.layer.\(index)."
            func rows(_ t: Tensor, _ k: Int, _ n: Int, _ cols: Int) -> Tensor {
                let out = Tensor(shape: cols == 1 ? [n] : [n, cols])
                out.data.update(from: t.data + k * n * cols, count: n * cols)
                return out
            }
            var out: [(String, Tensor)] = []
            for (k, name) in ["query", "key", "value"].enumerated() {
                out.append((p + "attention.self.\(name).weight", rows(qkvWeight, k, H, H)))
                out.append((p + "attention.self.\(name).bias", rows(qkvBias, k, H, 1)))
            }
            out += [(p + "attention.output.dense.weight", attnOutWeight), (p + "attention.output.dense.bias", attnOutBias),
                    (p + "attention.output.LayerNorm.weight", norm1Weight), (p + "attention.output.LayerNorm.bias", norm1Bias),
                    (p + "intermediate.dense.weight", ffnInWeight), (p + "intermediate.dense.bias", ffnInBias),
                    (p + "output.dense.weight", ffnOutWeight), (p + "output.dense.bias", ffnOutBias),
                    (p + "output.LayerNorm.weight", norm2Weight), (p + "output.LayerNorm.bias", norm2Bias)]
            return out
        }

        /// Reads layer `index` back from HuggingFace names (as written by ``huggingFaceTensors(layer:)``).
        public convenience init(huggingFace tensor: (String) throws(ModelError) -> Tensor, layer index: Int) throws(ModelError) {
            let p = "encoder.layer.\(index)."
            let q = try tensor(p + "attention.self.query.weight"), k = try tensor(p + "attention.self.key.weight")
            let v = try tensor(p + "attention.self.value.weight")
            let H = q.shape[0]
            guard q.shape == [H, H], k.shape == [H, H], v.shape == [H, H] else { throw ModelError("Q, K, V shapes differ", tensor: p + "attention.self") }
            let qkv = Tensor(shape: [3 * H, H]), qkvb = Tensor(shape: [3 * H])
            for (i, name) in ["query", "key", "value"].enumerated() {
                let w = [q, k, v][i], b = try tensor(p + "attention.self.\(name).bias")
                guard b.shape == [H] else { throw ModelError("expected [\(H)], found \(b.shape)", tensor: p + "attention.self.\(name).bias") }
                (qkv.data + i * H * H).update(from: w.data, count: H * H)
                (qkvb.data + i * H).update(from: b.data, count: H)
            }
            self.init([qkv, qkvb, try tensor(p + "attention.output.dense.weight"), try tensor(p + "attention.output.dense.bias"),
                       try tensor(p + "attention.output.LayerNorm.weight"), try tensor(p + "attention.output.LayerNorm.bias"),
                       try tensor(p + "intermediate.dense.weight"), try tensor(p + "intermediate.dense.bias"),
                       try tensor(p + "output.dense.weight"), try tensor(p + "output.dense.bias"),
                       try tensor(p + "output.LayerNorm.weight"), try tensor(p + "output.LayerNorm.bias")])
            let I = ffnInBias.count
            let expected: [[Int]] = [[3 * H, H], [3 * H], [H, H], [H], [H], [H], [I, H], [I], [H, I], [H], [H], [H]]
            for (t, (e, name)) in zip(all, zip(expected, Self.names)) where t.shape != e {
                throw ModelError("expected \(e), found \(t.shape)", tensor: p + name)
            }
        }

        /// Frozen weights for serving (the model of a precision packs or quantises them).
        public var serving: BertLayerWeights {
            BertLayerWeights(qkvWeight: qkvWeight, qkvBias: qkvBias, attnOutWeight: attnOutWeight, attnOutBias: attnOutBias,
                             attnNormWeight: norm1Weight, attnNormBias: norm1Bias, ffnInWeight: ffnInWeight, ffnInBias: ffnInBias,
                             ffnOutWeight: ffnOutWeight, ffnOutBias: ffnOutBias, ffnNormWeight: norm2Weight, ffnNormBias: norm2Bias)
        }

        public func zero() { for t in all { t.zero() } }
    }

    /// Low-rank adapters on the layer's six projections, named as PEFT names the modules of a
    /// HuggingFace BERT layer. With adapters, the layer's own weights stay frozen.
    public final class Adapters {
        public let query: LoRAAdapter, key: LoRAAdapter, value: LoRAAdapter
        public let attnOut: LoRAAdapter, ffnIn: LoRAAdapter, ffnOut: LoRAAdapter
        public var all: [LoRAAdapter] { [query, key, value, attnOut, ffnIn, ffnOut] }
        /// The module paths under `encoder.layer.<n>.`, in the order of ``all``.
        public static let modules = ["attention.self.query", "attention.self.key", "attention.self.value",
                                     "attention.output.dense", "intermediate.dense", "output.dense"]
        /// A, B of every adapter, in the order of ``all``.
        public var tensors: [Tensor] { all.flatMap { [$0.a, $0.b] } }

        public init(_ adapters: [LoRAAdapter]) {
            precondition(adapters.count == 6)
            (query, key, value, attnOut, ffnIn, ffnOut) = (adapters[0], adapters[1], adapters[2], adapters[3], adapters[4], adapters[5])
        }

        /// Fresh adapters (B zero) for a layer of hidden size H and intermediate size I.
        public convenience init(hidden H: Int, intermediate I: Int, rank: Int, alpha: Float, seed: UInt64) {
            let shapes = [(H, H), (H, H), (H, H), (H, H), (H, I), (I, H)]
            self.init(shapes.enumerated().map { k, s in
                LoRAAdapter(inputs: s.0, outputs: s.1, rank: rank, alpha: alpha, seed: seed &* 31 &+ UInt64(k))
            })
        }

        /// Zeroed tensors with the shapes of `like` (gradients).
        public convenience init(zerosLike like: Adapters) {
            self.init(like.all.map { LoRAAdapter(a: Tensor(shape: $0.a.shape), b: Tensor(shape: $0.b.shape), alpha: $0.alpha) })
        }

        /// The layer's weights with every adapter merged in (`W + (α/r)·B·A`), as copies.
        public func merged(into p: Parameters) -> Parameters {
            let m = Parameters(copying: p)
            query.merge(into: m.qkvWeight, row: 0)
            key.merge(into: m.qkvWeight, row: query.outputs)
            value.merge(into: m.qkvWeight, row: query.outputs + key.outputs)
            attnOut.merge(into: m.attnOutWeight)
            ffnIn.merge(into: m.ffnInWeight)
            ffnOut.merge(into: m.ffnOutWeight)
            return m
        }
    }

    /// A layer's gradients: of its own weights, or of its adapters when it has them.
    public final class Gradients {
        public let params: Parameters?
        public let adapters: Adapters?
        public var all: [Tensor] { params?.all ?? adapters!.tensors }
        public func zero() { for t in all { t.zero() } }
        public init(for layer: TrainableLayer) {
            if let a = layer.adapters {
                adapters = Adapters(zerosLike: a); params = nil
            } else {
                params = Parameters(zerosLike: layer.params); adapters = nil
            }
        }
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
        /// `x Aᵀ` of each adapter, in the order of ``Adapters/all`` (empty without adapters).
        var downs: [Tensor] = []

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
    /// When set, only these train; ``params`` stay frozen.
    public let adapters: Adapters?
    public let heads: Int
    public let eps: Float

    public init(params: Parameters, adapters: Adapters? = nil, heads: Int, eps: Float) {
        self.params = params
        self.adapters = adapters
        self.heads = heads
        self.eps = eps
    }

    /// The tensors that train: the adapters', or the layer's own.
    public var trainable: [Tensor] { adapters?.tensors ?? params.all }

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
        if let a = adapters { c.downs = a.all.map { Tensor(shape: [N, $0.rank]) } }
        linearForward(out: c.qkv, input: input, weight: p.qkvWeight, bias: p.qkvBias)
        if let a = adapters {
            a.query.forwardAdd(out: c.qkv.data, ldOut: 3 * H, down: c.downs[0], input: input)
            a.key.forwardAdd(out: c.qkv.data + H, ldOut: 3 * H, down: c.downs[1], input: input)
            a.value.forwardAdd(out: c.qkv.data + 2 * H, ldOut: 3 * H, down: c.downs[2], input: input)
        }
        attentionForward(out: c.context, probs: c.probs, scratch: nil, qkv: c.qkv, packing: packing, heads: heads)
        linearForward(out: c.sum1, input: c.context, weight: p.attnOutWeight, bias: p.attnOutBias)
        adapters?.attnOut.forwardAdd(out: c.sum1, down: c.downs[3], input: c.context)
        addInPlace(c.sum1, input)
        layerNormForward(out: c.hidden1, mean: c.mean1, rstd: c.rstd1, input: c.sum1, weight: p.norm1Weight, bias: p.norm1Bias, eps: eps)
        linearForward(out: c.preActivation, input: c.hidden1, weight: p.ffnInWeight, bias: p.ffnInBias)
        adapters?.ffnIn.forwardAdd(out: c.preActivation, down: c.downs[4], input: c.hidden1)
        geluForward(out: c.activation, input: c.preActivation)
        linearForward(out: c.sum2, input: c.activation, weight: p.ffnOutWeight, bias: p.ffnOutBias)
        adapters?.ffnOut.forwardAdd(out: c.sum2, down: c.downs[5], input: c.activation)
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
    public func backward(dInput: Tensor?, dOut: Tensor, cache c: Cache, grads: Gradients) {
        let N = c.packing.totalTokens, H = hidden, I = intermediate, p = params
        dOut.check([N, H], "dOut")
        // With adapters the layer's own weights are frozen: no gradients for them.
        let g = grads.params, ga = grads.adapters, a = adapters
        /// Adds adapter k's share (in ``Adapters/all``'s order) to a projection's backward pass.
        func adapter(_ k: Int, dInput: Tensor?, dOut: UnsafePointer<Float>, ldOut: Int, input: Tensor) {
            guard let a, let ga else { return }
            a.all[k].backward(dA: ga.all[k].a, dB: ga.all[k].b, dInput: dInput, dOut: dOut, ldOut: ldOut, down: c.downs[k], input: input)
        }
        // out = LN2(sum2), sum2 = ffnOut(activation) + hidden1
        let dSum2 = Tensor(shape: [N, H])
        layerNormBackward(dInput: dSum2, dWeight: g?.norm2Weight, dBias: g?.norm2Bias, dOut: dOut, input: c.sum2,
                          weight: p.norm2Weight, mean: c.mean2, rstd: c.rstd2)
        let dActivation = Tensor(shape: [N, I])
        linearBackward(dInput: dActivation, dWeight: g?.ffnOutWeight, dBias: g?.ffnOutBias, dOut: dSum2, input: c.activation, weight: p.ffnOutWeight)
        adapter(5, dInput: dActivation, dOut: dSum2.data, ldOut: H, input: c.activation)
        let dPre = Tensor(shape: [N, I])
        geluBackward(dInput: dPre, dOut: dActivation, input: c.preActivation)
        let dHidden1 = Tensor(shape: [N, H])
        linearBackward(dInput: dHidden1, dWeight: g?.ffnInWeight, dBias: g?.ffnInBias, dOut: dPre, input: c.hidden1, weight: p.ffnInWeight)
        adapter(4, dInput: dHidden1, dOut: dPre.data, ldOut: I, input: c.hidden1)
        addInPlace(dHidden1, dSum2)  // the residual around the feed-forward block
        // hidden1 = LN1(sum1), sum1 = attnOut(context) + input
        let dSum1 = Tensor(shape: [N, H])
        layerNormBackward(dInput: dSum1, dWeight: g?.norm1Weight, dBias: g?.norm1Bias, dOut: dHidden1, input: c.sum1,
                          weight: p.norm1Weight, mean: c.mean1, rstd: c.rstd1)
        let dContext = Tensor(shape: [N, H])
        linearBackward(dInput: dContext, dWeight: g?.attnOutWeight, dBias: g?.attnOutBias, dOut: dSum1, input: c.context, weight: p.attnOutWeight)
        adapter(3, dInput: dContext, dOut: dSum1.data, ldOut: H, input: c.context)
        let dQKV = Tensor(shape: [N, 3 * H])
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, c.packing.maxLength * c.packing.maxLength))
        defer { scratch.deallocate() }
        attentionBackward(dQKV: dQKV, dOut: dContext, qkv: c.qkv, probs: c.probs, packing: c.packing, heads: heads, scratch: scratch)
        if let dInput { dInput.check([N, H], "dInput") }
        linearBackward(dInput: dInput, dWeight: g?.qkvWeight, dBias: g?.qkvBias, dOut: dQKV, input: c.input, weight: p.qkvWeight)
        for k in 0..<3 { adapter(k, dInput: dInput, dOut: dQKV.data + k * H, ldOut: 3 * H, input: c.input) }  // Q, K, V
        if let dInput { addInPlace(dInput, dSum1) }  // the residual around the attention block
    }
}
