import Datasets
import Foundation

/// A dataset as listed.
public struct DatasetInfo: Sendable, Equatable, Codable {
    public var id: Int64
    public var name: String
    public var rows: Int
    public var labels: Int
    public var train: Int
    public var validation: Int
    public var test: Int
    public var source: String
    public var createdAt: Double
}

/// Where a version is in its life. The active version is a separate pointer.
public enum VersionStatus: String, Sendable, Codable {
    /// Its files are being written; a restart turns it into `failed`.
    case writing
    /// Built and usable (the first version, or one that passed its gate).
    case ready
    /// Built, waiting for a gate decision or a person.
    case candidate
    case rejected
    case failed
}

/// A version as stored.
public struct VersionRecord: Sendable, Equatable {
    public var id: Int
    public var parent: Int?
    public var createdAt: Double
    public var method: String
    public var dataset: String?
    public var status: VersionStatus
    /// The fit or gate report, as JSON text.
    public var report: String
}

/// Where a fine-tune job is.
public enum JobState: String, Sendable, Codable {
    /// Waiting for its time window.
    case scheduled
    /// Waiting for the job before it.
    case queued
    case running
    case succeeded
    case failed
    case cancelled
    /// The daemon stopped (or was killed) while it was scheduled, queued or running.
    case interrupted
    public var isFinished: Bool { ![.scheduled, .queued, .running].contains(self) }
}

/// A fine-tune job as stored: its parameters, last progress and result as JSON text.
public struct JobRecord: Sendable, Equatable {
    public var id: Int
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    public var state: JobState
    public var params: String
    public var progress: String
    public var result: String?
    public var error: String?
    public var version: Int?
    /// The replica running it, or that created it (a fleet's store; empty otherwise).
    public var owner: String
    /// A replica other than its owner asked for it to be cancelled (a fleet's store).
    public var cancelRequested: Bool
    public init(id: Int, createdAt: Double, startedAt: Double? = nil, finishedAt: Double? = nil, state: JobState, params: String,
                progress: String = "{}", result: String? = nil, error: String? = nil, version: Int? = nil, owner: String = "",
                cancelRequested: Bool = false) {
        self.id = id; self.createdAt = createdAt; self.startedAt = startedAt; self.finishedAt = finishedAt; self.state = state
        self.params = params; self.progress = progress; self.result = result; self.error = error; self.version = version
        self.owner = owner; self.cancelRequested = cancelRequested
    }
}

/// A failure case (or a confirmation) reported by a client.
public struct FeedbackRecord: Sendable, Equatable {
    public var id: Int
    public var idempotencyKey: String?
    public var inputID: String?
    public var text: String
    /// complaint, reinquiry, escalation, correction or confirmation.
    public var kind: String
    /// The business cost of this case, in the configuration's unit.
    public var cost: Double
    public var correctLabel: String?
    public var predictedLabel: String
    public var version: Int
    /// When it happened (seconds since 1970), as reported.
    public var at: Double
    /// When it was committed.
    public var recordedAt: Double
    /// The input's sentence vector, for clustering failure modes (empty when not loaded).
    public var vector: [Float]

    public init(id: Int = 0, idempotencyKey: String?, inputID: String?, text: String, kind: String, cost: Double, correctLabel: String?,
                predictedLabel: String, version: Int, at: Double, recordedAt: Double, vector: [Float]) {
        self.id = id; self.idempotencyKey = idempotencyKey; self.inputID = inputID; self.text = text; self.kind = kind; self.cost = cost
        self.correctLabel = correctLabel; self.predictedLabel = predictedLabel; self.version = version; self.at = at
        self.recordedAt = recordedAt; self.vector = vector
    }
}

