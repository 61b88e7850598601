import EventLoop
import Foundation
import Encoder
import RobustdAPI
import RPCTransport
import Scoring
import Training

/// A fine-tune job while the daemon holds it: its public view, what it needs to run, who
/// hears about it, and the requests waiting for it to stop.
///
/// - Important: Used only on the loop thread.
final class FineTuneJobState {
    var view: FineTuneJob
    let params: FineTuneStart.Params
    let targets: [String]
    let token = CancellationToken()
    /// Connections that get its finetune/event notifications (the starter and watchers).
    var watchers = Watchers()
    var progress: WorkDoneProgress?
    var cancelWaiters: [RequestContext] = []
    var lastEventAt = 0.0
    var lastStoredAt = 0.0
    var window: (start: Int, end: Int)?

    init(view: FineTuneJob, params: FineTuneStart.Params, targets: [String]) {
        self.view = view
        self.params = params
        self.targets = targets
    }
}

/// The jobs this daemon knows (finished ones too, read from the store), those waiting to run
/// in order, and the one running here with the semaphore its thread signals when it ends.
///
/// - Important: Used only on the loop thread.
struct JobBook {
    private var byID: [Int: FineTuneJobState] = [:]
    /// Queued or scheduled jobs, oldest first.
    private(set) var waiting: [Int] = []
    var running: Int?
    var threadDone: DispatchSemaphore?

    subscript(id: Int) -> FineTuneJobState? { byID[id] }
    var all: Dictionary<Int, FineTuneJobState>.Values { byID.values }

    /// Adds (or replaces) a job under its id.
    mutating func add(_ job: FineTuneJobState) { byID[job.view.id] = job }
    /// Puts a job at the end of the waiting line (once).
    mutating func enqueue(_ id: Int) { if !waiting.contains(id) { waiting.append(id) } }
    mutating func unqueue(_ id: Int) { waiting.removeAll { $0 == id } }
}

/// Fleet work on the store thread, one of each kind at a time.
struct FleetWork {
    /// A claim of the next queued job.
    var claiming = false
    /// A sync of the jobs' rows.
    var syncing = false
}

/// What the job thread needs, copied off the loop.
struct FineTuneInputs: @unchecked Sendable {
    /// Estimated production volume per intent (risk/regions' traffic), for held-out weights.
    var production: [String: Double]
    var plan: LocalFineTune.Plan
    var selection: DataSelection.Options
    var parent: ModelVersion
    var parentEncoder: SentenceEncoder
    var labels: [String]
    var targets: Set<String>
    var train: [(String, String)]
    var heldOut: [(String, String)]
    var failures: [DataSelection.Failure]
    var fullDataCount: Int
    var policy: RiskPolicy
}

/// What the job thread hands back.
struct FineTuneOutput: @unchecked Sendable {
    var candidate: LocalFineTune.Candidate
    var counts: DataSelection.Counts
}

