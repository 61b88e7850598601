import JSON
import JSONRPC
import Rollout

/// A rollout as clients see it: its stage, the evidence so far, how far each decision is,
/// each arm's live figures and every transition with the evidence behind it.
public struct RolloutView: Codable, Sendable {
    /// How far each sequential test is on its way to a decision (log e-value over log 1/α, 0…1).
    public struct Progress: Codable, Sendable {
        /// canary → promoted: the candidate is better where they disagree.
        public var better: Double
        /// roll back: it is worse where they disagree.
        public var worse: Double
        /// roll back: it is not better by the smallest effect worth having.
        public var futile: Double
        /// roll back: its served answers draw more failure reports (canary).
        public var harm: Double
        /// shadow → canary: it is not worse by the smallest effect worth having.
        public var notWorse: Double
        public var labels: Int
        public var minLabels: Int
        /// Requests the stage has seen (shadow: scored by the candidate; canary: answered by it).
        public var requests: Int
        public var minRequests: Int
        public var maxRequests: Int
        public var stageSeconds: Double
        public var maxSeconds: Double
    }

    /// One arm's live figures over the canary.
    public struct ArmView: Codable, Sendable {
        public var version: Int
        public var requests: Int
        public var failureReports: Int
        public var failureReportsPerRequest: Double
        public var expectedCostPer1000: Double
        /// The failure reports' business cost per 1,000 requests.
        public var reportedCostPer1000: Double
        public var outOfScopeRate: Double
        public var flaggedRate: Double
        public var errorRate: Double
        public var latencyP99Ms: Double
    }

    public var id: Int
    public var candidate: Int
    public var control: Int
    public var stage: Stage
    public var createdAt: Double
    public var stageStartedAt: Double
    public var finishedAt: Double?
    /// A promotion the evidence reached that waits for rollout/advance (autoPromote off).
    public var pending: String?
    /// False while the candidate's files are loading (after a restart): the canary then routes
    /// every request to the control.
    public var candidateLoaded: Bool
    public var settings: RolloutSettings
    public var evidence: Evidence
    public var progress: Progress
    public var arms: [String: ArmView]
    public var timeline: [Transition]

    public init(_ r: Rollout, loaded: Bool, now: Double) {
        id = r.id; candidate = r.candidate; control = r.control; stage = r.stage; createdAt = r.createdAt
        stageStartedAt = r.stageStartedAt; finishedAt = r.finishedAt; pending = r.pending; candidateLoaded = loaded
        settings = r.settings; evidence = r.evidence; timeline = r.timeline
        let limits = r.stage == .canary ? r.settings.canary : r.settings.shadow
        progress = Progress(better: r.better.progress, worse: r.worse.progress, futile: r.futile.progress, harm: r.harm.progress,
                            notWorse: r.notWorse.progress, labels: r.labels, minLabels: limits.minLabels,
                            requests: r.stage == .canary ? r.stats(.candidate).requests : r.shadowRequests,
                            minRequests: limits.minRequests, maxRequests: limits.maxRequests,
                            stageSeconds: (r.finishedAt ?? now) - r.stageStartedAt, maxSeconds: limits.maxSeconds)
        arms = [:]
        for arm in Arm.allCases {
            let a = r.stats(arm)
            arms[arm.rawValue] = ArmView(version: arm == .candidate ? r.candidate : r.control, requests: a.requests,
                                         failureReports: a.failureReports, failureReportsPerRequest: a.failureReportRate,
                                         expectedCostPer1000: a.expectedCostPer1000, reportedCostPer1000: a.reportedCostPer1000,
                                         outOfScopeRate: a.outOfScopeRate,
                                         flaggedRate: a.flaggedRate, errorRate: a.errorRate, latencyP99Ms: a.latencyP99)
        }
    }
}

/// An input on which the candidate and the active version predict different intents.
public struct Disagreement: Codable, Sendable {
    public struct Answer: Codable, Sendable {
        public var label: String
        public var confidence: Double
        public init(label: String, confidence: Double) { self.label = label; self.confidence = confidence }
    }
    public var id: Int
    public var rollout: Int
    public var text: String
    public var control: Answer
    public var candidate: Answer
    /// What is at stake: the cost of serving the wrong one of the two answers, weighted by
    /// each version's confidence; the listing's order.
    public var expectedCost: Double
    public var seen: Int
    /// Occurrences sampled for the test that wait for this review.
    public var requested: Int
    /// Occurrences the test has counted.
    public var counted: Int
    public var at: Double
    public var label: String?
    /// review (counted by the shadow test) or feedback (a report about a served answer: shown, not counted).
    public var labelSource: String?
    public init(id: Int, rollout: Int, text: String, control: Answer, candidate: Answer, expectedCost: Double, seen: Int,
                requested: Int, counted: Int, at: Double, label: String?, labelSource: String?) {
        self.id = id; self.rollout = rollout; self.text = text; self.control = control; self.candidate = candidate
        self.expectedCost = expectedCost; self.seen = seen; self.requested = requested; self.counted = counted; self.at = at
        self.label = label; self.labelSource = labelSource
    }
}

