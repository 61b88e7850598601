import Encoder
import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import Rollout
import RPCTransport
import Scoring
import Store

/// The staged rollout of a candidate version: shadow (it scores live requests off the reply's
/// path, at background priority; its disagreements with the active version are kept and
/// reviewed), canary (a sticky share of the traffic is answered by it), promoted or rolled
/// back, each step decided by the Rollout module's sequential tests on the evidence this
/// service feeds it. One rollout at a time; its state is stored with every transition and
/// review, and at most a second after any other evidence, and resumes after a restart.
///
/// - Important: Used only on the loop thread.
final class RolloutService: DaemonService {
    let model: ActiveModel
    let pipeline: ScoringPipeline
    let policy: RiskPolicy
    let store: StoreThread
    let repository: VersionRepository
    let logger: Logger
    let defaults: RolloutSettings

    /// The running rollout (or the last one, finished, until another starts).
    var current: Rollout?
    /// What answers as the candidate, once its files are loaded.
    var candidate: ActiveModel.Serving?
    var watchers = Watchers()
    /// The once-a-second tick and what it does: store the state if it changed, tell the
    /// watchers the evidence.
    var upkeep = Upkeep()
    /// The shadow's working state (RolloutService+Shadow.swift).
    var shadow = ShadowState()
    /// Promotion's progress (RolloutService+Decisions.swift).
    var promotion = PromotionState()
    /// In a fleet: whom this replica follows and what it pools for the driver (RolloutService+Fleet.swift).
    var following = FleetFollowing()
    /// Requests wait until the stored rollout is read at start.
    var phase = ServicePhase()

    init(model: ActiveModel, pipeline: ScoringPipeline, policy: RiskPolicy, store: StoreThread, repository: VersionRepository, loop: Loop,
         logger: Logger, defaults: RolloutSettings) {
        self.model = model
        self.pipeline = pipeline
        self.policy = policy
        self.store = store
        self.repository = repository
        self.logger = logger
        self.defaults = defaults
        model.onChange { [weak self] v in self?.activeChanged(v) }
        resume()
        let t = try? EventLoop.Timer(loop: loop)
        t?.start(timeoutMs: 1000, repeatMs: 1000) { [weak self] in self?.tick() }
        t?.unref()
        upkeep.timer = t
    }

