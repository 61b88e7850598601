import Foundation
import JSON
import Tensor
import Tokenizer

/// How token vectors become one sentence vector.
public enum Pooling: String, Sendable {
    case mean, cls
}

/// A sentence encoder loaded from a HuggingFace model folder: tokenizer, BERT, pooling and
/// (for sentence-transformers folders with a Normalize module) L2 normalisation.
///
/// Immutable after load and safe to share between threads; each thread brings its own
/// ``Workspace``.
public final class SentenceEncoder: Sendable {
    public let folder: String
    public let config: BertConfig
    public let model: BertModel
    public let tokenizer: BertTokenizer
    public let pooling: Pooling
    public let normalize: Bool
    /// Longest input in tokens, [CLS] and [SEP] included; longer inputs are truncated.
    public let maxSeqLength: Int
    public let loadSeconds: Double
    /// Where the vocabulary came from (`vocab.txt` or `tokenizer.json`).
    public let vocabularySource: String
    let weightsFile: SafeTensorsFile

    public init(config: BertConfig, weights: BertWeights, tokenizer: BertTokenizer, pooling: Pooling = .mean,
                normalize: Bool = true, maxSeqLength: Int, folder: String = "", vocabularySource: String = "",
                weightsFile: SafeTensorsFile, loadSeconds: Double = 0, precision: Precision = .fp32, reusing: BertModel? = nil) {
        self.config = config
        self.model = BertModel(config: config, weights: weights, precision: precision, reusing: reusing)
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.maxSeqLength = maxSeqLength
        self.folder = folder
        self.vocabularySource = vocabularySource
        self.weightsFile = weightsFile
        self.loadSeconds = loadSeconds
    }

    /// Loads a model folder (config.json, model.safetensors, vocab.txt or tokenizer.json,
    /// and the optional sentence-transformers files), its products in `precision`.
    public static func load(folder: String, precision: Precision = .fp32) throws(ModelError) -> SentenceEncoder {
        let start = Date()
        let dir = URL(fileURLWithPath: folder)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDir), isDir.boolValue else {
            throw ModelError("model folder not found: \(folder) (scripts/fetch-model puts the reference model in ~/.cache/robustd/models/all-MiniLM-L6-v2)")
        }
        func json(_ name: String, required: Bool) throws(ModelError) -> JSONValue? {
            let path = dir.appendingPathComponent(name).path
            guard let data = FileManager.default.contents(atPath: path) else {
                if required { throw ModelError("missing from the model folder", file: name) }
                return nil
            }
            do { return try JSONParser.parse(Array(data)) } catch { throw ModelError("not valid JSON: \(error)", file: name) }
        }
        let config = try BertConfig(json: try json("config.json", required: true)!)

        let weightsPath = dir.appendingPathComponent("model.safetensors").path
        guard FileManager.default.fileExists(atPath: weightsPath) else {
            let hasBin = FileManager.default.fileExists(atPath: dir.appendingPathComponent("pytorch_model.bin").path)
            throw ModelError(hasBin ? "missing; only safetensors weights are supported (pytorch_model.bin found: convert it with the safetensors library)"
                                    : "missing from the model folder", file: "model.safetensors")
        }
        let file = try SafeTensorsFile(path: weightsPath)
        let weights = try BertWeights.load(from: file, config: config)

        // Tokenizer settings: tokenizer.json's normalizer when present (what the fast tokenizer
        // uses), else tokenizer_config.json.
        let tokJSON = try json("tokenizer.json", required: false)
        let tokConfig = try json("tokenizer_config.json", required: false)
        var normalizer = BertNormalizer(lowercase: tokConfig?["do_lower_case"]?.boolValue ?? true)
        if let v = tokConfig?["tokenize_chinese_chars"]?.boolValue { normalizer.handleChineseChars = v }
        if let v = tokConfig?["strip_accents"]?.boolValue { normalizer.stripAccents = v }
        if let n = tokJSON?["normalizer"], n["type"] == "BertNormalizer" {
            normalizer = BertNormalizer(cleanText: n["clean_text"]?.boolValue ?? true,
                                        handleChineseChars: n["handle_chinese_chars"]?.boolValue ?? true,
                                        stripAccents: n["strip_accents"]?.boolValue,
                                        lowercase: n["lowercase"]?.boolValue ?? true)
        } else if let n = tokJSON?["normalizer"], !n.isNull {
            throw ModelError("normalizer type \(n["type"]?.stringValue ?? "?") is not supported (BertNormalizer only)", file: "tokenizer.json")
        }
        var vocab: [String] = []
        var source = "vocab.txt"
        if let data = FileManager.default.contents(atPath: dir.appendingPathComponent("vocab.txt").path) {
            // One token a line, LF or CRLF (a CRLF is one Character in Swift).
            vocab = String(decoding: data, as: UTF8.self).split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map(String.init)
            if vocab.last == "" { vocab.removeLast() }
        } else if let model = tokJSON?["model"], model["type"] == "WordPiece", let v = model["vocab"]?.objectValue {
            source = "tokenizer.json"
            vocab = Array(repeating: "", count: v.count)
            for (token, id) in v {
                guard let i = id.intValue, i >= 0, Int(i) < v.count else { throw ModelError("vocab id \(id) out of range", file: "tokenizer.json") }
                vocab[Int(i)] = token
            }
        } else {
            throw ModelError("no vocabulary: need vocab.txt or a WordPiece tokenizer.json", file: folder)
        }
        guard vocab.count == config.vocabSize else {
            throw ModelError("has \(vocab.count) tokens but config.json says vocab_size \(config.vocabSize)", file: source)
        }
        let maxChars = tokJSON?["model"]?["max_input_chars_per_word"]?.intValue.map(Int.init) ?? 100
        let tokenizer: BertTokenizer
        do {
            tokenizer = try BertTokenizer(vocab: vocab, normalizer: normalizer, maxInputCharsPerWord: maxChars)
        } catch {
            throw ModelError("\(error)", file: source)
        }

