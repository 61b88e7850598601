import Tensor

// H hidden, I intermediate, V vocabulary, P positions, TT token types, L layers.

/// One transformer layer's weights, in PyTorch's `[out, in]` layout (views into the mapped
/// file where they can be). Q, K and V are fused into one `[3H, H]` projection, so that
/// attention's input is one matrix product. The copies the products compute from (packed for
/// the few-rows kernel, or quantised) belong to the ``BertModel`` of a precision.
public struct BertLayerWeights: Sendable {
    public let qkvWeight: Tensor      // [3H, H]
    public let qkvBias: Tensor        // [3H]
    public let attnOutWeight: Tensor  // [H, H]
    public let attnOutBias: Tensor    // [H]
    public let attnNormWeight: Tensor // [H]
    public let attnNormBias: Tensor   // [H]
    public let ffnInWeight: Tensor    // [I, H]
    public let ffnInBias: Tensor      // [I]
    public let ffnOutWeight: Tensor   // [H, I]
    public let ffnOutBias: Tensor     // [H]
    public let ffnNormWeight: Tensor  // [H]
    public let ffnNormBias: Tensor    // [H]
}

/// All encoder weights, shape-checked against the config at load.
public struct BertWeights: Sendable {
    public let wordEmbeddings: Tensor      // [V, H]
    public let positionEmbeddings: Tensor  // [P, H]
    public let tokenTypeEmbeddings: Tensor // [TT, H]
    public let embNormWeight: Tensor       // [H]
    public let embNormBias: Tensor         // [H]
    public let layers: [BertLayerWeights]

    /// Loads from a safetensors file with HuggingFace BERT names, with or without the
    /// `bert.` prefix, and the old `gamma`/`beta` layer-norm names.
    public static func load(from file: SafeTensorsFile, config c: BertConfig) throws(ModelError) -> BertWeights {
        let prefix = file.entries.keys.contains { $0.hasPrefix("bert.") } ? "bert." : ""
        let H = c.hiddenSize, I = c.intermediateSize
        func t(_ name: String, _ shape: [Int]) throws(ModelError) -> Tensor {
            try file.tensor(prefix + name, shape: shape)
        }
        func norm(_ base: String) throws(ModelError) -> (Tensor, Tensor) {
            if file.entries[prefix + base + ".gamma"] != nil {
                return (try t(base + ".gamma", [H]), try t(base + ".beta", [H]))
            }
            return (try t(base + ".weight", [H]), try t(base + ".bias", [H]))
        }
        let (enw, enb) = try norm("embeddings.LayerNorm")
        var layers: [BertLayerWeights] = []
        for l in 0..<c.layers {
            let p = "encoder.layer.\(l)."
            let q = try t(p + "attention.self.query.weight", [H, H]), qb = try t(p + "attention.self.query.bias", [H])
            let k = try t(p + "attention.self.key.weight", [H, H]), kb = try t(p + "attention.self.key.bias", [H])
            let v = try t(p + "attention.self.value.weight", [H, H]), vb = try t(p + "attention.self.value.bias", [H])
            let qkv = Tensor(shape: [3 * H, H]), qkvb = Tensor(shape: [3 * H])
            for (i, (w, b)) in [(q, qb), (k, kb), (v, vb)].enumerated() {
                (qkv.data + i * H * H).update(from: w.data, count: H * H)
                (qkvb.data + i * H).update(from: b.data, count: H)
            }
            let (anw, anb) = try norm(p + "attention.output.LayerNorm")
            let (fnw, fnb) = try norm(p + "output.LayerNorm")
            let ao = try t(p + "attention.output.dense.weight", [H, H])
            let fi = try t(p + "intermediate.dense.weight", [I, H])
            let fo = try t(p + "output.dense.weight", [H, I])
            layers.append(BertLayerWeights(
                qkvWeight: qkv, qkvBias: qkvb,
                attnOutWeight: ao, attnOutBias: try t(p + "attention.output.dense.bias", [H]),
                attnNormWeight: anw, attnNormBias: anb,
                ffnInWeight: fi, ffnInBias: try t(p + "intermediate.dense.bias", [I]),
                ffnOutWeight: fo, ffnOutBias: try t(p + "output.dense.bias", [H]),
                ffnNormWeight: fnw, ffnNormBias: fnb))
        }
        return BertWeights(
            wordEmbeddings: try t("embeddings.word_embeddings.weight", [c.vocabSize, H]),
            positionEmbeddings: try t("embeddings.position_embeddings.weight", [c.maxPositions, H]),
            tokenTypeEmbeddings: try t("embeddings.token_type_embeddings.weight", [c.typeVocabSize, H]),
            embNormWeight: enw, embNormBias: enb, layers: layers)
    }
}
