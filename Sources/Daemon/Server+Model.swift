import Encoder
import Foundation
import JSON
import JSONRPC
import RobustdAPI

extension Server {
    /// `model/info` and `embed`.
    func registerModelMethods() {
        router.on(ModelInfo.self) { [unowned self] _, _ throws(RPCError) in
            guard let enc = self.encoder, let batcher = self.batcher else { throw Self.noModelError }
            let c = enc.config
            return ModelInfo.Result(
                encoder: .init(folder: enc.folder, architecture: "BertModel", hiddenSize: c.hiddenSize, layers: c.layers, heads: c.heads,
                               intermediateSize: c.intermediateSize, vocabSize: c.vocabSize, maxSeqLength: enc.maxSeqLength,
                               parameterCount: c.parameterCount, pooling: enc.pooling.rawValue, normalize: enc.normalize),
                tokenizer: .init(kind: "BertWordPiece", vocabularySource: enc.vocabularySource, lowercase: enc.tokenizer.normalizer.lowercase),
                loadSeconds: enc.loadSeconds,
                memory: .init(residentBytes: Self.residentBytes(), mappedWeightBytes: enc.mappedWeightBytes, packedWeightBytes: enc.packedWeightBytes),
                batching: .init(maxBatch: batcher.maxBatch, maxDelayMs: Int(batcher.maxDelayMs), batches: batcher.batches,
                                sequences: batcher.sequences,
                                meanBatchSize: batcher.batches == 0 ? 0 : Double(batcher.sequences) / Double(batcher.batches)),
                computeThreads: self.compute.threadCount)
        }

        router.onDeferred(Embed.self) { [unowned self] params, ctx in
            guard let batcher = self.batcher else { ctx.reply(.failure(Self.noModelError)); return }
            guard !params.texts.isEmpty else {
                ctx.reply(.failure(.invalidParams("'texts' must hold at least one text", field: "texts", expected: "a non-empty array of strings", found: "an empty array")))
                return
            }
            guard params.texts.count <= Embed.maxTexts else {
                ctx.reply(.failure(.invalidParams("'texts' holds \(params.texts.count) texts; at most \(Embed.maxTexts) per request",
                                                  field: "texts", expected: "at most \(Embed.maxTexts) texts", found: "\(params.texts.count) texts")))
                return
            }
            // The active version's encoder (its fine-tuned layers, if any) makes the vectors.
            batcher.submit(params.texts, encoder: self.activeEncoder, token: ctx.token) { result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let r):
                    ctx.reply(Embed.Result(dimension: r.dimension, vectors: (0..<r.tokens.count).map { Array(r.vector($0)) },
                                           tokens: r.tokens, truncated: r.truncated))
                }
            }
        }
    }

    static let noModelError = RPCError(.noModel, "No model loaded: start robustd with --model PATH (scripts/fetch-model fetches the reference model)")

    /// The daemon's resident set size, from /proc/self/statm.
    static func residentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
