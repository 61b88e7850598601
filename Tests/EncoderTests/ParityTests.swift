import Foundation
import RobustdTestSupport
import Testing
@testable import Encoder
import Tensor
import Tokenizer

@Suite("Parity with the reference all-MiniLM-L6-v2")
struct ParityTests {
    func encoder() throws -> SentenceEncoder {
        switch Reference.encoder {
        case .success(let e): return e
        case .failure(let e):
            Issue.record("reference model not loadable (run scripts/fetch-model): \(e)")
            throw e
        }
    }

    @Test("token ids equal the reference tokenizer's for every fixture sentence")
    func tokenIDs() throws {
        let enc = try encoder()
        #expect(Reference.items.count == 25, "fixture not found or incomplete at \(Paths.fixture.path)")
        for item in Reference.items {
            let e = enc.tokenizer.encode(item.text, maxLength: 256)
            #expect(e.ids == item.inputIDs, "\(item.name): \(enc.tokenizer.tokens(e.ids)) vs \(enc.tokenizer.tokens(item.inputIDs))")
            #expect(e.untruncatedCount == item.untruncated, "\(item.name)")
            let st = enc.tokenizer.encode(item.text.trimmingCharacters(in: .whitespacesAndNewlines), maxLength: 256)
            #expect(st.ids == item.stInputIDs, "\(item.name) (sentence-transformers' stripped text)")
        }
    }

    @Test("embeddings match the reference: cosine ≥ 0.99999 and max |diff| ≤ 1e-4, one at a time and batched")
    func embeddings() throws {
        let enc = try encoder()
        #expect(Reference.items.count == 25, "fixture not found or incomplete at \(Paths.fixture.path)")
        let ws = Workspace(config: enc.config)
        let texts = Reference.items.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
        let batched = enc.embed(texts, workspace: ws)
        for (i, item) in Reference.items.enumerated() {
            let single = enc.embed([texts[i]], workspace: ws)[0]
            for v in [single, batched[i]] {
                var dot: Float = 0, na: Float = 0, nb: Float = 0, maxDiff: Float = 0
                for h in 0..<v.count {
                    dot += v[h] * item.embedding[h]; na += v[h] * v[h]; nb += item.embedding[h] * item.embedding[h]
                    maxDiff = max(maxDiff, abs(v[h] - item.embedding[h]))
                }
                let cos = dot / (na.squareRoot() * nb.squareRoot())
                #expect(cos >= 0.99999, "\(item.name): cosine \(cos)")
                #expect(maxDiff <= 1e-4, "\(item.name): max |diff| \(maxDiff)")
            }
        }
    }

    @Test("int8: vectors close to fp32's; a version's encoder re-quantises only the layers it replaces; each precision holds only its own copies")
    func int8Encoder() throws {
        let fp32 = try encoder(), int8 = fp32.withPrecision(.int8)
        #expect(int8.model.precision == .int8 && fp32.model.quantized == nil)
        // An int8 model keeps no packed fp32 weights (53 MB for this model), an fp32 one no int8.
        #expect(int8.model.packed == nil && fp32.model.packed?.count == 6)
        let loadedInt8 = try SentenceEncoder.load(folder: fp32.folder, precision: .int8)
        #expect(loadedInt8.model.packed == nil && loadedInt8.model.quantized?.count == 6)
        #expect(int8.packedWeightBytes < fp32.packedWeightBytes / 2, "\(int8.packedWeightBytes) vs \(fp32.packedWeightBytes)")
        let fp32Top = fp32.replacingLayers([5: fp32.model.weights.layers[4]])
        let p0 = try #require(fp32.model.packed), p1 = try #require(fp32Top.model.packed)
        for i in 0..<5 { #expect(p1[i].qkv === p0[i].qkv && p1[i].ffnIn === p0[i].ffnIn, "layer \(i) re-packed") }
        #expect(p1[5].qkv !== p0[5].qkv)
        let ws = Workspace(config: fp32.config)
        let texts = Reference.items.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
        let a = fp32.embed(texts, workspace: ws), b = int8.embed(texts, workspace: ws)
        for i in texts.indices { #expect(zip(a[i], b[i]).reduce(0) { $0 + $1.0 * $1.1 } >= 0.98, "\(Reference.items[i].name)") }
        let top = int8.replacingLayers([5: fp32.model.weights.layers[4]])
        let q0 = try #require(int8.model.quantized), q1 = try #require(top.model.quantized)
        for i in 0..<5 { #expect(q1[i].qkv === q0[i].qkv && q1[i].ffnOut === q0[i].ffnOut, "layer \(i) re-quantised") }
        #expect(q1[5].qkv !== q0[5].qkv)
        #expect(q1[5].qkv.inputs == q0[4].qkv.inputs)
    }

    @Test("the reference folder loads with the expected description")
    func description() throws {
        let enc = try encoder()
        #expect(enc.config.hiddenSize == 384)
        #expect(enc.config.layers == 6)
        #expect(enc.maxSeqLength == 256)
        #expect(enc.pooling == .mean)
        #expect(enc.normalize)
        #expect(enc.config.parameterCount > 22_000_000 && enc.config.parameterCount < 23_000_000)
    }
}