    func register(on router: Router) {
        router.onDeferred(RolloutStart.self) { [unowned self] p, ctx in
            self.whenResumed { self.start(candidate: p.candidate, overrides: p.settings, force: p.force ?? false) { ctx.reply($0) } }
        }
        router.onDeferred(RolloutStatus.self) { [unowned self] p, ctx in
            self.whenResumed {
                do throws(RPCError) {
                    let r = try self.rollout(p.rollout)
                    if p.watch == true { self.watchers.add(ctx.connection) }
                    ctx.reply(self.view(r))
                } catch { ctx.reply(.failure(error)) }
            }
        }
        router.onDeferred(RolloutList.self) { [unowned self] _, ctx in
            self.store.run({ store throws(StoreError) -> [RolloutRecord] in try store.rollouts() }, completion: { [weak self] r in
                guard let self else { return }
                switch r {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let records):
                    let views = records.reversed().compactMap { rec -> RolloutView? in
                        if let c = self.current, c.id == rec.id { return self.view(c) }
                        return Self.decode(rec).map { RolloutView($0, loaded: false, now: Date().timeIntervalSince1970) }
                    }
                    ctx.reply(RolloutList.Result(rollouts: views))
                }
            })
        }
        router.onDeferred(RolloutAdvance.self) { [unowned self] p, ctx in
            self.whenResumed { self.operate(p, ctx) { r, now throws(RolloutError) in try r.advanceByOperator(now: now, reason: p.reason) } }
        }
        router.onDeferred(RolloutAbort.self) { [unowned self] p, ctx in
            self.whenResumed { self.operate(p, ctx) { r, now throws(RolloutError) in try r.abort(now: now, reason: p.reason) } }
        }
        router.onDeferred(RolloutDisagreements.self) { [unowned self] p, ctx in self.whenResumed { self.disagreements(p, ctx) } }
        router.onDeferred(RolloutReview.self) { [unowned self] p, ctx in self.whenResumed { self.review(p, ctx) } }
    }

    /// Runs `body` once the stored rollout has been read (at once after start-up).
    func whenResumed(_ body: @escaping () -> Void) {
        if phase.resumed { body() } else { phase.waiters.append(body) }
    }

    func finishResuming() {
        guard !phase.resumed else { return }
        phase.resumed = true
        let waiting = phase.waiters
        phase.waiters = []
        for w in waiting { w() }
    }

    func stopping() { phase.stopping = true }

    func close() {
        upkeep.timer?.close()
        upkeep.timer = nil
        flushPooled()
        flush()
    }

    func connectionClosed(_ connection: Connection) { watchers.remove(connection) }

    func gauges(into values: inout [String: Double]) {
        guard let r = current else { return }
        values["rollout.id"] = Double(r.id)
        values["rollout.stage"] = r.stage == .shadow ? 1 : r.stage == .canary ? 2 : r.stage == .promoted ? 3 : 4
        values["rollout.shadowRequests"] = Double(r.shadowRequests)
        values["rollout.disagreements"] = Double(r.disagreements)
        values["rollout.labels"] = Double(r.labels)
        values["rollout.shadowDropped"] = Double(shadow.dropped)
        for arm in Arm.allCases {
            let a = r.stats(arm), p = "rollout.arm.\(arm.rawValue)."
            values[p + "requests"] = Double(a.requests)
            values[p + "failureReports"] = Double(a.failureReports)
            values[p + "failureReportsPerRequest"] = a.failureReportRate
            values[p + "expectedCostPer1000"] = a.expectedCostPer1000
            values[p + "reportedCostPer1000"] = a.reportedCostPer1000
            values[p + "outOfScopeRate"] = a.outOfScopeRate
            values[p + "flaggedRate"] = a.flaggedRate
            values[p + "errorRate"] = a.errorRate
            values[p + "latencyP99Ms"] = a.latencyP99
        }
    }

    /// The running rollout's view, for metrics and the report.
    var currentView: RolloutView? { current.map { view($0) } }

    // MARK: The traffic's hooks

    /// What answers a score request: the candidate for the canary's share (sticky per
    /// routing key, else per text), nil for the active version.
    func route(key: String?, texts: [String]) -> ActiveModel.Serving? {
        guard let r = current, r.stage == .canary, let candidate, model.version?.id == r.control else { return nil }
        return r.arm(forHash: Self.routingHash(key ?? texts.first ?? "")) == .candidate ? candidate : nil
    }

    /// The version that answered `text` under the canary's routing (for a failure report that
    /// names neither an input id nor a version).
    func servedVersion(text: String) -> Int? {
        guard let r = current, r.stage == .canary, candidate != nil else { return nil }
        return r.arm(forHash: Self.routingHash(text)) == .candidate ? r.candidate : r.control
    }

    /// The candidate's serving pair when `version` is the rollout's candidate.
    func serving(version: Int) -> ActiveModel.Serving? {
        guard let r = current, r.candidate == version, !r.stage.isFinal else { return nil }
        return candidate
    }

    /// A score request was answered by `version`.
    func scored(_ texts: [String], scores: [InputScore], version: Int, seconds: Double) {
        guard var r = current, !r.stage.isFinal, !scores.isEmpty else { return }
        let arm: Arm = version == r.candidate ? .candidate : .control
        guard arm == .candidate || version == r.control else { return }
        if r.stage == .canary {
            let oos = scores.filter(\.outOfScope.flagged).count, flagged = scores.filter { $0.risk.level != .low }.count
            let expected = scores.reduce(0.0) { $0 + (1 - $1.confidence) * policy.impact($1.label) * policy.unitCost }
            if isFollower {
                // A follower pools what its arms served for the driver's tests; the driver shadows.
                poolServed(arm: arm, inputs: scores.count, outOfScope: oos, flagged: flagged, expectedCost: expected)
                return
            }
            r.recordServed(arm: arm, inputs: scores.count, latencyMs: 1000 * seconds, outOfScope: oos, flagged: flagged, expectedCost: expected)
            current = r
            upkeep.dirty = true
        }
        if isFollower { return }
        if candidate != nil && (arm == .control || r.stage == .canary) {
            for (t, s) in zip(texts, scores) {
                if shadow.queue.count >= ShadowState.queueLimit { shadow.dropped += 1; continue }
                shadow.queue.append((t, s, arm))
            }
            pumpShadow()
        }
        decide()
    }

    /// The candidate failed to answer a request (an internal error).
    func failed(version: Int) {
        guard var r = current, r.stage == .canary, version == r.candidate else { return }
        if isFollower { poolError(arm: .candidate); return }
        r.recordError(arm: .candidate)
        current = r
        upkeep.dirty = true
        decide()
    }

    /// A failure report (or confirmation) was committed.
    func feedbackRecorded(_ f: FeedbackRecord) {
        guard var r = current, !r.stage.isFinal else { return }
        if isFollower {
            if f.kind != "confirmation", r.stage == .canary, f.at >= r.stageStartedAt, f.version == r.candidate || f.version == r.control {
                poolReport(arm: f.version == r.candidate ? .candidate : .control, cost: f.cost)
            }
            return
        }
        if f.kind != "confirmation", r.stage == .canary, f.at >= r.stageStartedAt, f.version == r.candidate || f.version == r.control {
            r.recordFailureReport(arm: f.version == r.candidate ? .candidate : .control, cost: f.cost, onDisagreement: shadow.canaryDisagreeing.contains(f.text))
            current = r
            upkeep.dirty = true
            decide()
        }
        // A label about a served answer resolves its disagreement for the reviewers (not counted: see docs/rollout.md).
        let label = f.kind == "confirmation" ? f.predictedLabel : f.correctLabel
        if let label {
            let id = r.id, text = f.text, now = Date().timeIntervalSince1970
            store.run({ store throws(StoreError) in _ = try store.labelDisagreements(rollout: id, text: text, label: label, source: "feedback", at: now) },
                      completion: { _ in })
        }
    }

    static func routingHash(_ key: String) -> UInt64 {
        // FNV-1a, then a finaliser: stable across runs and machines (String.hashValue is not).
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        h ^= h >> 33
        h = h &* 0xff51_afd7_ed55_8ccd
        h ^= h >> 33
        return h
    }
}