public struct FeedbackFilter: Sendable {
    public var idempotencyKey: String?
    public var kind: String?
    public var label: String?
    public var version: Int?
    public var since: Double?
    public var until: Double?
    public var limit = 100
    public var withVectors = false
    /// Only reports after this one in the listing's order (newest first): a page's last (at, id).
    public var after: (at: Double, id: Int)?
    public init(idempotencyKey: String? = nil, kind: String? = nil, label: String? = nil, version: Int? = nil,
                since: Double? = nil, until: Double? = nil, limit: Int = 100, withVectors: Bool = false, after: (at: Double, id: Int)? = nil) {
        self.idempotencyKey = idempotencyKey; self.kind = kind; self.label = label; self.version = version
        self.since = since; self.until = until; self.limit = limit; self.withVectors = withVectors; self.after = after
    }
}

/// Scored inputs counted per hour, version and predicted label.
public struct TrafficCount: Sendable, Equatable {
    public var hour: Int
    public var version: Int
    public var label: String
    public var count: Int
    /// Σ (1 − calibrated confidence) over those inputs: the errors the model expects to have made.
    public var expectedErrors: Double
    public init(hour: Int, version: Int, label: String, count: Int, expectedErrors: Double) {
        self.hour = hour; self.version = version; self.label = label; self.count = count; self.expectedErrors = expectedErrors
    }
}

/// Traffic of one predicted label over a window.
public struct TrafficTotal: Sendable, Equatable {
    public var count: Int
    public var expectedErrors: Double
    public init(count: Int, expectedErrors: Double) { self.count = count; self.expectedErrors = expectedErrors }
}

/// One rollout of a candidate: its stage, and its whole state as the Rollout module encodes it.
public struct RolloutRecord: Sendable, Equatable {
    public var id: Int
    public var candidate: Int
    public var control: Int
    /// shadow, canary, promoted or rolled-back.
    public var stage: String
    /// The rollout's state (JSON).
    public var state: String
    public var createdAt: Double
    public var updatedAt: Double
    public init(id: Int, candidate: Int, control: Int, stage: String, state: String, createdAt: Double, updatedAt: Double) {
        self.id = id; self.candidate = candidate; self.control = control; self.stage = stage; self.state = state
        self.createdAt = createdAt; self.updatedAt = updatedAt
    }

    public var isRunning: Bool { stage == "shadow" || stage == "canary" }
}

/// An input on which the candidate and the active version predict different intents.
public struct DisagreementRecord: Sendable, Equatable {
    public var id: Int
    public var rollout: Int
    public var text: String
    public var controlLabel: String
    public var candidateLabel: String
    public var controlConfidence: Double
    public var candidateConfidence: Double
    /// What is at stake: the cost of serving the wrong one of the two answers, weighted by each
    /// version's confidence (the ranking of rollout/disagreements).
    public var expectedCost: Double
    /// How many times the input was seen disagreeing.
    public var seen: Int
    /// Occurrences sampled for the shadow's test that wait for this review (each counts once
    /// the label is given; docs/rollout.md).
    public var requested: Int
    /// Occurrences counted by the test so far.
    public var counted: Int
    public var at: Double
    /// The label, once given.
    public var label: String?
    /// "review": asked for without knowing which version is right (counted by the tests);
    /// "feedback": a failure report or confirmation about a served answer (shown, not counted).
    public var labelSource: String?
    public var labelledAt: Double?
    public init(id: Int = 0, rollout: Int, text: String, controlLabel: String, candidateLabel: String, controlConfidence: Double,
                candidateConfidence: Double, expectedCost: Double, seen: Int = 1, requested: Int = 0, counted: Int = 0, at: Double,
                label: String? = nil, labelSource: String? = nil, labelledAt: Double? = nil) {
        self.requested = requested; self.counted = counted
        self.id = id; self.rollout = rollout; self.text = text; self.controlLabel = controlLabel; self.candidateLabel = candidateLabel
        self.controlConfidence = controlConfidence; self.candidateConfidence = candidateConfidence; self.expectedCost = expectedCost
        self.seen = seen; self.at = at; self.label = label; self.labelSource = labelSource; self.labelledAt = labelledAt
    }
}

