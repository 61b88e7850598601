import Foundation

/// How to score.
public struct ScoreOptions: Sendable {
    /// Labels listed with their probabilities.
    public var topK = 3
    /// Typo variants scored per input for the stability check (0: none).
    public var perturbations = 0
    /// Share of words given a typo in each variant.
    public var typoRate = 0.1
    public var seed: UInt64 = 0
    public init() {}
}

/// How risky an input is.
public enum RiskLevel: String, Sendable, Codable, Equatable {
    case low, medium, high
}

/// Where risk levels start; from the configuration file.
public struct RiskThresholds: Sendable, Codable, Equatable {
    public var medium = 0.15
    public var high = 0.4
    /// A flip rate at or above this makes an input unstable.
    public var unstableFlipRate = 0.5
    public init() {}
}

/// One input's score, every component shown.
public struct InputScore: Sendable, Codable, Equatable {
    public struct LabelProbability: Sendable, Codable, Equatable { public var label: String; public var p: Double }
    public struct OutOfScope: Sendable, Codable, Equatable {
        public var mahalanobis: Double
        public var threshold: Double
        public var neighbourDistance: Double
        /// What the threshold is compared with: the combined score (neighbour distance and
        /// uncertainty, standardised) or, for versions without its calibration, the distance.
        public var score: Double
        public var flagged: Bool
    }
    public struct Stability: Sendable, Codable, Equatable {
        public var variants: Int
        public var flips: Int
        public var flipRate: Double
    }
    public struct Risk: Sendable, Codable, Equatable {
        /// 1 − calibrated confidence.
        public var pWrong: Double
        public var impact: Double
        /// pWrong × impact.
        public var score: Double
        public var level: RiskLevel
    }
    public var label: String
    /// Calibrated probability of the label (softmax at the version's temperature).
    public var confidence: Double
    /// Calibrated probability gap between the first and second labels.
    public var margin: Double
    public var top: [LabelProbability]
    public var outOfScope: OutOfScope
    public var stability: Stability?
    public var risk: Risk
    public var version: Int
    /// The text was longer than the model's limit and was cut before scoring.
    public var truncated = false
    /// What the version's normaliser changed (nil: nothing).
    public var normalised: Normalised?

    public struct Normalised: Sendable, Codable, Equatable {
        public var text: String
        public var corrections: [Normaliser.Correction]
        public init(text: String, corrections: [Normaliser.Correction]) { self.text = text; self.corrections = corrections }
    }
}

public enum Scorer {
    /// Scores `[B, D]` vectors; `variants` holds `perturbations` vectors per input, `[B·n, D]`.
    public static func score(_ v: ModelVersion, vectors: [Float], count B: Int, variants: [Float]?, perturbations n: Int,
                             options: ScoreOptions, thresholds: RiskThresholds, impact: (String) -> Double) -> [InputScore] {
        let C = v.head.classes
        let logits = v.head.logits(vectors, count: B)
        let oos = v.outOfScope.scores(vectors, count: B)
        var variantLabels: [Int] = []
        if let variants, n > 0 {
            let vl = v.head.logits(variants, count: B * n)
            variantLabels = (0..<(B * n)).map { i in argmax(vl[(i * C)..<((i + 1) * C)]) }
        }
        return (0..<B).map { b in
            let p = softmax(logits[(b * C)..<((b + 1) * C)], temperature: v.temperature)
            let order = p.indices.sorted { p[$0] > p[$1] }
            let best = order[0]
            let confidence = Double(p[best])
            let margin = confidence - (C > 1 ? Double(p[order[1]]) : 0)
            let oosScore = v.oosCalibration?.combine(neighbour: oos.neighbour[b], maxProbability: p[best]) ?? oos.neighbour[b]
            let flagged = oosScore > v.oosThreshold
            var stability: InputScore.Stability? = nil
            if n > 0, !variantLabels.isEmpty {
                let flips = (0..<n).filter { variantLabels[b * n + $0] != best }.count
                stability = .init(variants: n, flips: flips, flipRate: Double(flips) / Double(n))
            }
            let label = v.labels[best]
            let pWrong = 1 - confidence
            let w = impact(label)
            let riskScore = pWrong * w
            var level = riskScore >= thresholds.high ? 2 : (riskScore >= thresholds.medium ? 1 : 0)
            if flagged || (stability?.flipRate ?? 0) >= thresholds.unstableFlipRate { level = max(level, 1) }
            return InputScore(
                label: label, confidence: confidence, margin: margin,
                top: order.prefix(max(1, min(options.topK, C))).map { .init(label: v.labels[$0], p: Double(p[$0])) },
                outOfScope: .init(mahalanobis: Double(oos.mahalanobis[b]), threshold: Double(v.oosThreshold),
                                  neighbourDistance: Double(oos.neighbour[b]), score: Double(oosScore), flagged: flagged),
                stability: stability,
                risk: .init(pWrong: pWrong, impact: w, score: riskScore, level: [RiskLevel.low, .medium, .high][level]),
                version: v.id)
        }
    }

    @inline(__always) static func argmax(_ row: ArraySlice<Float>) -> Int {
        var best = row.startIndex
        for i in row.indices where row[i] > row[best] { best = i }
        return best - row.startIndex
    }
}
