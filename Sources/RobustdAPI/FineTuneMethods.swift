import JSON
import JSONRPC

/// How a local fine-tune trains.
public enum FineTuneMethod: String, RPCEnum {
    /// The head only, from the parent's.
    case head
    /// Rank-r adapters on the six projections of the top layers, plus the head.
    case lora
    /// The top layers themselves, plus the head.
    case topLayers = "top-layers"
}

/// A fine-tune job as clients see it.
public struct FineTuneJob: Codable, Sendable {
    public struct Progress: Codable, Sendable {
        /// scheduled, queued, caching, training, gating, writing, done.
        public var phase: String
        public var step: Int?
        public var steps: Int?
        public var epoch: Int?
        public var loss: Double?
        /// The last early-stopping score (minus the mean cost on the selection's held-out share).
        public var validationScore: Double?
        public var etaSeconds: Double?
        public var percentage: Int?
        public init(phase: String) { self.phase = phase }
    }
    /// Where a job is in its life.
    public enum State: String, RPCEnum {
        case scheduled, queued, running, succeeded, failed, cancelled, interrupted
        /// Over: it will not run (again).
        public var isFinished: Bool { ![.scheduled, .queued, .running].contains(self) }
    }
    public var id: Int
    public var state: State
    public var method: String
    /// The regions trained on, as asked or chosen ("auto").
    public var regions: [String]
    /// The intents those regions cover.
    public var intents: [String]
    public var parent: Int
    public var dataset: String
    public var createdAt: Double
    public var startedAt: Double?
    public var finishedAt: Double?
    /// When a scheduled job may start (seconds since 1970).
    public var notBefore: Double?
    public var progress: Progress
    /// The version it produced.
    public var version: Int?
    /// True when the version passed its gate and was made active.
    public var promoted: Bool?
    /// The training report, the data selection and the gate report (when finished).
    public var result: FineTuneReport?
    public var error: String?
    public init(id: Int, state: State, method: String, regions: [String], intents: [String], parent: Int, dataset: String,
                createdAt: Double, progress: Progress) {
        self.id = id; self.state = state; self.method = method; self.regions = regions; self.intents = intents; self.parent = parent
        self.dataset = dataset; self.createdAt = createdAt; self.progress = progress
    }
}

/// `finetune/start`: a local fine-tune of the riskiest regions, as a job that outlives the
/// request (and the client). Answers at once with the job.
public enum FineTuneStart: RPCRequest {
    public static let name = "finetune/start"
    public struct Params: Codable, Sendable {
        /// "auto" (the top `top` intent regions of risk/regions), "all" (every intent), or region ids from risk/regions.
        public var regions: RegionSelection?
        /// How many regions "auto" takes (default 3).
        public var top: Int?
        /// What "auto" ranks by (risk/regions' `by`): failures (default) or fragility, to fix an
        /// intent that is about to fail under noisy input before it has.
        public var by: RiskRegions.Order?
        public var method: FineTuneMethod?
        /// Layers trained (top-layers) or adapted (lora), from the top; default 2.
        public var layers: Int?
        /// LoRA rank (default 8) and α (default 2 × rank).
        public var rank: Int?
        public var alpha: Double?
        public var epochs: Int?
        public var batchSize: Int?
        public var learningRate: Double?
        public var headLearningRate: Double?
        /// L2-SP strength toward the parent's weights (default 0.01).
        public var decay: Double?
        /// Word typo rate of the augmented copies (default 0.1; 0 turns augmentation off).
        public var typoRate: Double?
        /// Noisy copies of each target example (default 1: typos; more vary the noise:
        /// punctuation, a dropped word, casing).
        public var noisyCopies: Int?
        /// λ of the consistency term (KL between the predictions on an example and on its
        /// noisy copies; default 0: cross-entropy alone). docs/robustness.md.
        public var consistency: Double?
        /// Adversarial typos: this many of the target examples (the parent's smallest margins
        /// first) get the one-character edit that most lowers their intent's margin as an extra
        /// noisy copy (default 0: none). docs/robustness.md.
        public var adversarialExamples: Int?
        /// Embedding-space adversarial training: each step also trains on the inputs of the
        /// first trainable layer moved by ε × their norm along the loss's gradient (default 0:
        /// off; 0.02–0.1 is a useful range). Doubles the cost of a step.
        public var adversarialEpsilon: Double?
        /// Replayed examples of other intents per target example (default 2).
        public var replayRatio: Double?
        /// Noisy copies of each replayed example (default 1; 0 keeps the replay clean, which
        /// lets a fine-tune lose the other intents' robustness to typos). docs/robustness.md.
        public var replayCopies: Int?
        public var maxSteps: Int?
        public var maxSeconds: Double?
        /// Do not start before this time (seconds since 1970).
        public var notBefore: Double?
        /// Start only inside this daily window, "HH:MM-HH:MM" in UTC (may wrap midnight).
        public var window: String?
        /// The version to start from (default: the active one).
        public var parent: Int?
        /// The labelled dataset (default: the parent's).
        public var dataset: String?
        /// Make the version active if it passes its gate (default: the configuration's finetune.auto_promote).
        public var autoPromote: Bool?
        public var seed: Int?
        public var workDoneToken: RequestID?
        /// The common options; set the others on the value.
        public init(regions: RegionSelection? = nil, method: FineTuneMethod? = nil, layers: Int? = nil, rank: Int? = nil, epochs: Int? = nil,
                    batchSize: Int? = nil, maxSteps: Int? = nil, maxSeconds: Double? = nil, autoPromote: Bool? = nil) {
            self.regions = regions; self.method = method; self.layers = layers; self.rank = rank; self.epochs = epochs
            self.batchSize = batchSize; self.maxSteps = maxSteps; self.maxSeconds = maxSeconds; self.autoPromote = autoPromote
        }
    }
    public typealias Result = FineTuneJob
}

