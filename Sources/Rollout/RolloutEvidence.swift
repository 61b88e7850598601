import Foundation

/// Which version answered a request during a rollout.
public enum Arm: String, Codable, CodingKeyRepresentable, Sendable, CaseIterable {
    /// The active version (the parent of the candidate).
    case control
    case candidate
}

/// The stages of a rollout, in order; `promoted` and `rolledBack` are final.
public enum Stage: String, Codable, Sendable {
    /// The candidate scores live requests off the reply's path; its answers are not served.
    case shadow
    /// A share of the traffic is answered by the candidate.
    case canary
    case promoted
    case rolledBack = "rolled-back"

    public var isFinal: Bool { self == .promoted || self == .rolledBack }
}


/// Live figures of one arm.
public struct ArmStats: Codable, Sendable, Equatable {
    /// Requests this arm answered (canary) or scored unseen (the candidate in shadow).
    public var requests = 0
    public var inputs = 0
    /// Failure reports (complaints, corrections, …) about this arm's served answers.
    public var failureReports = 0
    public var reportedCost = 0.0
    /// Σ of the model's own expected cost of its answers.
    public var expectedCost = 0.0
    public var outOfScope = 0
    public var flagged = 0
    public var errors = 0
    /// Inputs it served on which the other version would have answered differently.
    public var disagreementsServed = 0
    /// Failure reports about those.
    public var disagreementReports = 0
    /// The latest request latencies in ms (a bounded window, for the p99 guardrail).
    public var latencies: [Double] = []

    public static let latencyWindow = 512

    public var failureReportRate: Double { requests == 0 ? 0 : Double(failureReports) / Double(requests) }
    public var outOfScopeRate: Double { inputs == 0 ? 0 : Double(outOfScope) / Double(inputs) }
    public var flaggedRate: Double { inputs == 0 ? 0 : Double(flagged) / Double(inputs) }
    public var errorRate: Double { requests + errors == 0 ? 0 : Double(errors) / Double(requests + errors) }
    public var expectedCostPer1000: Double { inputs == 0 ? 0 : 1000 * expectedCost / Double(inputs) }
    /// The business cost of the failure reports about its answers, per 1,000 requests.
    public var reportedCostPer1000: Double { requests == 0 ? 0 : 1000 * reportedCost / Double(requests) }
    public var latencyP99: Double {
        guard !latencies.isEmpty else { return 0 }
        let s = latencies.sorted()
        return s[min(s.count - 1, Int(Double(s.count) * 0.99))]
    }
}

/// A change of stage, with the evidence behind it.
public struct Transition: Codable, Sendable, Equatable {
    public var from: Stage?
    public var to: Stage
    public var at: Double
    /// Who decided: "evidence", "guardrail", "limit", or "operator".
    public var by: String
    public var reason: String
    public var evidence: Evidence
}

/// The numbers a decision rests on, as they were when it was made.
public struct Evidence: Codable, Sendable, Equatable {
    public var shadowRequests: Int
    public var disagreements: Int
    public var labels: Int
    /// Mean cost saved per reviewed disagreement, as a share of the largest cost.
    public var effect: Double?
    public var betterEValue: Double
    public var worseEValue: Double
    public var futileEValue: Double
    public var canaryRequests: [String: Int]
    public var failureReports: [String: Int]
    public var harmEValue: Double
    public var notWorseEValue: Double
    /// Failure reports counted by the better/worse tests: those about inputs where the arms disagree.
    public var disagreementReports: [String: Int]
}
