import Foundation
import JSON
import Encoder
import Tensor

public enum Paths {
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    /// The project's shared folder: `ROBUSTD_SHARED_DIR`, or `shared/` beside the checkout.
    public static let shared = ProcessInfo.processInfo.environment["ROBUSTD_SHARED_DIR"].map { URL(fileURLWithPath: $0) }
        ?? packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
    public static var fixture: URL { shared.appendingPathComponent("fixtures/minilm-reference.json") }

    /// The reference model: `ROBUSTD_MODEL_DIR`, or where scripts/fetch-model puts it.
    public static var referenceModel: String {
        ProcessInfo.processInfo.environment["ROBUSTD_MODEL_DIR"]
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/robustd/models/all-MiniLM-L6-v2").path
    }
}

/// The reference model, loaded once for all tests.
public enum Reference {
    public static let encoder: Result<SentenceEncoder, ModelError> = Result { () throws(ModelError) in
        try SentenceEncoder.load(folder: Paths.referenceModel)
    }

    public struct Item: Sendable {
        public let name: String
        public let text: String
        public let inputIDs: [Int32]
        public let stInputIDs: [Int32]
        public let untruncated: Int
        public let embedding: [Float]
    }

    /// The fixture's sentences; empty (and the parity tests fail saying so) when the file is missing.
    public static let items: [Item] = {
        guard let data = try? Data(contentsOf: Paths.fixture), let json = try? JSONParser.parse(Array(data)),
              let list = json["items"]?.arrayValue else { return [] }
        return list.compactMap { it in
            guard let ids = it["input_ids"]?.arrayValue?.compactMap({ $0.intValue.map(Int32.init) }),
                  let name = it["name"]?.stringValue, let text = it["text"]?.stringValue,
                  let untruncated = it["n_tokens_untruncated"]?.intValue,
                  let embedding = it["embedding"]?.arrayValue?.compactMap({ $0.doubleValue.map(Float.init) }) else { return nil }
            let st = it["st_input_ids"]?.arrayValue?.compactMap { $0.intValue.map(Int32.init) } ?? ids
            return Item(name: name, text: text, inputIDs: ids, stInputIDs: st, untruncated: Int(untruncated), embedding: embedding)
        }
    }()
}

/// Writes a tiny, randomly initialised BERT in the HuggingFace layout, for tests of the
/// loading code path and the forward pass without the real model.
public enum TinyModel {
    public static let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "card", "is", "late", "my", "##s", "?", "a", "b", "##c"]

    public static func config(layers: Int = 2) -> BertConfig {
        BertConfig(hiddenSize: 8, layers: layers, heads: 2, intermediateSize: 16, vocabSize: vocab.count, maxPositions: 16,
                   typeVocabSize: 2, layerNormEps: 1e-12)
    }

    public static func tensors(_ c: BertConfig, seed: UInt64 = 1) -> [(String, Tensor)] {
        var state = seed
        func rand(_ shape: [Int], scale: Float = 0.5) -> Tensor {
            let t = Tensor(shape: shape)
            for i in 0..<t.count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                t[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
            return t
        }
        let H = c.hiddenSize, I = c.intermediateSize
        var out: [(String, Tensor)] = [
            ("embeddings.word_embeddings.weight", rand([c.vocabSize, H])),
            ("embeddings.position_embeddings.weight", rand([c.maxPositions, H])),
            ("embeddings.token_type_embeddings.weight", rand([c.typeVocabSize, H])),
            ("embeddings.LayerNorm.weight", rand([H], scale: 0.2)), ("embeddings.LayerNorm.bias", rand([H], scale: 0.1)),
        ]
        for l in 0..<c.layers {
            let p = "encoder.layer.\(l)."
            for n in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"] {
                out.append((p + n + ".weight", rand([H, H]))); out.append((p + n + ".bias", rand([H], scale: 0.1)))
            }
            out.append((p + "intermediate.dense.weight", rand([I, H]))); out.append((p + "intermediate.dense.bias", rand([I], scale: 0.1)))
            out.append((p + "output.dense.weight", rand([H, I]))); out.append((p + "output.dense.bias", rand([H], scale: 0.1)))
            for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
                out.append((p + n + ".weight", rand([H], scale: 0.2))); out.append((p + n + ".bias", rand([H], scale: 0.1)))
            }
        }
        // LayerNorm weights near 1, as trained models have.
        for (name, t) in out where name.hasSuffix("LayerNorm.weight") { for i in 0..<t.count { t[i] += 1 } }
        return out
    }

    /// Writes the folder and returns its path.
    @discardableResult
    public static func write(to dir: String, config c: BertConfig = config(), dtype: SafeTensorsWriter.DType = .F32,
                      prefix: String = "", tensors: [(String, Tensor)]? = nil) throws -> String {
        try FileManager.default.createDirectory(atPath: dir + "/1_Pooling", withIntermediateDirectories: true)
        try Data(JSONWriter.string(c.json).utf8).write(to: URL(fileURLWithPath: dir + "/config.json"))
        try Data((vocab.joined(separator: "\n") + "\n").utf8).write(to: URL(fileURLWithPath: dir + "/vocab.txt"))
        try Data(#"{"do_lower_case": true}"#.utf8).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        try Data(#"{"max_seq_length": 12}"#.utf8).write(to: URL(fileURLWithPath: dir + "/sentence_bert_config.json"))
        try Data(#"{"pooling_mode_mean_tokens": true}"#.utf8).write(to: URL(fileURLWithPath: dir + "/1_Pooling/config.json"))
        try Data(#"[{"type":"sentence_transformers.models.Transformer"},{"type":"sentence_transformers.models.Pooling"},{"type":"sentence_transformers.models.Normalize"}]"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/modules.json"))
        let ts = (tensors ?? self.tensors(c)).map { (prefix + $0.0, $0.1) }
        try SafeTensorsWriter.write(ts, to: dir + "/model.safetensors", dtype: dtype)
        return dir
    }
}

public final class TempFolder {
    public let path: String
    public init() {
        path = "/tmp/robustd-enc-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
