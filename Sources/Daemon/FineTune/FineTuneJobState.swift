import EventLoop
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
    var watchers: [Int: Connection] = [:]
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

