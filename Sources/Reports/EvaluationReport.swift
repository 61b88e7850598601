// Reports: records the daemon computes, stores with a version or a job, and shows on the wire
// as they are. One definition serves the domain modules (Scoring, Training), the stores and
// RobustdAPI (docs/architecture.md, "Reports").

/// A version measured on labelled data (`Evaluation` in Scoring computes it; `eval/run` shows it).
public struct TypoAccuracy: Sendable, Codable, Equatable {
    public var rate: Double
    public var accuracy: Double
    public init(rate: Double, accuracy: Double) {
        self.rate = rate; self.accuracy = accuracy
    }
}

public struct OutOfScopeReport: Sendable, Codable, Equatable {
    public var examples: Int
    /// Out-of-scope examples flagged.
    public var recall: Double
    /// Flagged examples that were out of scope.
    public var precision: Double
    /// Of the nearest-neighbour distance, out of scope against in scope.
    public var auroc: Double
    public init(examples: Int, recall: Double, precision: Double, auroc: Double) {
        self.examples = examples; self.recall = recall; self.precision = precision; self.auroc = auroc
    }
}

public struct EvaluationReport: Sendable, Codable, Equatable {
    public var version: Int
    public var examples: Int
    public var inScope: Int
    /// On in-scope examples.
    public var accuracy: Double
    public var macroF1: Double
    /// Mean cost of a request (0 when right), in the configuration's cost unit.
    public var costPerRequest: Double
    public var costPer1000: Double
    /// Mean configured misrouting cost per request (pairs without one count 0), and how
    /// many mistakes had one.
    public var misroutingCostPerRequest: Double
    public var misroutedWithCost: Int
    /// Expected calibration error of the calibrated confidence.
    public var ece: Double
    public var outOfScope: OutOfScopeReport?
    public var typos: [TypoAccuracy]
    public init(version: Int, examples: Int, inScope: Int, accuracy: Double, macroF1: Double, costPerRequest: Double,
                costPer1000: Double, misroutingCostPerRequest: Double, misroutedWithCost: Int, ece: Double,
                outOfScope: OutOfScopeReport? = nil, typos: [TypoAccuracy]) {
        self.version = version; self.examples = examples; self.inScope = inScope; self.accuracy = accuracy
        self.macroF1 = macroF1; self.costPerRequest = costPerRequest; self.costPer1000 = costPer1000
        self.misroutingCostPerRequest = misroutingCostPerRequest; self.misroutedWithCost = misroutedWithCost
        self.ece = ece; self.outOfScope = outOfScope; self.typos = typos
    }
}
