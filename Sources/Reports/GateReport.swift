// Reports: records the daemon computes, stores with a version or a job, and shows on the wire
// as they are. One definition serves the domain modules (Scoring, Training), the stores and
// RobustdAPI (docs/architecture.md, "Reports").

/// The offline gate's settings (`Gate` in Scoring applies them; `[gate]` in the configuration).
public struct GateSettings: Sendable, Codable, Equatable {
    /// Relative fall of the target regions' mean cost the candidate must reach (0.2 = 20%).
    public var minTargetReduction = 0.2
    /// Largest rise of the global mean cost tolerated, relative to the parent's (0.1 = 10%).
    public var globalTolerance = 0.1
    public var confidence = 0.95
    public var bootstrapSamples = 2000
    public var seed: UInt64 = 7
    /// Word typo rates of the perturbed copies of the held-out data (one seeded copy each).
    public var typoRates: [Double] = [0.1, 0.2]
    public var typoSeed: UInt64 = 11
    /// Largest rise of the share of in-scope held-out inputs called out of scope (0.05 = 5 points).
    public var maxOutOfScopeIncrease = 0.05
    public var rule: Rule = .screen

    public enum Rule: String, Sendable, Codable {
        /// Fail on evidence of harm: a significant rise of the cost, clean or with typos.
        case screen
        /// Fail unless a rise beyond the tolerance is ruled out (the upper bound).
        case nonInferiority = "non-inferiority"
    }

    public init() {}

    enum CodingKeys: String, CodingKey {
        case minTargetReduction, globalTolerance, confidence, bootstrapSamples, seed, typoRates, typoSeed, maxOutOfScopeIncrease, rule
    }

    public init(from decoder: Decoder) throws {
        // Reports written before the typo and out-of-scope checks lack their keys.
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GateSettings()
        minTargetReduction = try c.decodeIfPresent(Double.self, forKey: .minTargetReduction) ?? d.minTargetReduction
        globalTolerance = try c.decodeIfPresent(Double.self, forKey: .globalTolerance) ?? d.globalTolerance
        confidence = try c.decodeIfPresent(Double.self, forKey: .confidence) ?? d.confidence
        bootstrapSamples = try c.decodeIfPresent(Int.self, forKey: .bootstrapSamples) ?? d.bootstrapSamples
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        typoRates = try c.decodeIfPresent([Double].self, forKey: .typoRates) ?? []
        typoSeed = try c.decodeIfPresent(UInt64.self, forKey: .typoSeed) ?? d.typoSeed
        maxOutOfScopeIncrease = try c.decodeIfPresent(Double.self, forKey: .maxOutOfScopeIncrease) ?? d.maxOutOfScopeIncrease
        rule = try c.decodeIfPresent(Rule.self, forKey: .rule) ?? .nonInferiority
    }
}

/// The comparison on the held-out data with seeded typos at one rate.
public struct GatePerturbed: Sendable, Codable, Equatable {
    public var typoRate: Double
    public var comparison: GateComparison
    public var allowance: Double
    public var parentAccuracy: Double
    public var candidateAccuracy: Double
    public init(typoRate: Double, comparison: GateComparison, allowance: Double, parentAccuracy: Double,
                candidateAccuracy: Double) {
        self.typoRate = typoRate; self.comparison = comparison; self.allowance = allowance
        self.parentAccuracy = parentAccuracy; self.candidateAccuracy = candidateAccuracy
    }
}

/// Shares of in-scope held-out inputs each version calls out of scope.
public struct GateOutOfScopeCheck: Sendable, Codable, Equatable {
    public var examples: Int
    public var parentRate: Double
    public var candidateRate: Double
    /// The same at the largest typo rate (nil without typo copies).
    public var parentRateWithTypos: Double?
    public var candidateRateWithTypos: Double?
    public init(examples: Int, parentRate: Double, candidateRate: Double, parentRateWithTypos: Double? = nil,
                candidateRateWithTypos: Double? = nil) {
        self.examples = examples; self.parentRate = parentRate; self.candidateRate = candidateRate
        self.parentRateWithTypos = parentRateWithTypos; self.candidateRateWithTypos = candidateRateWithTypos
    }
}

public struct GateComparison: Sendable, Codable, Equatable {
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
    public init(examples: Int, effectiveExamples: Double, parentCost: Double, candidateCost: Double,
                difference: Double, lowerBound: Double, upperBound: Double, parentErrors: Int, candidateErrors: Int,
                parentOnlyCorrect: Int, candidateOnlyCorrect: Int, mcnemarP: Double) {
        self.examples = examples; self.effectiveExamples = effectiveExamples; self.parentCost = parentCost
        self.candidateCost = candidateCost; self.difference = difference; self.lowerBound = lowerBound
        self.upperBound = upperBound; self.parentErrors = parentErrors; self.candidateErrors = candidateErrors
        self.parentOnlyCorrect = parentOnlyCorrect; self.candidateOnlyCorrect = candidateOnlyCorrect
        self.mcnemarP = mcnemarP
    }
}

/// The offline gate's report (`Gate` in Scoring computes it): its settings, the comparisons of
/// candidate and parent on the held-out data, clean and with typos, and the out-of-scope check.
public struct GateReport: Sendable, Codable, Equatable {
    public var passed: Bool
    public var target: GateComparison
    public var global: GateComparison
    /// (parent − candidate) / parent on the target regions (0 when the parent cost nothing there).
    public var targetReduction: Double
    /// The largest global rise allowed: globalTolerance × the parent's global cost per request.
    public var globalAllowance: Double
    public var settings: GateSettings
    /// Why the candidate failed (empty when it passed).
    public var reasons: [String]
    /// The held-out data with seeded typos, one entry per rate.
    public var perturbed: [GatePerturbed]?
    public var outOfScope: GateOutOfScopeCheck?
    public init(passed: Bool, target: GateComparison, global: GateComparison, targetReduction: Double,
                globalAllowance: Double, settings: GateSettings, reasons: [String], perturbed: [GatePerturbed]? = nil,
                outOfScope: GateOutOfScopeCheck? = nil) {
        self.passed = passed; self.target = target; self.global = global; self.targetReduction = targetReduction
        self.globalAllowance = globalAllowance; self.settings = settings; self.reasons = reasons
        self.perturbed = perturbed; self.outOfScope = outOfScope
    }
}