/// One file of a version's folder, as the shared store keeps it.
public struct VersionFile: Sendable, Equatable {
    /// Relative to the version's folder ("manifest.json", "adapter/adapter_config.json").
    public var path: String
    public var bytes: [UInt8]
    /// Hex sha256 of `bytes`, checked when the file is cached on a replica.
    public var sha256: String
    public init(path: String, bytes: [UInt8], sha256: String) { self.path = path; self.bytes = bytes; self.sha256 = sha256 }
}

/// A replica of a fleet, as it last reported itself.
public struct ReplicaInfo: Sendable, Equatable {
    public var name: String
    public var host: String
    public var pid: Int
    public var startedAt: Double
    public var seenAt: Double
    public var activeVersion: Int?
    public var robustdVersion: String
    public init(name: String, host: String, pid: Int, startedAt: Double, seenAt: Double, activeVersion: Int?, robustdVersion: String) {
        self.name = name; self.host = host; self.pid = pid; self.startedAt = startedAt; self.seenAt = seenAt
        self.activeVersion = activeVersion; self.robustdVersion = robustdVersion
    }
}

/// Durable state behind one interface. SQLite is the embedded implementation; a fleet would
/// put PostgreSQL behind the same calls (docs/architecture.md).
///
/// - Important: Implementations are used from one thread at a time (the daemon's store thread).
public protocol Store: AnyObject {
    /// Stores a validated dataset in one transaction. With `replace`, an existing dataset of the
    /// same name is replaced in the same transaction; without, a name in use is a conflict.
    func importDataset(name: String, plan: ImportPlan, source: String, replace: Bool) throws(StoreError) -> DatasetInfo
    func datasets() throws(StoreError) -> [DatasetInfo]
    func dataset(named name: String) throws(StoreError) -> DatasetInfo?
    /// The examples of a dataset, in import order, optionally of one split.
    func examples(dataset: Int64, split: Split?) throws(StoreError) -> [Example]

    /// Reserves a version id (status `writing`) before its files are written.
    func createVersion(parent: Int?, method: String, dataset: String?) throws(StoreError) -> Int
    /// Records a version's files as complete, with its report; optionally makes it active, atomically.
    func finishVersion(id: Int, status: VersionStatus, report: String, activate: Bool) throws(StoreError)
    func versions() throws(StoreError) -> [VersionRecord]
    func activeVersion() throws(StoreError) -> Int?
    func setActive(_ id: Int) throws(StoreError)

    /// Commits a report; a report whose idempotency key was seen before is not stored again
    /// (the first one is returned, with `duplicate` true).
    func recordFeedback(_ f: FeedbackRecord) throws(StoreError) -> (FeedbackRecord, duplicate: Bool)
    /// Reports, newest first.
    func feedback(_ filter: FeedbackFilter) throws(StoreError) -> [FeedbackRecord]
    /// Adds to the hourly traffic counters.
    func addTraffic(_ counts: [TrafficCount]) throws(StoreError)
    /// Scored inputs per predicted label since a time (nil: all).
    func traffic(since: Double?) throws(StoreError) -> [String: TrafficTotal]

    /// Records a new fine-tune job.
    func createJob(params: String, state: JobState) throws(StoreError) -> Int
    /// Stores a job's state, progress and result.
    func updateJob(_ job: JobRecord) throws(StoreError)
    /// Every job, oldest first.
    func jobs() throws(StoreError) -> [JobRecord]

    /// Persists one snapshot of metric values and drops snapshots older than `keepSeconds`.
    func addMetricSnapshot(at: Double, values: [String: Double], keepSeconds: Double) throws(StoreError)
    /// One metric's snapshots in a time range, oldest first.
    func metricHistory(name: String, since: Double, until: Double) throws(StoreError) -> [(at: Double, value: Double)]
    /// The names with a history.
    func metricNames() throws(StoreError) -> [String]

