import JSON
import JSONRPC

/// How risky a scored input is: `low`, `medium` or `high` (docs/risk-model.md).
public enum RiskLevel: String, RPCEnum, Equatable {
    case low, medium, high
}

/// Why `risk/flag` flagged an input.
public enum FlagReason: String, RPCEnum, Equatable {
    case lowConfidence = "low_confidence"
    case smallMargin = "small_margin"
    case outOfScope = "out_of_scope"
    case unstable
    case highImpact = "high_impact"
    case nearFailure = "near_failure"
}

/// One input as `score` answers it: the label, the calibrated probabilities, the out-of-scope
/// check, stability under typos (when asked for), the risk and the version that answered.
public struct ScoredInput: Codable, Sendable, Equatable {
    public struct LabelProbability: Codable, Sendable, Equatable {
        public var label: String
        public var p: Double
        public init(label: String, p: Double) { self.label = label; self.p = p }
    }
    public struct OutOfScope: Codable, Sendable, Equatable {
        public var mahalanobis: Double
        public var threshold: Double
        public var neighbourDistance: Double
        /// What `threshold` is compared with: the combined score (the neighbour distance and
        /// 1 − the confidence, each standardised on in-scope held-out data, summed), or the
        /// neighbour distance for versions fitted before it (docs/risk-model.md).
        public var score: Double
        public var flagged: Bool
        public init(mahalanobis: Double, threshold: Double, neighbourDistance: Double, score: Double, flagged: Bool) {
            self.mahalanobis = mahalanobis; self.threshold = threshold; self.neighbourDistance = neighbourDistance
            self.score = score; self.flagged = flagged
        }
    }
    public struct Stability: Codable, Sendable, Equatable {
        public var variants: Int
        public var flips: Int
        public var flipRate: Double
        public init(variants: Int, flips: Int, flipRate: Double) { self.variants = variants; self.flips = flips; self.flipRate = flipRate }
    }
    public struct Risk: Codable, Sendable, Equatable {
        /// 1 − calibrated confidence.
        public var pWrong: Double
        public var impact: Double
        /// pWrong × impact.
        public var score: Double
        public var level: RiskLevel
        public init(pWrong: Double, impact: Double, score: Double, level: RiskLevel) {
            self.pWrong = pWrong; self.impact = impact; self.score = score; self.level = level
        }
    }
    /// The client's id of the input, when it gave one.
    public var id: String?
    public var label: String
    /// Calibrated probability of the label.
    public var confidence: Double
    /// Calibrated probability gap between the first and second labels.
    public var margin: Double
    public var top: [LabelProbability]
    public var outOfScope: OutOfScope
    public var stability: Stability?
    public var risk: Risk
    public var version: Int
    /// The text was longer than the model's limit and was cut before scoring.
    public var truncated: Bool
    /// What the version's spelling normaliser changed before the encoder read the text
    /// (absent: nothing).
    public var normalised: Normalised?
    /// Answered from the score cache (score only).
    public var cached: Bool?

    public struct Normalised: Codable, Sendable, Equatable {
        public struct Correction: Codable, Sendable, Equatable {
            public var from: String
            public var to: String
            /// Weighted edit cost (1 per unit edit; neighbouring keys, doubled letters and swaps cost less).
            public var cost: Double
            public init(from: String, to: String, cost: Double) { self.from = from; self.to = to; self.cost = cost }
        }
        /// The text the encoder read.
        public var text: String
        public var corrections: [Correction]
        public init(text: String, corrections: [Correction]) { self.text = text; self.corrections = corrections }
    }

    public init(id: String? = nil, label: String, confidence: Double, margin: Double, top: [LabelProbability], outOfScope: OutOfScope,
                stability: Stability? = nil, risk: Risk, version: Int, truncated: Bool = false, normalised: Normalised? = nil,
                cached: Bool? = nil) {
        self.id = id; self.label = label; self.confidence = confidence; self.margin = margin; self.top = top
        self.outOfScope = outOfScope; self.stability = stability; self.risk = risk; self.version = version
        self.truncated = truncated; self.normalised = normalised; self.cached = cached
    }
}

/// One input `risk/flag` flagged: its place in the request, its text, its score and the reasons.
public struct FlaggedInput: Codable, Sendable, Equatable {
    public var index: Int
    public var text: String
    /// The score, its fields at the same level as `index`, `text` and `reasons` on the wire.
    public var score: ScoredInput
    public var reasons: [RiskFlag.Reason]

    public init(index: Int, text: String, score: ScoredInput, reasons: [RiskFlag.Reason]) {
        self.index = index; self.text = text; self.score = score; self.reasons = reasons
    }

    enum CodingKeys: String, CodingKey { case index, text, reasons }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        text = try c.decode(String.self, forKey: .text)
        reasons = try c.decode([RiskFlag.Reason].self, forKey: .reasons)
        score = try ScoredInput(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try score.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(text, forKey: .text)
        try c.encode(reasons, forKey: .reasons)
    }
}