/// What the shadow works on: served inputs waiting to be scored unseen by the other version
/// (the candidate for the control's answers; in canary, the control for the candidate's), with
/// the served answer; what disagreed; what reviews already decided.
struct ShadowState {
    static let queueLimit = 4096
    var queue: [(text: String, served: InputScore, arm: Arm)] = []
    var inFlight = false
    /// Inputs not shadow-scored because the queue was full.
    var dropped = 0
    /// Texts of the canary's inputs on which the two versions disagree (for failure reports).
    var canaryDisagreeing = Set<String>()
    /// Reviewed disagreements' costs (control's answer, candidate's) by text: a sampled
    /// occurrence of a reviewed input counts at once.
    var knownCosts: [String: (control: Double, candidate: Double)] = [:]
    /// How many times each input has disagreed in the shadow (for its occurrences' coins).
    var sampledOccurrences: [String: Int] = [:]
    /// Disagreements found and not yet stored.
    var pendingDisagreements: [DisagreementRecord] = []
}

/// A promotion under way.
struct PromotionState {
    /// A promotion whose transaction failed (the store was away): retried every second, and
    /// nothing else of the rollout is stored meanwhile, so the stored state never says
    /// "promoted" without the active version that goes with it.
    var pending: Transition?
    /// The candidate's changed layers (activated on promotion).
    var candidateLayers: [Int: BertLayerWeights]?
    var inProgress = false
}

/// A replica's part in a fleet's rollout.
struct FleetFollowing {
    /// The replica that drives the running rollout when it is another; this one follows it.
    var driver: String?
    /// A follower's canary evidence since its last flush.
    var pooled = RolloutService.PooledEvidence()
    var refreshing = false
    var takingPooled = false
}

/// The tick's state.
struct Upkeep {
    var timer: EventLoop.Timer?
    /// The rollout changed since it was last stored.
    var dirty = false
    /// When the watchers last heard an evidence event.
    var lastEvidenceAt = 0.0
}

/// Where the service is in its life: resuming the stored rollout at start (requests wait),
/// running, stopping (no new shadow work).
struct ServicePhase {
    var resumed = false
    var waiters: [() -> Void] = []
    var stopping = false
}
