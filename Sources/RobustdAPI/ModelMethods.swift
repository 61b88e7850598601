import Foundation
import JSON
import JSONRPC

/// `model/info`: what model is resident.
public enum ModelInfo: RPCRequest {
    public static let name = "model/info"
    public typealias Params = EmptyParams

    public struct Result: Codable, Sendable {
        public struct Encoder: Codable, Sendable {
            public var folder: String
            public var architecture: String
            public var hiddenSize: Int
            public var layers: Int
            public var heads: Int
            public var intermediateSize: Int
            public var vocabSize: Int
            public var maxSeqLength: Int
            public var parameterCount: Int
            public var pooling: String
            public var normalize: Bool
            public init(folder: String, architecture: String, hiddenSize: Int, layers: Int, heads: Int, intermediateSize: Int,
                        vocabSize: Int, maxSeqLength: Int, parameterCount: Int, pooling: String, normalize: Bool) {
                self.folder = folder; self.architecture = architecture; self.hiddenSize = hiddenSize; self.layers = layers
                self.heads = heads; self.intermediateSize = intermediateSize; self.vocabSize = vocabSize
                self.maxSeqLength = maxSeqLength; self.parameterCount = parameterCount; self.pooling = pooling; self.normalize = normalize
            }
        }
        public struct TokenizerInfo: Codable, Sendable {
            public var kind: String
            public var vocabularySource: String
            public var lowercase: Bool
            public init(kind: String, vocabularySource: String, lowercase: Bool) {
                self.kind = kind; self.vocabularySource = vocabularySource; self.lowercase = lowercase
            }
        }
        public struct Memory: Codable, Sendable {
            /// Resident set size of the daemon now (the mapped model's pages count only where
            /// read since load).
            public var residentBytes: Int
            /// Bytes of model.safetensors mapped read-only.
            public var mappedWeightBytes: Int
            /// Bytes of the copies made at load: the fused QKV and the products' copies for the
            /// precision in use (packed fp32 panels, or int8 weights).
            public var packedWeightBytes: Int
            public init(residentBytes: Int, mappedWeightBytes: Int, packedWeightBytes: Int) {
                self.residentBytes = residentBytes; self.mappedWeightBytes = mappedWeightBytes; self.packedWeightBytes = packedWeightBytes
            }
        }
        public struct Batching: Codable, Sendable {
            public var maxBatch: Int
            public var maxDelayMs: Int
            public var batches: Int
            public var sequences: Int
            public var meanBatchSize: Double
            public init(maxBatch: Int, maxDelayMs: Int, batches: Int, sequences: Int, meanBatchSize: Double) {
                self.maxBatch = maxBatch; self.maxDelayMs = maxDelayMs; self.batches = batches; self.sequences = sequences
                self.meanBatchSize = meanBatchSize
            }
        }
        /// The CPU kernels in use: chosen at start from what the CPU reports (`robustd --kernels`).
        public struct KernelInfo: Codable, Sendable {
            /// The CPU's features the dispatcher looks at, e.g. "avx2+fma", "avx512vnni".
            public var cpuFeatures: [String]
            /// fp32 variant: baseline, avx2 or avx512.
            public var fp32: String
            /// int8 product variant: baseline, avx2, avxvnni or avx512vnni.
            public var int8: String
            /// The fp32 variants this CPU runs.
            public var available: [String]
            /// The encoder's layer products serving the active version: fp32 or int8 (the
            /// version's own, from `model/fit {precision}`, else the daemon's).
            public var precision: String
            /// The daemon's `--precision`: versions without their own are served with it.
            public var defaultPrecision: String
            public init(cpuFeatures: [String], fp32: String, int8: String, available: [String], precision: String, defaultPrecision: String) {
                self.cpuFeatures = cpuFeatures; self.fp32 = fp32; self.int8 = int8; self.available = available; self.precision = precision
                self.defaultPrecision = defaultPrecision
            }
        }
        public var encoder: Encoder
        public var tokenizer: TokenizerInfo
        public var loadSeconds: Double
        public var memory: Memory
        public var batching: Batching
        public var computeThreads: Int
        public var kernels: KernelInfo
        public init(encoder: Encoder, tokenizer: TokenizerInfo, loadSeconds: Double, memory: Memory, batching: Batching, computeThreads: Int,
                    kernels: KernelInfo) {
            self.encoder = encoder; self.tokenizer = tokenizer; self.loadSeconds = loadSeconds; self.memory = memory
            self.batching = batching; self.computeThreads = computeThreads; self.kernels = kernels
        }
    }
}

/// `embed`: sentence vectors for texts, through the shared micro-batcher.
public enum Embed: RPCRequest {
    public static let name = "embed"
    /// How the vectors travel: JSON numbers, or base64 of little-endian float32 (as the
    /// OpenAI embeddings API does): about a quarter of the bytes, and exact.
    public enum Encoding: String, RPCEnum { case float, base64 }
    public struct Params: Codable, Sendable {
        public var texts: [String]
        /// Default `float`.
        public var encoding: Encoding?
        public init(texts: [String], encoding: Encoding? = nil) { self.texts = texts; self.encoding = encoding }
    }
    /// The vectors, as the request asked.
    public enum Vectors: Codable, Sendable, Equatable {
        case float([[Float]])
        case base64([String])

        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode([String].self) { self = .base64(s) } else { self = .float(try c.decode([[Float]].self)) }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self {
            case .float(let v): try c.encode(v)
            case .base64(let v): try c.encode(v)
            }
        }

        /// The vectors as floats, whichever way they travelled (nil: a base64 string is damaged).
        public var floats: [[Float]]? {
            switch self {
            case .float(let v): return v
            case .base64(let v):
                var out: [[Float]] = []
                for s in v {
                    guard let d = Data(base64Encoded: s), d.count % 4 == 0 else { return nil }
                    out.append(d.withUnsafeBytes { raw in
                        (0..<(d.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                    })
                }
                return out
            }
        }

        /// base64 of `vector` as little-endian float32.
        public static func base64(_ vector: some Collection<Float>) -> String {
            // The floats' own bytes, each bit pattern in little-endian order (a no-op here).
            let words = vector.map { $0.bitPattern.littleEndian }
            return words.withUnsafeBytes { Data($0).base64EncodedString() }
        }
    }
    public struct Result: Codable, Sendable {
        public var dimension: Int
        public var vectors: Vectors
        /// Tokens per text, [CLS] and [SEP] included, after truncation.
        public var tokens: [Int]
        /// Which texts were longer than the model's limit and were cut.
        public var truncated: [Bool]
        public init(dimension: Int, vectors: Vectors, tokens: [Int], truncated: [Bool]) {
            self.dimension = dimension; self.vectors = vectors; self.tokens = tokens; self.truncated = truncated
        }
    }
    /// Most texts in one request.
    public static let maxTexts = 4096
}

extension RPCErrorCode {
    /// The daemon was started without a model.
    public static let noModel = RPCErrorCode(-32020)
}
