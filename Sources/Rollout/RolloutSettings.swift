import Foundation

/// Configuration of a rollout (docs/rollout.md explains each number).
public struct RolloutSettings: Codable, Sendable, Equatable {
    /// Tolerated probability of promoting a candidate that is not better than the active
    /// version where they disagree (the shadow test's α).
    public var falsePromotionRate = 0.05
    /// Tolerated probability of rolling back a candidate that is at least `minEffect` better
    /// (the futility test's α), and of rolling back one whose complaint rate is no higher
    /// than the control's (the canary harm test's α).
    public var falseRollbackRate = 0.05
    /// The smallest effect worth detecting: the mean cost saved per disagreement, as a share
    /// of the largest cost one answer can have (0.1: one disagreement in ten turned from a
    /// costly mistake into a right answer, net).
    public var minEffect = 0.1
    /// Share of the traffic the candidate answers in canary.
    public var canaryShare = 0.25
    /// Share of disagreeing occurrences sampled for the test: each sampled occurrence counts
    /// once its input is reviewed (at once when it already is), so that the test weighs inputs
    /// as the traffic does.
    public var reviewShare = 0.2
    public var shadow = Limits(minRequests: 200, maxRequests: 100_000, minLabels: 10, maxLabels: 500, maxSeconds: 7 * 86_400)
    public var canary = Limits(minRequests: 300, maxRequests: 20_000, minLabels: 0, maxLabels: 1_000_000, maxSeconds: 7 * 86_400)
    public var guardrails = Guardrails()
    /// On: every transition is made by the evidence. Off: rollbacks are (a guardrail or a
    /// test that says "worse" acts at once), promotions wait for rollout/advance.
    public var autoPromote = true

    public struct Limits: Codable, Sendable, Equatable {
        /// Requests (seen by the candidate) before the stage may end with a promotion.
        public var minRequests: Int
        /// Requests after which a stage with no decision ends, rolled back as inconclusive.
        public var maxRequests: Int
        /// Reviewed disagreements before the shadow may end with a promotion.
        public var minLabels: Int
        /// Reviewed disagreements after which the stage ends as inconclusive.
        public var maxLabels: Int
        public var maxSeconds: Double
        public init(minRequests: Int, maxRequests: Int, minLabels: Int, maxLabels: Int, maxSeconds: Double) {
            self.minRequests = minRequests; self.maxRequests = maxRequests; self.minLabels = minLabels
            self.maxLabels = maxLabels; self.maxSeconds = maxSeconds
        }
    }

    /// Checks that roll back at once in canary, once each arm has `minRequests`.
    public struct Guardrails: Codable, Sendable, Equatable {
        /// Candidate's p99 latency over the control's.
        public var latencyP99Ratio = 2.0
        /// Candidate's out-of-scope rate minus the control's.
        public var outOfScopeIncrease = 0.05
        /// Share of the candidate's requests that failed.
        public var errorRate = 0.01
        public var minRequests = 200
        public init() {}
    }

    public init() {}

    /// The settings' problems, for a clear error (empty when valid).
    public func problems() -> [String] {
        var out: [String] = []
        func unit(_ name: String, _ v: Double, open: Bool = true) {
            if !(v > 0 && (open ? v < 1 : v <= 1)) { out.append("\(name) must be in (0, 1\(open ? ")" : "]"), got \(v)") }
        }
        unit("falsePromotionRate", falsePromotionRate)
        unit("falseRollbackRate", falseRollbackRate)
        unit("minEffect", minEffect, open: false)
        unit("canaryShare", canaryShare)
        unit("reviewShare", reviewShare, open: false)
        for (name, l) in [("shadow", shadow), ("canary", canary)] {
            if l.minRequests < 0 || l.maxRequests < l.minRequests { out.append("\(name): need 0 ≤ minRequests ≤ maxRequests") }
            if l.minLabels < 0 || l.maxLabels < l.minLabels { out.append("\(name): need 0 ≤ minLabels ≤ maxLabels") }
            if !(l.maxSeconds > 0) { out.append("\(name).maxSeconds must be positive") }
        }
        if !(guardrails.latencyP99Ratio >= 1) { out.append("guardrails.latencyP99Ratio must be ≥ 1") }
        if !(guardrails.outOfScopeIncrease >= 0 && guardrails.outOfScopeIncrease <= 1) { out.append("guardrails.outOfScopeIncrease must be in [0, 1]") }
        if !(guardrails.errorRate >= 0 && guardrails.errorRate <= 1) { out.append("guardrails.errorRate must be in [0, 1]") }
        return out
    }
}
