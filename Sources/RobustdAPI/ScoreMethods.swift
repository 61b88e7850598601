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
    }
    public struct Params: Codable, Sendable {
        public var inputs: [Input]
        public var topK: Int?
        public var perturb: Perturb?
        public init(inputs: [Input]) { self.inputs = inputs }
    }
    public struct Result: Codable, Sendable {
        public var version: Int
        public var results: [JSONValue]
        public init(version: Int, results: [JSONValue]) { self.version = version; self.results = results }
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
        /// low_confidence, small_margin, out_of_scope, unstable, high_impact or near_failure.
        public var reason: String
        public var value: Double
        public var threshold: Double
        public init(reason: String, value: Double, threshold: Double) { self.reason = reason; self.value = value; self.threshold = threshold }
    }
    public struct Result: Codable, Sendable {
        public var version: Int
        public var scored: Int
        public var flagged: [JSONValue]
        public init(version: Int, scored: Int, flagged: [JSONValue]) { self.version = version; self.scored = scored; self.flagged = flagged }
    }
}
