import Scoring

/// What failures cost and where risk starts: the configuration file's costs, impacts,
/// misrouting table and thresholds. Immutable; every service that prices or flags reads it.
struct RiskPolicy: Sendable {
    /// Default business cost per feedback kind (the configuration file overrides them).
    static let defaultFeedbackCosts: [String: Double] = ["complaint": 10, "reinquiry": 3, "escalation": 25, "correction": 1, "confirmation": 0]

    let feedbackCosts: [String: Double]
    /// Per-intent impact weights (default 1).
    let impactWeights: [String: Double]
    let thresholds: RiskThresholds
    let flags: ConfigFile.RiskSettings
    /// misrouting[meant][answered]: the cost of that failure, when configured.
    let misrouting: [String: [String: Double]]

    init(file: ConfigFile) {
        var costs = Self.defaultFeedbackCosts
        for (k, v) in file.costs { costs[k] = v }
        feedbackCosts = costs
        impactWeights = file.impact
        thresholds = file.risk.thresholds
        flags = file.risk
        misrouting = file.misrouting
    }

    /// The cost unit: what a complaint costs.
    var unitCost: Double { feedbackCosts["complaint"] ?? 1 }

    func impact(_ label: String) -> Double { impactWeights[label] ?? 1 }

    /// The cost of answering `predicted` when `truth` was meant: the misrouting table, else
    /// the intent's impact × the cost unit.
    func cost(truth: String, predicted: String) -> Double {
        misrouting[truth]?[predicted] ?? impact(truth) * unitCost
    }
}