        var pooling = Pooling.mean
        if let p = try json("1_Pooling/config.json", required: false) {
            if p["pooling_mode_cls_token"] == .bool(true) { pooling = .cls }
            else if p["pooling_mode_mean_tokens"] != .bool(true) {
                throw ModelError("only mean and CLS pooling are supported", file: "1_Pooling/config.json")
            }
        }
        let modules = try json("modules.json", required: false)
        let normalize = modules?.arrayValue?.contains { $0["type"]?.stringValue?.hasSuffix("Normalize") == true } ?? false
        var maxLen = config.maxPositions
        if let m = try json("sentence_bert_config.json", required: false)?["max_seq_length"]?.intValue { maxLen = Int(m) }
        else if let m = tokConfig?["model_max_length"]?.intValue, m < maxLen { maxLen = Int(m) }
        maxLen = max(2, min(maxLen, config.maxPositions))

        let encoder = SentenceEncoder(config: config, weights: weights, tokenizer: tokenizer, pooling: pooling, normalize: normalize,
                                      maxSeqLength: maxLen, folder: folder, vocabularySource: source, weightsFile: file,
                                      loadSeconds: Date().timeIntervalSince(start), precision: precision)
        // Packing or quantising read every layer weight from the mapping; what the precision
        // does not read again (all of it for int8) need not stay resident. Only here, at load:
        // an encoder made later (a version's layers, the other precision) shares the mapping
        // with one that is serving, whose pages would only be read back in.
        file.releaseResidentPages()
        return encoder
    }

    /// The same encoder with some layers' weights replaced (a fine-tuned version's top
    /// layers); everything else, the memory-mapped weights included, is shared.
    public func replacingLayers(_ overrides: [Int: BertLayerWeights]) -> SentenceEncoder {
        guard !overrides.isEmpty else { return self }
        let w = model.weights
        var layers = w.layers
        for (i, l) in overrides {
            precondition(layers.indices.contains(i), "layer \(i) of \(layers.count)")
            layers[i] = l
        }
        let weights = BertWeights(wordEmbeddings: w.wordEmbeddings, positionEmbeddings: w.positionEmbeddings,
                                  tokenTypeEmbeddings: w.tokenTypeEmbeddings, embNormWeight: w.embNormWeight, embNormBias: w.embNormBias,
                                  layers: layers)
        return SentenceEncoder(config: config, weights: weights, tokenizer: tokenizer, pooling: pooling, normalize: normalize,
                               maxSeqLength: maxSeqLength, folder: folder, vocabularySource: vocabularySource, weightsFile: weightsFile,
                               loadSeconds: loadSeconds, precision: model.precision, reusing: model)
    }

    /// The same encoder computing its layers' matrix products in `precision` (int8: weights
    /// quantised per output channel now, activations per row at run time).
    public func withPrecision(_ precision: Precision) -> SentenceEncoder {
        guard precision != model.precision else { return self }
        return SentenceEncoder(config: config, weights: model.weights, tokenizer: tokenizer, pooling: pooling, normalize: normalize,
                               maxSeqLength: maxSeqLength, folder: folder, vocabularySource: vocabularySource, weightsFile: weightsFile,
                               loadSeconds: loadSeconds, precision: precision)
    }

    /// Token ids for each text, truncated to ``maxSeqLength``.
    public func encode(_ texts: [String]) -> [Encoding] {
        texts.map { tokenizer.encode($0, maxLength: maxSeqLength) }
    }

    /// Sentence vectors for token-id sequences.
    ///
    /// - Parameters:
    ///   - out: `[B, H]`, B = `sequences.count`
    public func embed(_ sequences: [[Int32]], into out: Tensor, workspace: Workspace, parallel: Parallel = .serial) {
        let (hidden, packing) = model.hiddenStates(sequences, workspace: workspace, parallel: parallel)
        switch pooling {
        case .mean: meanPoolForward(out: out, input: hidden, packing: packing)
        case .cls: clsPoolForward(out: out, input: hidden, packing: packing)
        }
        if normalize { l2NormalizeForward(out: out, norms: nil, input: out) }
    }

    /// Convenience: sentence vectors for texts, one array per text.
    public func embed(_ texts: [String], workspace: Workspace) -> [[Float]] {
        guard !texts.isEmpty else { return [] }
        let out = Tensor(shape: [texts.count, config.hiddenSize])
        embed(encode(texts).map(\.ids), into: out, workspace: workspace)
        let H = config.hiddenSize
        return (0..<texts.count).map { Array(UnsafeBufferPointer(start: out.data + $0 * H, count: H)) }
    }

    public var hiddenSize: Int { config.hiddenSize }

    /// Bytes of model.safetensors mapped into memory (resident only where touched).
    public var mappedWeightBytes: Int { weightsFile.entries.values.reduce(0) { $0 + $1.end - $1.begin } }

    /// Bytes of the weight copies made at load: the fused QKV, and the products' copies of the
    /// precision in use (the few-rows packing for fp32, the int8 weights for int8).
    public var packedWeightBytes: Int {
        model.weights.layers.reduce(0) { $0 + ($1.qkvWeight.count + $1.qkvBias.count) * 4 } + model.productBytes
    }
}
