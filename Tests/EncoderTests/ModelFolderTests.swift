import Foundation
import RobustdTestSupport
import JSON
import Testing
@testable import Encoder
import Tensor

@Suite("Model folders: loading and its errors (tiny generated BERT)")
struct ModelFolderTests {
    func embed(_ enc: SentenceEncoder, _ texts: [String]) -> [[Float]] {
        enc.embed(texts, workspace: Workspace(config: enc.config))
    }

    @Test("a tiny BERT loads through the same path and gives unit vectors; batching does not change them")
    func tinyModel() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let enc = try SentenceEncoder.load(folder: dir.path)
        #expect(enc.config == TinyModel.config())
        #expect(enc.maxSeqLength == 12)
        let texts = ["my card is late", "the card?", "a b c", "cards"]
        let together = embed(enc, texts)
        for (i, t) in texts.enumerated() {
            let alone = embed(enc, [t])[0]
            var norm: Float = 0
            for h in 0..<alone.count { norm += alone[h] * alone[h]; #expect(abs(alone[h] - together[i][h]) < 1e-5) }
            #expect(abs(norm - 1) < 1e-5)
        }
        #expect(enc.tokenizer.tokens(enc.tokenizer.encode("cards", maxLength: 12).ids) == ["[CLS]", "card", "##s", "[SEP]"])
        // Truncation keeps [CLS] and [SEP] within max_seq_length.
        let long = enc.encode([String(repeating: "card ", count: 40)])[0]
        #expect(long.ids.count == 12)
        #expect(long.wasTruncated)
        #expect(long.ids.last == enc.tokenizer.sepID)
    }

    @Test("F16 and BF16 weights are converted at load and give nearly the F32 result")
    func halfPrecision() throws {
        let f32 = TempFolder(), f16 = TempFolder(), bf16 = TempFolder()
        try TinyModel.write(to: f32.path)
        try TinyModel.write(to: f16.path, dtype: .F16)
        try TinyModel.write(to: bf16.path, dtype: .BF16)
        let ref = embed(try SentenceEncoder.load(folder: f32.path), ["my card is late"])[0]
        for (dir, tol) in [(f16.path, Float(5e-3)), (bf16.path, Float(5e-2))] {
            let v = embed(try SentenceEncoder.load(folder: dir), ["my card is late"])[0]
            for h in 0..<v.count { #expect(abs(v[h] - ref[h]) < tol, "\(dir)") }
        }
    }

    @Test("the 'bert.' name prefix and the old gamma/beta layer-norm names are accepted")
    func namingVariants() throws {
        let plain = TempFolder(), prefixed = TempFolder(), old = TempFolder()
        try TinyModel.write(to: plain.path)
        try TinyModel.write(to: prefixed.path, prefix: "bert.")
        let renamed = TinyModel.tensors(TinyModel.config()).map { (name, t) in
            (name.replacingOccurrences(of: "LayerNorm.weight", with: "LayerNorm.gamma").replacingOccurrences(of: "LayerNorm.bias", with: "LayerNorm.beta"), t)
        }
        try TinyModel.write(to: old.path, tensors: renamed)
        let ref = embed(try SentenceEncoder.load(folder: plain.path), ["the card"])[0]
        #expect(embed(try SentenceEncoder.load(folder: prefixed.path), ["the card"])[0] == ref)
        #expect(embed(try SentenceEncoder.load(folder: old.path), ["the card"])[0] == ref)
    }

    @Test("a vocabulary from tokenizer.json alone works")
    func tokenizerJSONOnly() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        try FileManager.default.removeItem(atPath: dir.path + "/vocab.txt")
        var vocab: [String: JSONValue] = [:]
        for (i, t) in TinyModel.vocab.enumerated() { vocab[t] = .int(Int64(i)) }
        let tok: JSONValue = ["normalizer": ["type": "BertNormalizer", "lowercase": true, "clean_text": true, "handle_chinese_chars": true],
                              "model": ["type": "WordPiece", "vocab": .object(vocab), "max_input_chars_per_word": 100]]
        try Data(JSONWriter.string(tok).utf8).write(to: URL(fileURLWithPath: dir.path + "/tokenizer.json"))
        let enc = try SentenceEncoder.load(folder: dir.path)
        #expect(enc.vocabularySource == "tokenizer.json")
        #expect(enc.tokenizer.tokens(enc.tokenizer.encode("My CARDS", maxLength: 12).ids) == ["[CLS]", "my", "card", "##s", "[SEP]"])
    }

    /// Loads and returns the error's text, or nil if it loaded.
    func loadError(_ dir: String) -> String? {
        do { _ = try SentenceEncoder.load(folder: dir); return nil } catch { return error.description }
    }

