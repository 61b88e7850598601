import Foundation
import JSON

/// The parts of a HuggingFace BERT `config.json` the encoder needs, validated.
public struct BertConfig: Sendable, Equatable {
    public var hiddenSize: Int
    public var layers: Int
    public var heads: Int
    public var intermediateSize: Int
    public var vocabSize: Int
    public var maxPositions: Int
    public var typeVocabSize: Int
    public var layerNormEps: Float
    public var hiddenAct: String

    /// Model types whose encoder is BERT's (same weights layout and forward pass).
    public static let supportedModelTypes = ["bert"]
    public static let supportedActivations = ["gelu"]

    public init(hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int, vocabSize: Int,
                maxPositions: Int = 512, typeVocabSize: Int = 2, layerNormEps: Float = 1e-12, hiddenAct: String = "gelu") {
        self.hiddenSize = hiddenSize
        self.layers = layers
        self.heads = heads
        self.intermediateSize = intermediateSize
        self.vocabSize = vocabSize
        self.maxPositions = maxPositions
        self.typeVocabSize = typeVocabSize
        self.layerNormEps = layerNormEps
        self.hiddenAct = hiddenAct
    }

    public init(json: JSONValue, file: String = "config.json") throws(ModelError) {
        let modelType = json["model_type"]?.stringValue ?? "bert"
        guard Self.supportedModelTypes.contains(modelType) else {
            let arch = json["architectures"]?.arrayValue?.compactMap(\.stringValue).joined(separator: ", ") ?? modelType
            throw ModelError("model_type '\(modelType)' (\(arch)) is not supported; robustd runs BERT-family encoders (model_type 'bert', e.g. all-MiniLM-L6-v2, bert-base-uncased)", file: file)
        }
        // Bounds far above any BERT-family encoder, so that sizes from a damaged file cannot
        // overflow what is computed from them.
        func int(_ key: String, default d: Int? = nil, max: Int = 1 << 16) throws(ModelError) -> Int {
            if let v = json[key] {
                guard let i = v.intValue, i > 0 else { throw ModelError("'\(key)' must be a positive integer, got \(v)", file: file) }
                guard i <= max else { throw ModelError("'\(key)' is \(i), more than the \(max) robustd accepts", file: file) }
                return Int(i)
            }
            if let d { return d }
            throw ModelError("'\(key)' is missing", file: file)
        }
        hiddenSize = try int("hidden_size")
        layers = try int("num_hidden_layers", max: 256)
        heads = try int("num_attention_heads", max: 1024)
        intermediateSize = try int("intermediate_size")
        vocabSize = try int("vocab_size", max: 1 << 22)
        maxPositions = try int("max_position_embeddings", default: 512)
        typeVocabSize = try int("type_vocab_size", default: 2)
        layerNormEps = Float(json["layer_norm_eps"]?.doubleValue ?? 1e-12)
        hiddenAct = json["hidden_act"]?.stringValue ?? "gelu"
        guard hiddenSize % heads == 0 else {
            throw ModelError("hidden_size \(hiddenSize) is not divisible by num_attention_heads \(heads)", file: file)
        }
        guard Self.supportedActivations.contains(hiddenAct) else {
            throw ModelError("hidden_act '\(hiddenAct)' is not supported (supported: \(Self.supportedActivations.joined(separator: ", ")))", file: file)
        }
        if let pet = json["position_embedding_type"]?.stringValue, pet != "absolute" {
            throw ModelError("position_embedding_type '\(pet)' is not supported (only 'absolute')", file: file)
        }
        guard layerNormEps > 0, layerNormEps.isFinite else { throw ModelError("layer_norm_eps must be positive", file: file) }
    }

    public var headSize: Int { hiddenSize / heads }

    /// Parameters of the encoder (embeddings and layers; no pooler).
    public var parameterCount: Int {
        let H = hiddenSize, I = intermediateSize
        let embeddings = (vocabSize + maxPositions + typeVocabSize) * H + 2 * H
        let layer = 4 * (H * H + H) + 2 * H + (H * I + I) + (I * H + H) + 2 * H
        return embeddings + layers * layer
    }

    public var json: JSONValue {
        [
            "model_type": "bert", "hidden_size": .int(Int64(hiddenSize)), "num_hidden_layers": .int(Int64(layers)),
            "num_attention_heads": .int(Int64(heads)), "intermediate_size": .int(Int64(intermediateSize)),
            "vocab_size": .int(Int64(vocabSize)), "max_position_embeddings": .int(Int64(maxPositions)),
            "type_vocab_size": .int(Int64(typeVocabSize)), "layer_norm_eps": .double(Double(layerNormEps)),
            "hidden_act": .string(hiddenAct), "architectures": ["BertModel"],
        ]
    }
}