/// `rollout/start`: puts a candidate version on the staged rollout (shadow first).
public enum RolloutStart: RPCRequest {
    public static let name = "rollout/start"
    public struct Params: Codable, Sendable {
        public var candidate: Int
        /// Overrides of the configured settings: any subset of RolloutSettings' keys (nested
        /// ones too), laid over the configuration's values.
        public var settings: JSONValue?
        /// Start even though the candidate failed its offline gate.
        public var force: Bool?
        public init(candidate: Int, settings: JSONValue? = nil, force: Bool? = nil) {
            self.candidate = candidate; self.settings = settings; self.force = force
        }
    }
    public typealias Result = RolloutView
}

/// `rollout/status`: the running rollout (or the one named).
public enum RolloutStatus: RPCRequest {
    public static let name = "rollout/status"
    public struct Params: Codable, Sendable {
        public var rollout: Int?
        /// Also send this connection rollout/event notifications from now on.
        public var watch: Bool?
        public init(rollout: Int? = nil, watch: Bool? = nil) { self.rollout = rollout; self.watch = watch }
    }
    public typealias Result = RolloutView
}

/// `rollout/list`: every rollout, newest first.
public enum RolloutList: RPCRequest {
    public static let name = "rollout/list"
    public typealias Params = EmptyParams
    public struct Result: Codable, Sendable {
        public var rollouts: [RolloutView]
        public init(rollouts: [RolloutView]) { self.rollouts = rollouts }
    }
}

/// `rollout/advance`: an operator moves the running rollout one stage on.
public enum RolloutAdvance: RPCRequest {
    public static let name = "rollout/advance"
    public struct Params: Codable, Sendable {
        public var rollout: Int?
        public var reason: String?
        public init(rollout: Int? = nil, reason: String? = nil) { self.rollout = rollout; self.reason = reason }
    }
    public typealias Result = RolloutView
}

/// `rollout/abort`: an operator rolls the running rollout back.
public enum RolloutAbort: RPCRequest {
    public static let name = "rollout/abort"
    public typealias Params = RolloutAdvance.Params
    public typealias Result = RolloutView
}

/// `rollout/disagreements`: the inputs where candidate and control differ, by what is at stake.
public enum RolloutDisagreements: RPCRequest {
    public static let name = "rollout/disagreements"
    public struct Params: Codable, Sendable {
        public var rollout: Int?
        /// true: only reviewed ones; false: only those waiting for a review.
        public var reviewed: Bool?
        /// Only those first seen at or after this time (seconds since 1970): a reviewer's "what is new".
        public var since: Double?
        /// Only those the test asks a review for (sampled occurrences waiting).
        public var requested: Bool?
        /// 1…1000, default 50.
        public var limit: Int?
        public var cursor: String?
        public init(rollout: Int? = nil, reviewed: Bool? = nil, since: Double? = nil, requested: Bool? = nil, limit: Int? = nil, cursor: String? = nil) {
            self.rollout = rollout; self.reviewed = reviewed; self.since = since; self.requested = requested; self.limit = limit; self.cursor = cursor
        }
    }
    public struct Result: Codable, Sendable {
        public var rollout: Int
        public var disagreements: [Disagreement]
        public var nextCursor: String?
        public init(rollout: Int, disagreements: [Disagreement], nextCursor: String?) {
            self.rollout = rollout; self.disagreements = disagreements; self.nextCursor = nextCursor
        }
    }
}

/// `rollout/review`: the right intent of one disagreement, the evidence the shadow test counts.
public enum RolloutReview: RPCRequest {
    public static let name = "rollout/review"
    public struct Params: Codable, Sendable {
        public var disagreement: Int
        public var label: String
        public init(disagreement: Int, label: String) { self.disagreement = disagreement; self.label = label }
    }
    public struct Result: Codable, Sendable {
        public var disagreement: Disagreement
        public var rollout: RolloutView
        public init(disagreement: Disagreement, rollout: RolloutView) { self.disagreement = disagreement; self.rollout = rollout }
    }
}

/// `rollout/event`: a transition, or (at most every second) new evidence.
public enum RolloutEvent: RPCNotification {
    public static let name = "rollout/event"
    public struct Params: Codable, Sendable {
        public enum Kind: String, RPCEnum { case started, transition, evidence }
        public var rollout: Int
        public var kind: Kind
        public var stage: Stage
        public var transition: Transition?
        public var evidence: Evidence
        public var progress: RolloutView.Progress
        public init(rollout: Int, kind: Kind, stage: Stage, transition: Transition?, evidence: Evidence, progress: RolloutView.Progress) {
            self.rollout = rollout; self.kind = kind; self.stage = stage; self.transition = transition; self.evidence = evidence
            self.progress = progress
        }
    }
}