/// `finetune/status`: one job.
public enum FineTuneStatus: RPCRequest {
    public static let name = "finetune/status"
    public struct Params: Codable, Sendable {
        public var job: Int
        /// Also send this connection the job's finetune/event notifications from now on.
        public var watch: Bool?
        public init(job: Int) { self.job = job }
    }
    public typealias Result = FineTuneJob
}

/// `finetune/list`: every job, newest first.
public enum FineTuneList: RPCRequest {
    public static let name = "finetune/list"
    public struct Params: Codable, Sendable {
        /// Only jobs in this state.
        public var state: FineTuneJob.State?
        /// 1…10000, default 100.
        public var limit: Int?
        /// The `nextCursor` of the previous page.
        public var cursor: String?
        public init(state: FineTuneJob.State? = nil, limit: Int? = nil, cursor: String? = nil) {
            self.state = state; self.limit = limit; self.cursor = cursor
        }
    }
    public struct Result: Codable, Sendable {
        public var jobs: [FineTuneJob]
        /// Present while older jobs remain.
        public var nextCursor: String?
        public init(jobs: [FineTuneJob], nextCursor: String? = nil) { self.jobs = jobs; self.nextCursor = nextCursor }
    }
}

/// `finetune/cancel`: stops a job within one training step; answers when it has stopped.
public enum FineTuneCancel: RPCRequest {
    public static let name = "finetune/cancel"
    public struct Params: Codable, Sendable {
        public var job: Int
        public init(job: Int) { self.job = job }
    }
    public typealias Result = FineTuneJob
}

/// `finetune/event`: a job's progress, to the client that started it and to watchers.
public enum FineTuneEvent: RPCNotification {
    public static let name = "finetune/event"
    public struct Params: Codable, Sendable {
        public var job: Int
        public enum Kind: String, RPCEnum { case started, phase, step, evaluation, finished }
        public var kind: Kind
        public var state: FineTuneJob.State
        public var progress: FineTuneJob.Progress
        public var version: Int?
        public var promoted: Bool?
        public var message: String?
        public init(job: Int, kind: Kind, state: FineTuneJob.State, progress: FineTuneJob.Progress) {
            self.job = job; self.kind = kind; self.state = state; self.progress = progress
        }
    }
}

/// `model/activate`: makes a version active at once (a rollback, or a candidate by hand).
/// Requests in flight finish on the version they started with; cached scores are dropped.
public enum ModelActivate: RPCRequest {
    public static let name = "model/activate"
    public struct Params: Codable, Sendable {
        public var version: Int
        public init(version: Int) { self.version = version }
    }
    public struct Result: Codable, Sendable {
        public var active: Int
        public var previous: Int?
        /// Layers whose weights differ from the base model's in this version.
        public var changedLayers: [Int]
        public init(active: Int, previous: Int?, changedLayers: [Int]) { self.active = active; self.previous = previous; self.changedLayers = changedLayers }
    }
}