    @Test("corrupt or unsupported folders are refused with an error that names the file and tensor")
    func corruptFolders() throws {
        func fresh() throws -> TempFolder { let d = TempFolder(); try TinyModel.write(to: d.path); return d }
        let weights = "/model.safetensors"

        // Truncated weights.
        let a = try fresh()
        let data = try Data(contentsOf: URL(fileURLWithPath: a.path + weights))
        try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: a.path + weights))
        #expect(loadError(a.path)?.contains("outside") == true, "\(loadError(a.path) ?? "")")

        // Header size larger than the file.
        let b = try fresh()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: b.path + weights)))
        bytes.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian, Array.init))
        try Data(bytes).write(to: URL(fileURLWithPath: b.path + weights))
        #expect(loadError(b.path)?.contains("header size") == true)

        // Header that is not JSON.
        let c = try fresh()
        var cb = [UInt8](try Data(contentsOf: URL(fileURLWithPath: c.path + weights)))
        cb[8] = UInt8(ascii: "x")
        try Data(cb).write(to: URL(fileURLWithPath: c.path + weights))
        #expect(loadError(c.path)?.contains("not valid JSON") == true)

        // A missing tensor, named.
        let d = TempFolder()
        try TinyModel.write(to: d.path, tensors: TinyModel.tensors(TinyModel.config()).filter { $0.0 != "encoder.layer.1.output.dense.bias" })
        #expect(loadError(d.path)?.contains("encoder.layer.1.output.dense.bias") == true)
        #expect(loadError(d.path)?.contains("missing") == true)

        // A wrong shape, named.
        let e = TempFolder()
        try TinyModel.write(to: e.path, tensors: TinyModel.tensors(TinyModel.config()).map {
            $0.0 == "encoder.layer.0.intermediate.dense.weight" ? ($0.0, Tensor(shape: [8, 16])) : $0
        })
        let eErr = loadError(e.path) ?? ""
        #expect(eErr.contains("encoder.layer.0.intermediate.dense.weight") && eErr.contains("[8, 16]"), "\(eErr)")

        // An unsupported architecture says what is supported.
        let f = try fresh()
        try Data(#"{"model_type":"gpt2","architectures":["GPT2LMHeadModel"]}"#.utf8).write(to: URL(fileURLWithPath: f.path + "/config.json"))
        #expect(loadError(f.path)?.contains("BERT-family") == true)

        // Vocabulary size that disagrees with the config.
        let g = try fresh()
        try Data("[PAD]\n[UNK]\n".utf8).write(to: URL(fileURLWithPath: g.path + "/vocab.txt"))
        #expect(loadError(g.path)?.contains("vocab_size") == true)

        // No weights, no folder, a pytorch_model.bin only.
        let h = try fresh()
        try FileManager.default.removeItem(atPath: h.path + weights)
        try Data().write(to: URL(fileURLWithPath: h.path + "/pytorch_model.bin"))
        #expect(loadError(h.path)?.contains("only safetensors") == true)
        #expect(loadError("/nonexistent/model")?.contains("not found") == true)

        // A config value of the wrong kind.
        let i = try fresh()
        try Data(#"{"model_type":"bert","hidden_size":"big","num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":16,"vocab_size":15}"#.utf8)
            .write(to: URL(fileURLWithPath: i.path + "/config.json"))
        #expect(loadError(i.path)?.contains("hidden_size") == true)

        // A file of a few bytes.
        let j = try fresh()
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: j.path + weights))
        #expect(loadError(j.path)?.contains("8-byte") == true)
    }

    /// Found by the safetensors fuzz target: sizes read from a file trapped on overflow.
    @Test("a header size past Int.max, a shape whose product overflows and sizes too large for any encoder are refused, not trapped")
    func overflowingSizes() throws {
        let weights = "/model.safetensors"
        let a = TempFolder()
        try TinyModel.write(to: a.path)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: a.path + weights)))
        bytes.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        try Data(bytes).write(to: URL(fileURLWithPath: a.path + weights))
        #expect(loadError(a.path)?.contains("header size") == true)

        let b = TempFolder()
        let header = Array(#"{"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}}"#.utf8)
        try Data(withUnsafeBytes(of: UInt64(header.count).littleEndian, Array.init) + header).write(to: URL(fileURLWithPath: b.path + "/w.safetensors"))
        do { _ = try SafeTensorsFile(path: b.path + "/w.safetensors"); Issue.record("accepted") } catch {
            #expect(error.description.contains("too large"), "\(error)")
        }

        let c = TempFolder()
        try TinyModel.write(to: c.path)
        try Data(#"{"model_type":"bert","hidden_size":8,"num_hidden_layers":2,"num_attention_heads":2,"intermediate_size":16,"vocab_size":4611686018427387904}"#.utf8)
            .write(to: URL(fileURLWithPath: c.path + "/config.json"))
        #expect(loadError(c.path)?.contains("vocab_size") == true)
    }

    @Test("a vocab.txt with CRLF line ends loads the same as with LF")
    func crlfVocabulary() throws {
        let lf = TempFolder(), crlf = TempFolder()
        try TinyModel.write(to: lf.path)
        try TinyModel.write(to: crlf.path)
        try Data((TinyModel.vocab.joined(separator: "\r\n") + "\r\n").utf8).write(to: URL(fileURLWithPath: crlf.path + "/vocab.txt"))
        let a = try SentenceEncoder.load(folder: lf.path), b = try SentenceEncoder.load(folder: crlf.path)
        #expect(embed(a, ["my card is late"]) == embed(b, ["my card is late"]))
        #expect(b.tokenizer.tokens(b.tokenizer.encode("cards", maxLength: 12).ids) == ["[CLS]", "card", "##s", "[SEP]"])
    }
}
