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
            /// Resident set size of the daemon now.
            public var residentBytes: Int
            /// Bytes of weights: memory-mapped from model.safetensors, and copies made at load.
            public var mappedWeightBytes: Int
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
        public var encoder: Encoder
        public var tokenizer: TokenizerInfo
        public var loadSeconds: Double
        public var memory: Memory
        public var batching: Batching
        public var computeThreads: Int
        public init(encoder: Encoder, tokenizer: TokenizerInfo, loadSeconds: Double, memory: Memory, batching: Batching, computeThreads: Int) {
            self.encoder = encoder; self.tokenizer = tokenizer; self.loadSeconds = loadSeconds; self.memory = memory
            self.batching = batching; self.computeThreads = computeThreads
        }
    }
}

/// `embed`: sentence vectors for texts, through the shared micro-batcher.
public enum Embed: RPCRequest {
    public static let name = "embed"
    public struct Params: Codable, Sendable {
        public var texts: [String]
        public init(texts: [String]) { self.texts = texts }
    }
    public struct Result: Codable, Sendable {
        public var dimension: Int
        public var vectors: [[Float]]
        /// Tokens per text, [CLS] and [SEP] included, after truncation.
        public var tokens: [Int]
        /// Which texts were longer than the model's limit and were cut.
        public var truncated: [Bool]
        public init(dimension: Int, vectors: [[Float]], tokens: [Int], truncated: [Bool]) {
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