    // Rollouts: at most one runs (shadow or canary) at a time.
    /// Creates a rollout in its first stage; a conflict when one is running.
    func createRollout(candidate: Int, control: Int, stage: String, state: (Int) -> String, at: Double) throws(StoreError) -> RolloutRecord
    /// Stores a rollout's state; `review`, when given, is labelled in the same transaction (its
    /// requested occurrences move to counted).
    func updateRollout(id: Int, stage: String, state: String, at: Double, review: (id: Int, label: String, counted: Int)?) throws(StoreError)
    func rollouts() throws(StoreError) -> [RolloutRecord]
    /// Adds disagreements; one already listed (same rollout and text) is counted as seen again,
    /// its `requested` and `counted` added to the stored ones.
    func addDisagreements(_ items: [DisagreementRecord]) throws(StoreError)
    /// A rollout's disagreements by expected cost, highest first, then id; `after` is a page's last (cost, id).
    func disagreements(rollout: Int, labelled: Bool?, since: Double?, requestedOnly: Bool, limit: Int, after: (cost: Double, id: Int)?) throws(StoreError) -> [DisagreementRecord]
    func disagreement(id: Int) throws(StoreError) -> DisagreementRecord?
    /// Labels the unlabelled disagreements of `rollout` whose text is `text` from a failure
    /// report or confirmation; returns how many.
    func labelDisagreements(rollout: Int, text: String, label: String, source: String, at: Double) throws(StoreError) -> Int

    // A fleet's shared store (PostgreSQL) also holds the version files and the replicas; the
    // embedded store keeps version files on disk only and knows one replica (defaults below).
    /// Whether version files live in the store (else only in the state folder).
    var sharesVersionFiles: Bool { get }
    /// Stores a version's files (all of them, replacing any stored before), in one transaction.
    func putVersionFiles(id: Int, files: [VersionFile]) throws(StoreError)
    /// A version's files as stored (empty when the store keeps none).
    func versionFiles(id: Int) throws(StoreError) -> [VersionFile]
    /// Records that this replica is alive, and what it serves.
    func heartbeat(_ info: ReplicaInfo) throws(StoreError)
    /// Every replica that ever reported, by name.
    func replicas() throws(StoreError) -> [ReplicaInfo]
    /// Marks interrupted the jobs of replicas whose lease expired; returns their ids.
    func interruptOrphanedJobs(now: Double) throws(StoreError) -> [Int]
    /// Claims the oldest queued job for this replica (state `running`), unless a job runs
    /// anywhere in the fleet; nil when there is nothing to claim. Queued jobs are skipped while
    /// another replica holds their row (`FOR UPDATE SKIP LOCKED`).
    func claimNextJob(now: Double) throws(StoreError) -> JobRecord?
    /// Cancels a queued job at once (true), or asks the replica running it to stop (false).
    func requestJobCancel(id: Int, now: Double) throws(StoreError) -> Bool
    /// Whether this replica drives the rollout: it started it, or its replica's lease expired
    /// and this one takes it over. Nil: another live replica drives it (its name).
    func driveRollout(id: Int, now: Double) throws(StoreError) -> String?
    /// A following replica's canary evidence (JSON), for the driving replica to take.
    func addRolloutEvidence(rollout: Int, payload: String) throws(StoreError)
    /// Takes (and removes) the evidence the other replicas added, oldest first.
    func takeRolloutEvidence(rollout: Int) throws(StoreError) -> [String]
}

extension Store {
    public var sharesVersionFiles: Bool { false }
    public func putVersionFiles(id: Int, files: [VersionFile]) throws(StoreError) {}
    public func versionFiles(id: Int) throws(StoreError) -> [VersionFile] { [] }
    public func heartbeat(_ info: ReplicaInfo) throws(StoreError) {}
    public func replicas() throws(StoreError) -> [ReplicaInfo] { [] }
    public func interruptOrphanedJobs(now: Double) throws(StoreError) -> [Int] { [] }
    public func claimNextJob(now: Double) throws(StoreError) -> JobRecord? { nil }
    public func requestJobCancel(id: Int, now: Double) throws(StoreError) -> Bool { false }
    public func driveRollout(id: Int, now: Double) throws(StoreError) -> String? { nil }
    public func addRolloutEvidence(rollout: Int, payload: String) throws(StoreError) {}
    public func takeRolloutEvidence(rollout: Int) throws(StoreError) -> [String] { [] }
}
