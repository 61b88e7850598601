import Foundation

/// The promotion gate: a candidate version against its parent on the same held-out examples,
/// in business cost. Promote only if the target regions' cost falls by at least
/// `minTargetReduction` (relative) and, with `confidence`, the global cost does not rise by
/// more than `globalTolerance` of the parent's global cost: the one-sided upper bound of a
/// paired bootstrap of the per-example cost difference must stay under that allowance (a
/// non-inferiority test). McNemar's exact test on the discordant pairs is reported beside it.
public enum Gate {
    public struct Settings: Sendable, Codable, Equatable {
        /// Relative fall of the target regions' mean cost the candidate must reach (0.2 = 20%).
        public var minTargetReduction = 0.2
        /// Largest rise of the global mean cost tolerated, relative to the parent's (0.1 = 10%).
        public var globalTolerance = 0.1
        public var confidence = 0.95
        public var bootstrapSamples = 2000
        public var seed: UInt64 = 7
        public init() {}
    }

    public struct Comparison: Sendable, Codable, Equatable {
        public var examples: Int
        /// Kish's effective sample size of the weights, (Σw)² / Σw²: how many equally weighted
        /// examples the weighted ones are worth (a wide bound with few effective examples means
        /// the held-out data, not the candidate, is the problem).
        public var effectiveExamples: Double
        public var parentCost: Double
        public var candidateCost: Double
        /// candidate − parent, mean cost per example.
        public var difference: Double
        /// Bounds of the paired bootstrap interval of `difference` at the gate's confidence (one-sided each).
        public var lowerBound: Double
        public var upperBound: Double
        public var parentErrors: Int
        public var candidateErrors: Int
        /// Pairs the parent got right and the candidate wrong, and the other way round.
        public var parentOnlyCorrect: Int
        public var candidateOnlyCorrect: Int
        /// McNemar's exact two-sided p-value on the discordant pairs.
        public var mcnemarP: Double
    }

    public struct Report: Sendable, Codable, Equatable {
        public var passed: Bool
        public var target: Comparison
        public var global: Comparison
        /// (parent − candidate) / parent on the target regions (0 when the parent cost nothing there).
        public var targetReduction: Double
        /// The largest global rise allowed: globalTolerance × the parent's global cost per request.
        public var globalAllowance: Double
        public var settings: Settings
        /// Why the candidate failed (empty when it passed).
        public var reasons: [String]
    }

    /// One held-out example, both versions' costs on it (0 when right).
    public struct Pair: Sendable {
        public var parentCost: Double
        public var candidateCost: Double
        public var parentCorrect: Bool
        public var candidateCorrect: Bool
        /// How much the example stands for (production share of its intent over its share of
        /// the held-out data); costs are weighted means.
        public var weight: Double
        public init(parentCost: Double, candidateCost: Double, parentCorrect: Bool, candidateCorrect: Bool, weight: Double = 1) {
            self.parentCost = parentCost; self.candidateCost = candidateCost
            self.parentCorrect = parentCorrect; self.candidateCorrect = candidateCorrect
            self.weight = weight
        }
    }

    public static func compare(_ pairs: [Pair], settings s: Settings) -> Comparison {
        let n = pairs.count
        let W = max(1e-300, pairs.reduce(0.0) { $0 + $1.weight })
        let p = pairs.reduce(0.0) { $0 + $1.weight * $1.parentCost }, c = pairs.reduce(0.0) { $0 + $1.weight * $1.candidateCost }
        let diffs = pairs.map { $0.weight * ($0.candidateCost - $0.parentCost) }, weights = pairs.map(\.weight)
        var lower = 0.0, upper = 0.0
        if n > 0 {
            var rng = SeededRandom(seed: s.seed)
            var means: [Double] = []
            means.reserveCapacity(s.bootstrapSamples)
            for _ in 0..<max(1, s.bootstrapSamples) {
                var sum = 0.0, w = 0.0
                for _ in 0..<n {
                    let i = Int(rng.next() % UInt64(n))
                    sum += diffs[i]; w += weights[i]
                }
                means.append(w > 0 ? sum / w : 0)
            }
            means.sort()
            let tail = 1 - s.confidence
            lower = means[min(means.count - 1, Int(Double(means.count) * tail))]
            upper = means[min(means.count - 1, Int(Double(means.count) * (1 - tail)))]
        }
        let b = pairs.filter { $0.parentCorrect && !$0.candidateCorrect }.count
        let cc = pairs.filter { !$0.parentCorrect && $0.candidateCorrect }.count
        let w2 = pairs.reduce(0.0) { $0 + $1.weight * $1.weight }
        return Comparison(examples: n, effectiveExamples: w2 > 0 ? W * W / w2 : 0, parentCost: n == 0 ? 0 : p / W, candidateCost: n == 0 ? 0 : c / W,
                          difference: n == 0 ? 0 : (c - p) / W, lowerBound: lower, upperBound: upper,
                          parentErrors: pairs.filter { !$0.parentCorrect }.count, candidateErrors: pairs.filter { !$0.candidateCorrect }.count,
                          parentOnlyCorrect: b, candidateOnlyCorrect: cc, mcnemarP: mcnemarExact(b, cc))
    }

    public static func evaluate(target: [Pair], global: [Pair], settings s: Settings = Settings()) -> Report {
        let t = compare(target, settings: s), g = compare(global, settings: s)
        let reduction = t.parentCost > 0 ? (t.parentCost - t.candidateCost) / t.parentCost : 0
        var reasons: [String] = []
        if t.examples == 0 { reasons.append("no held-out examples of the target regions") }
        if t.parentCost <= 0 {
            reasons.append("the parent costs nothing on the target regions' held-out examples; there is nothing to recover")
        } else if reduction < s.minTargetReduction {
            reasons.append(String(format: "target cost fell by %.1f%% (%.4f → %.4f per request); the gate asks for %.1f%%",
                                  100 * reduction, t.parentCost, t.candidateCost, 100 * s.minTargetReduction))
        }
        let allowance = s.globalTolerance * g.parentCost
        if g.upperBound > allowance {
            reasons.append(String(format: "global cost may rise: %+.4f per request, upper %.0f%% bound %+.4f exceeds the allowance %.4f (%.0f%% of the parent's %.4f)",
                                  g.difference, 100 * s.confidence, g.upperBound, allowance, 100 * s.globalTolerance, g.parentCost))
        }
        return Report(passed: reasons.isEmpty, target: t, global: g, targetReduction: reduction, globalAllowance: allowance, settings: s, reasons: reasons)
    }

    /// Two-sided exact McNemar p-value: the binomial(b + c, ½) tail at min(b, c), doubled.
    public static func mcnemarExact(_ b: Int, _ c: Int) -> Double {
        let n = b + c
        guard n > 0 else { return 1 }
        let k = min(b, c)
        // log C(n, i) − n log 2, summed in probability space.
        var tail = 0.0
        for i in 0...k { tail += exp(logChoose(n, i) - Double(n) * log(2)) }
        return min(1, 2 * tail)
    }

    static func logChoose(_ n: Int, _ k: Int) -> Double { lgamma(Double(n + 1)) - lgamma(Double(k + 1)) - lgamma(Double(n - k + 1)) }
}
