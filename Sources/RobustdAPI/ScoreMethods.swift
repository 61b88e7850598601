import JSON
import JSONRPC

/// `score`: per input, the label and every component of its risk.
public enum Score: RPCRequest {
    public static let name = "score"
    public struct Input: Codable, Sendable {
        public var id: String?
        public var text: String
        public init(id: String? = nil, text: String) { self.id = id; self.text = text }
    }
    public struct Perturb: Codable, Sendable {
        /// Typo variants per input (1…32).
        public var n: Int
        /// Share of words given a typo (0…1, default 0.1).
        public var rate: Double?
        public var seed: Int?
        public init(n: Int, rate: Double? = nil, seed: Int? = nil) { self.n = n; self.rate = rate; self.seed = seed }
    }
    public struct Params: Codable, Sendable {
        public var inputs: [Input]
        public var topK: Int?
        public var perturb: Perturb?
        /// During a canary, which arm answers is decided by this key (a user or session id:
        /// the same key always gets the same version); without it, by the first input's text.
        public var routingKey: String?
        public init(inputs: [Input], routingKey: String? = nil) { self.inputs = inputs; self.routingKey = routingKey }
    }
    public struct Result: Codable, Sendable {
        public var version: Int
        public var results: [ScoredInput]
        public init(version: Int, results: [ScoredInput]) { self.version = version; self.results = results }
    }
    public static let maxInputs = 4096
    /// Most texts one request may embed, typo variants included.
    public static let maxTextsWithVariants = 16384
}

extension RPCErrorCode {
    /// No version is active: fit one with model/fit (or activate one).
    public static let noVersion = RPCErrorCode(-32021)
}

/// `risk/flag`: only the risky inputs, each with the reasons.
public enum RiskFlag: RPCRequest {
    public static let name = "risk/flag"
    public typealias Params = Score.Params
    public struct Reason: Codable, Sendable, Equatable {
        public var reason: FlagReason
        public var value: Double
        public var threshold: Double
        public init(reason: FlagReason, value: Double, threshold: Double) { self.reason = reason; self.value = value; self.threshold = threshold }
    }
    public struct Result: Codable, Sendable {
        public var version: Int
        public var scored: Int
        public var flagged: [FlaggedInput]
        public init(version: Int, scored: Int, flagged: [FlaggedInput]) { self.version = version; self.scored = scored; self.flagged = flagged }
    }
}
