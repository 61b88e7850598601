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
    private let model: ActiveModel
    private let pipeline: ScoringPipeline
    private let policy: RiskPolicy
    private let store: StoreThread
    private let stateDir: String
    private let loop: Loop
    private let compute: ComputePool
    private let logger: Logger
    private let defaults: RolloutSettings

    /// The running rollout (or the last one, finished, until another starts).
    private var current: Rollout?
    /// What answers as the candidate, once its files are loaded.
    private var candidate: ActiveModel.Serving?
    private var watchers: [Int: Connection] = [:]
    private var dirty = false
    private var timer: EventLoop.Timer?
    private var lastEvidenceEvent = 0.0
    /// Served inputs waiting to be scored unseen by the other version (the candidate for the
    /// control's answers; in canary, the control for the candidate's), with the served answer.
    private var shadowQueue: [(text: String, served: InputScore, arm: Arm)] = []
    /// Texts of the canary's inputs on which the two versions disagree (for failure reports).
    private var canaryDisagreeing = Set<String>()
    /// Reviewed disagreements' costs (control's answer, candidate's) by text: a sampled
    /// occurrence of a reviewed input counts at once.
    private var knownCosts: [String: (control: Double, candidate: Double)] = [:]
    private var sampler = SystemRandomNumberGenerator()
    private var shadowInFlight = false
    private var pendingDisagreements: [DisagreementRecord] = []
    private(set) var shadowDropped = 0
    private var promoting = false
    private var isStopping = false
    /// False until the stored rollout is read at start; requests wait for it.
    private var resumed = false
    private var resumeWaiters: [() -> Void] = []
    static let shadowQueueLimit = 4096

    init(model: ActiveModel, pipeline: ScoringPipeline, policy: RiskPolicy, store: StoreThread, stateDir: String, loop: Loop,
         compute: ComputePool, logger: Logger, defaults: RolloutSettings) {
        self.model = model
        self.pipeline = pipeline
        self.policy = policy
        self.store = store
        self.stateDir = stateDir
        self.loop = loop
        self.compute = compute
        self.logger = logger
        self.defaults = defaults
        model.onChange { [weak self] v in self?.activeChanged(v) }
        resume()
        let t = try? EventLoop.Timer(loop: loop)
        t?.start(timeoutMs: 1000, repeatMs: 1000) { [weak self] in self?.tick() }
        t?.unref()
        timer = t
    }

    func register(on router: Router) {
        router.onDeferred(RolloutStart.self) { [unowned self] p, ctx in
            self.whenResumed { self.start(candidate: p.candidate, overrides: p.settings, force: p.force ?? false) { ctx.reply($0) } }
        }
        router.onDeferred(RolloutStatus.self) { [unowned self] p, ctx in
            self.whenResumed {
                do throws(RPCError) {
                    let r = try self.rollout(p.rollout)
                    if p.watch == true { self.watchers[ctx.connection.id] = ctx.connection }
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
    private func whenResumed(_ body: @escaping () -> Void) {
        if resumed { body() } else { resumeWaiters.append(body) }
    }

    private func finishResuming() {
        guard !resumed else { return }
        resumed = true
        let waiting = resumeWaiters
        resumeWaiters = []
        for w in waiting { w() }
    }

    func stopping() { isStopping = true }

    func close() {
        timer?.close()
        timer = nil
        flush()
    }

    func connectionClosed(_ connection: Connection) { watchers[connection.id] = nil }

    func gauges(into values: inout [String: Double]) {
        guard let r = current else { return }
        values["rollout.id"] = Double(r.id)
        values["rollout.stage"] = r.stage == .shadow ? 1 : r.stage == .canary ? 2 : r.stage == .promoted ? 3 : 4
        values["rollout.shadowRequests"] = Double(r.shadowRequests)
        values["rollout.disagreements"] = Double(r.disagreements)
        values["rollout.labels"] = Double(r.labels)
        values["rollout.shadowDropped"] = Double(shadowDropped)
        for arm in Arm.allCases {
            let a = r.stats(arm), p = "rollout.arm.\(arm.rawValue)."
            values[p + "requests"] = Double(a.requests)
            values[p + "failureReports"] = Double(a.failureReports)
            values[p + "failureReportsPerRequest"] = a.failureReportRate
            values[p + "expectedCostPer1000"] = a.expectedCostPer1000
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
            r.recordServed(arm: arm, inputs: scores.count, latencyMs: 1000 * seconds, outOfScope: oos, flagged: flagged, expectedCost: expected)
            current = r
            dirty = true
        }
        if candidate != nil && (arm == .control || r.stage == .canary) {
            for (t, s) in zip(texts, scores) {
                if shadowQueue.count >= Self.shadowQueueLimit { shadowDropped += 1; continue }
                shadowQueue.append((t, s, arm))
            }
            pumpShadow()
        }
        decide()
    }

    /// The candidate failed to answer a request (an internal error).
    func failed(version: Int) {
        guard var r = current, r.stage == .canary, version == r.candidate else { return }
        r.recordError(arm: .candidate)
        current = r
        dirty = true
        decide()
    }

    /// A failure report (or confirmation) was committed.
    func feedbackRecorded(_ f: FeedbackRecord) {
        guard var r = current, !r.stage.isFinal else { return }
        if f.kind != "confirmation", r.stage == .canary, f.at >= r.stageStartedAt, f.version == r.candidate || f.version == r.control {
            r.recordFailureReport(arm: f.version == r.candidate ? .candidate : .control, cost: f.cost, onDisagreement: canaryDisagreeing.contains(f.text))
            current = r
            dirty = true
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

    // MARK: Shadow scoring

    private func pumpShadow() {
        guard !shadowInFlight, !isStopping, let candidate, let r = current, !r.stage.isFinal, let first = shadowQueue.first else { return }
        // One batch scores the answers of one arm with the other version.
        let arm = first.arm
        let take = Array(shadowQueue.prefix(16).prefix { $0.arm == arm })
        shadowQueue.removeFirst(take.count)
        let other: ActiveModel.Serving
        if arm == .control { other = candidate } else {
            guard case .success(let control) = model.serving, control.version.id == r.control else { pumpShadow(); return }
            other = control
        }
        shadowInFlight = true
        let rolloutID = r.id, stage = r.stage
        pipeline.score(take.map(\.text), with: other, token: CancellationToken(), background: true) { [weak self] result in
            guard let self else { return }
            self.shadowInFlight = false
            guard case .success(let scored) = result, var r = self.current, r.id == rolloutID, !r.stage.isFinal else { self.pumpShadow(); return }
            let now = Date().timeIntervalSince1970
            var disagreeing = 0
            for (item, o) in zip(take, scored.scores) where item.served.label != o.label {
                disagreeing += 1
                let (k, c) = arm == .control ? (item.served, o) : (o, item.served)
                // At stake: serving the control's answer when the candidate's was right, and the other way round.
                let stake = c.confidence * self.policy.cost(truth: c.label, predicted: k.label)
                    + k.confidence * self.policy.cost(truth: k.label, predicted: c.label)
                // Each occurrence is sampled for the test on its own coin: counted now if its input
                // is reviewed, else when it is (docs/rollout.md, "sampled occurrences").
                var requested = 0, counted = 0
                if Double(self.sampler.next() >> 11) / Double(1 << 53) < r.settings.reviewShare {
                    if let known = self.knownCosts[item.text] {
                        r.recordLabel(controlCost: known.control, candidateCost: known.candidate)
                        counted = 1
                    } else {
                        requested = 1
                    }
                }
                self.pendingDisagreements.append(DisagreementRecord(rollout: r.id, text: item.text, controlLabel: k.label, candidateLabel: c.label,
                                                                    controlConfidence: k.confidence, candidateConfidence: c.confidence,
                                                                    expectedCost: stake, requested: requested, counted: counted, at: now))
                if stage == .canary && r.stage == .canary {
                    if self.canaryDisagreeing.count >= 200_000 { self.canaryDisagreeing.removeAll(keepingCapacity: true) }
                    self.canaryDisagreeing.insert(item.text)
                }
            }
            r.recordShadow(requests: take.count, disagreeing: disagreeing)
            if stage == .canary { r.recordDisagreementsServed(arm: arm, count: disagreeing) }
            self.current = r
            self.dirty = true
            if self.pendingDisagreements.count >= 64 { self.flushDisagreements() }
            self.decide()
            self.pumpShadow()
        }
    }

    private func flushDisagreements() {
        guard !pendingDisagreements.isEmpty else { return }
        let items = pendingDisagreements
        pendingDisagreements = []
        store.run({ store throws(StoreError) in try store.addDisagreements(items) }, completion: { [weak self] r in
            if case .failure(let e) = r { self?.logger.warning("disagreements not stored", metadata: ["error": "\(e.message)", "count": "\(items.count)"]) }
        })
    }

    // MARK: Decisions

    private func decide() {
        // Nothing is decided while the candidate is loading (after a restart): no evidence arrives then.
        guard var r = current, !r.stage.isFinal, !promoting, pendingPromotion == nil, candidate != nil else { return }
        guard let t = r.decide(now: Date().timeIntervalSince1970) else { return }
        current = r
        transitioned(t)
    }

    /// Stores the transition (with the promotion's activation in the same transaction) and acts on it.
    private func transitioned(_ t: Transition, then done: ((Result<Void, RPCError>) -> Void)? = nil) {
        guard let r = current else { return }
        logger.info("rollout \(t.to == .promoted ? "promoted" : t.to == .rolledBack ? "rolled back" : "advanced")", metadata: [
            "rollout": "\(r.id)", "candidate": "\(r.candidate)", "from": "\(t.from?.rawValue ?? "-")", "to": "\(t.to.rawValue)",
            "by": "\(t.by)", "reason": "\(t.reason)",
        ])
        emit(.transition, t)
        commit(t, done: done)
    }

    /// A promotion whose transaction failed (the store was away): retried every second, and
    /// nothing else of the rollout is stored meanwhile, so the stored state never says
    /// "promoted" without the active version that goes with it.
    private var pendingPromotion: Transition?

    private func commit(_ t: Transition, done: ((Result<Void, RPCError>) -> Void)?) {
        guard let r = current else { return }
        let id = r.id, stage = r.stage.rawValue, state = Self.encode(r), candidateID = r.candidate
        let promote = t.to == .promoted
        if promote { promoting = true }
        flushDisagreements()
        dirty = false
        store.run({ store throws(StoreError) in
            try store.updateRollout(id: id, stage: stage, state: state, at: t.at, review: nil)
            if promote { try store.setActive(candidateID) }
        }, completion: { [weak self] result in
            guard let self else { return }
            self.promoting = false
            if case .failure(let e) = result {
                self.logger.error("rollout transition not stored; will retry", metadata: ["rollout": "\(id)", "error": "\(e.message)"])
                self.dirty = true
                if promote {
                    self.pendingPromotion = t
                    done?(.failure(e))
                    return
                }
            }
            if promote, case .success = result, let c = self.candidate, let layers = self.candidateLayers {
                self.promoting = true
                self.model.activate(c.version, layers: layers)
                self.promoting = false
            }
            if t.to.isFinal { self.dropCandidate() }
            done?(result.map { _ in () })
        })
    }

    private var candidateLayers: [Int: BertLayerWeights]?

    private func dropCandidate() {
        candidate = nil
        candidateLayers = nil
        shadowQueue = []
        canaryDisagreeing = []
        knownCosts = [:]
    }

    private func activeChanged(_ v: ModelVersion) {
        guard !promoting, var r = current, !r.stage.isFinal, v.id != r.control else { return }
        // Someone activated another version by hand: the rollout's control is gone.
        if let t = try? r.abort(now: Date().timeIntervalSince1970, by: "fault",
                                reason: "version \(v.id) was activated by hand during the rollout; its control (version \(r.control)) no longer serves") {
            current = r
            transitioned(t)
        }
    }

    private func tick() {
        guard let r = current else { return }
        if let t = pendingPromotion {
            pendingPromotion = nil
            commit(t, done: nil)
            return
        }
        if !r.stage.isFinal { decide() }
        flushDisagreements()
        if dirty { persist() }
        let now = Date().timeIntervalSince1970
        if !r.stage.isFinal && !watchers.isEmpty && now - lastEvidenceEvent >= 1 {
            lastEvidenceEvent = now
            emit(.evidence, nil)
        }
    }

    private func persist(review: (id: Int, label: String, counted: Int)? = nil, done: ((Result<Void, RPCError>) -> Void)? = nil) {
        guard let r = current else { return }
        dirty = false
        let id = r.id, stage = r.stage.rawValue, state = Self.encode(r), now = Date().timeIntervalSince1970
        store.run({ store throws(StoreError) in try store.updateRollout(id: id, stage: stage, state: state, at: now, review: review) },
                  completion: { [weak self] result in
            if case .failure(let e) = result, review == nil {
                self?.logger.warning("rollout state not stored; will retry", metadata: ["error": "\(e.message)"])
                self?.dirty = true
            }
            done?(result)
        })
    }

    private func flush() {
        flushDisagreements()
        if let t = pendingPromotion { pendingPromotion = nil; commit(t, done: nil) } else if dirty { persist() }
    }

    private func emit(_ kind: RolloutEvent.Params.Kind, _ t: Transition?) {
        guard let r = current else { return }
        let v = view(r)
        let p = RolloutEvent.Params(rollout: r.id, kind: kind, stage: r.stage, transition: t, evidence: v.evidence, progress: v.progress)
        for (id, c) in watchers {
            if c.isClosed { watchers[id] = nil; continue }
            c.notify(RolloutEvent.self, p)
        }
    }

    private func view(_ r: Rollout) -> RolloutView {
        RolloutView(r, loaded: candidate != nil && current?.id == r.id, now: Date().timeIntervalSince1970)
    }

    private func rollout(_ id: Int?) throws(RPCError) -> Rollout {
        guard let r = current else { throw RPCError(.invalidParams, "no rollout yet: rollout/start puts a candidate on one (a fine-tune whose candidate passes its offline gate starts one by itself)") }
        if let id, id != r.id { throw RPCError(.invalidParams, "rollout \(id) is not the current one (\(r.id)); rollout/list lists every rollout") }
        return r
    }

    // MARK: Starting

    /// Puts `candidateID` on a rollout against the active version.
    func start(candidate candidateID: Int, overrides: JSONValue?, force: Bool, done: @escaping (Result<RolloutView, RPCError>) -> Void) {
        guard model.encoder != nil else { done(.failure(DaemonError.noModel)); return }
        guard let control = model.version else { done(.failure(DaemonError.noVersion)); return }
        guard candidateID != control.id else {
            done(.failure(.invalidParams("version \(candidateID) is the active version; a rollout needs another version as its candidate", field: "candidate")))
            return
        }
        let settings: RolloutSettings
        do throws(RPCError) { settings = try Self.settings(defaults, overriddenBy: overrides) } catch { done(.failure(error)); return }
        let problems = settings.problems()
        guard problems.isEmpty else {
            done(.failure(.invalidParams("rollout settings: " + problems.joined(separator: "; "), field: "settings")))
            return
        }
        if let r = current, !r.stage.isFinal {
            done(.failure(RPCError(.conflict, "rollout \(r.id) of version \(r.candidate) is running (\(r.stage.rawValue)); abort it (rollout/abort) or wait for its end")))
            return
        }
        let stateDir = self.stateDir
        store.run({ store throws(StoreError) -> VersionRecord in
            guard let v = try store.versions().first(where: { $0.id == candidateID }) else {
                throw StoreError(.notFound, "no version \(candidateID) (model/versions lists them)")
            }
            guard v.status == .ready || v.status == .candidate else {
                throw StoreError(.invalid, "version \(candidateID) is \(v.status.rawValue) and cannot be rolled out")
            }
            return v
        }, completion: { [weak self] r in
            guard let self else { return }
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let record):
                let gate = Self.offlineGate(record.report)
                if !gate.passed && !force {
                    done(.failure(RPCError(.invalidParams, "version \(candidateID) did not pass its offline gate: \(gate.summary); start with force to roll it out anyway")))
                    return
                }
                self.load(candidateID, stateDir: stateDir) { loaded in
                    switch loaded {
                    case .failure(let e): done(.failure(e))
                    case .success(let l):
                        guard l.version.labels == control.labels else {
                            done(.failure(.invalidParams("version \(candidateID) has other intents than the active version \(control.id); a rollout compares answers over the same intents", field: "candidate")))
                            return
                        }
                        self.create(l, control: control, settings: settings, gate: gate.summary, done: done)
                    }
                }
            }
        })
    }

    private func create(_ l: LoadedVersion, control: ModelVersion, settings: RolloutSettings, gate: String, done: @escaping (Result<RolloutView, RPCError>) -> Void) {
        let now = Date().timeIntervalSince1970
        let maxCost = control.labels.flatMap { t in control.labels.map { policy.cost(truth: t, predicted: $0) } }.max() ?? policy.unitCost
        let candidateID = l.version.id, controlID = control.id
        store.run({ store throws(StoreError) -> RolloutRecord in
            try store.createRollout(candidate: candidateID, control: controlID, stage: Stage.shadow.rawValue, state: { id in
                Self.encode(Rollout(id: id, candidate: candidateID, control: controlID, settings: settings, maxCost: maxCost, now: now,
                                    gate: "offline gate: \(gate)"))
            }, at: now)
        }, completion: { [weak self] r in
            guard let self else { return }
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let rec):
                guard let rollout = Self.decode(rec) else { done(.failure(.internalError("the new rollout's state does not decode"))); return }
                guard self.model.version?.id == controlID else {
                    var aborted = rollout
                    self.current = aborted
                    if let t = try? aborted.abort(now: Date().timeIntervalSince1970, by: "fault", reason: "the active version changed while the rollout started") {
                        self.current = aborted
                        self.transitioned(t)
                    }
                    done(.failure(RPCError(.conflict, "the active version changed while the rollout started; start it again")))
                    return
                }
                self.current = rollout
                self.shadowDropped = 0
                self.knownCosts = [:]
                self.attach(l)
                self.logger.info("rollout started", metadata: ["rollout": "\(rollout.id)", "candidate": "\(candidateID)", "control": "\(controlID)"])
                self.emit(.started, rollout.timeline.first)
                done(.success(self.view(rollout)))
            }
        })
    }

    private func attach(_ l: LoadedVersion) {
        guard let batcher = model.batcher else { return }
        candidate = ActiveModel.Serving(version: l.version, encoder: model.encoder(for: l.version, layers: l.layers), batcher: batcher)
        candidateLayers = l.layers
    }

    private func load(_ id: Int, stateDir: String, _ body: @escaping (Result<LoadedVersion, RPCError>) -> Void) {
        compute.submit(work: { _ -> Result<LoadedVersion, RPCError> in
            do {
                let (v, layers) = try VersionFiles.read(id: id, stateDir: stateDir)
                return .success(LoadedVersion(version: v, layers: layers))
            } catch { return .failure(RPCError(.invalidData, "version \(id) cannot be loaded: \(error)")) }
        }, completion: { r in body(r ?? .failure(.internalError("loading version \(id) did not run"))) })
    }

    /// `overrides` (any subset of the settings' keys, nested ones too) laid over `base`.
    static func settings(_ base: RolloutSettings, overriddenBy overrides: JSONValue?) throws(RPCError) -> RolloutSettings {
        guard let overrides else { return base }
        guard case .object = overrides, case .object(let baseObject)? = try? JSONValueEncoder().encode(base) else {
            throw .invalidParams("'settings' must be an object of rollout settings", field: "settings")
        }
        func merge(_ a: [String: JSONValue], _ b: [String: JSONValue], path: String) throws(RPCError) -> [String: JSONValue] {
            var out = a
            for (k, v) in b {
                guard let old = a[k] else {
                    throw .invalidParams("unknown rollout setting '\(path)\(k)'; known: \(a.keys.sorted().joined(separator: ", "))", field: "settings.\(path)\(k)")
                }
                if case .object(let o) = old, case .object(let n) = v { out[k] = .object(try merge(o, n, path: path + k + ".")) } else { out[k] = v }
            }
            return out
        }
        guard case .object(let o) = overrides else { return base }
        do { return try JSONValueDecoder().decode(RolloutSettings.self, from: .object(try merge(baseObject, o, path: ""))) }
        catch let e as RPCError { throw e }
        catch { throw .invalidParams("rollout settings: \(error)", field: "settings") }
    }

    /// The offline gate's verdict in a version's stored report.
    static func offlineGate(_ report: String) -> (passed: Bool, summary: String) {
        // A fine-tuned version's stored report holds the job's result, the gate among it.
        guard let json = try? JSONParser.parse(Array(report.utf8)), case .object(let o) = json,
              case .object(let gate)? = o["gate"], case .bool(let passed)? = gate["passed"] else {
            return (false, "the version has no offline gate report (only fine-tuned versions have one)")
        }
        if passed { return (true, "passed") }
        if case .array(let reasons)? = gate["reasons"] {
            return (false, "failed: " + reasons.compactMap { if case .string(let s) = $0 { return s } else { return nil } }.joined(separator: "; "))
        }
        return (false, "failed")
    }

    // MARK: Resuming after a restart

    private func resume() {
        guard model.encoder != nil else { finishResuming(); return }
        let stateDir = self.stateDir
        store.run({ store throws(StoreError) -> RolloutRecord? in try store.rollouts().last }, completion: { [weak self] r in
            guard let self else { return }
            defer { self.finishResuming() }
            guard case .success(let rec?) = r, let rollout = Self.decode(rec) else { return }
            self.current = rollout
            guard !rollout.stage.isFinal else { return }
            self.logger.info("rollout resumed", metadata: ["rollout": "\(rollout.id)", "stage": "\(rollout.stage.rawValue)", "candidate": "\(rollout.candidate)"])
            // Until the candidate's files are loaded, the canary routes every request to the control.
            self.load(rollout.candidate, stateDir: stateDir) { [weak self] loaded in
                guard let self, var r = self.current, r.id == rollout.id, !r.stage.isFinal else { return }
                switch loaded {
                case .success(let l):
                    self.attach(l)
                    self.reloadKnownCosts(rollout.id)
                case .failure(let e):
                    if let t = try? r.abort(now: Date().timeIntervalSince1970, by: "fault", reason: "the candidate cannot be loaded after a restart: \(e.message)") {
                        self.current = r
                        self.transitioned(t)
                    }
                }
            }
        })
    }

    /// The reviewed disagreements' costs, after a restart.
    private func reloadKnownCosts(_ id: Int) {
        store.run({ store throws(StoreError) -> [DisagreementRecord] in
            try store.disagreements(rollout: id, labelled: true, since: nil, requestedOnly: false, limit: 10_000_000, after: nil)
        }, completion: { [weak self] r in
            guard let self, case .success(let rows) = r, self.current?.id == id else { return }
            for d in rows {
                guard let label = d.label else { continue }
                self.knownCosts[d.text] = (label == d.controlLabel ? 0 : self.policy.cost(truth: label, predicted: d.controlLabel),
                                           label == d.candidateLabel ? 0 : self.policy.cost(truth: label, predicted: d.candidateLabel))
            }
        })
    }

    static func encode(_ r: Rollout) -> String {
        (try? JSONWriter.string(JSONValueEncoder().encode(r))) ?? "{}"
    }

    static func decode(_ rec: RolloutRecord) -> Rollout? {
        guard let json = try? JSONParser.parse(Array(rec.state.utf8)) else { return nil }
        return try? JSONValueDecoder().decode(Rollout.self, from: json)
    }

    // MARK: Operators

    private func operate(_ p: RolloutAdvance.Params, _ ctx: RequestContext, _ change: (inout Rollout, Double) throws(RolloutError) -> Transition) {
        var r: Rollout
        do throws(RPCError) { r = try rollout(p.rollout) } catch { ctx.reply(.failure(error)); return }
        if ctx.method == RolloutAdvance.name && candidate == nil {
            ctx.reply(.failure(RPCError(.conflict, "the candidate of rollout \(r.id) is still loading; try again shortly")))
            return
        }
        let t: Transition
        do throws(RolloutError) { t = try change(&r, Date().timeIntervalSince1970) } catch {
            ctx.reply(.failure(RPCError(.conflict, error.description)))
            return
        }
        current = r
        transitioned(t) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure(let e): ctx.reply(.failure(e))
            case .success: ctx.reply(self.view(r))
            }
        }
    }

    // MARK: Disagreements and reviews

    private func disagreements(_ p: RolloutDisagreements.Params, _ ctx: RequestContext) {
        let r: Rollout
        do throws(RPCError) { r = try rollout(p.rollout) } catch { ctx.reply(.failure(error)); return }
        let limit = p.limit ?? 50
        guard (1...1000).contains(limit) else {
            ctx.reply(.failure(.invalidParams("'limit' must be 1 to 1000", field: "limit", expected: "1…1000", found: "\(limit)")))
            return
        }
        let after: (cost: Double, id: Int)?
        do throws(RPCError) {
            after = try PageCursor.decode(RolloutDisagreements.name, p.cursor, count: 2).map { (Double(bitPattern: UInt64(bitPattern: Int64($0[0]))), $0[1]) }
        } catch { ctx.reply(.failure(error)); return }
        flushDisagreements()
        let id = r.id, reviewed = p.reviewed, since = p.since, requestedOnly = p.requested ?? false
        store.run({ store throws(StoreError) -> [DisagreementRecord] in try store.disagreements(rollout: id, labelled: reviewed, since: since, requestedOnly: requestedOnly, limit: limit + 1, after: after) },
                  completion: { r in
            switch r {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let rows):
                let page = Array(rows.prefix(limit))
                let next = rows.count > limit ? page.last.map {
                    PageCursor.encode(RolloutDisagreements.name, [Int(Int64(bitPattern: $0.expectedCost.bitPattern)), $0.id])
                } : nil
                ctx.reply(RolloutDisagreements.Result(rollout: id, disagreements: page.map(Self.wire), nextCursor: next))
            }
        })
    }

    static func wire(_ d: DisagreementRecord) -> Disagreement {
        Disagreement(id: d.id, rollout: d.rollout, text: d.text, control: .init(label: d.controlLabel, confidence: d.controlConfidence),
                     candidate: .init(label: d.candidateLabel, confidence: d.candidateConfidence), expectedCost: d.expectedCost, seen: d.seen,
                     requested: d.requested, counted: d.counted, at: d.at, label: d.label, labelSource: d.labelSource)
    }

    private func review(_ p: RolloutReview.Params, _ ctx: RequestContext) {
        flushDisagreements()
        store.run({ store throws(StoreError) -> DisagreementRecord? in try store.disagreement(id: p.disagreement) }, completion: { [weak self] result in
            guard let self else { return }
            let d: DisagreementRecord
            switch result {
            case .failure(let e): ctx.reply(.failure(e)); return
            case .success(nil):
                ctx.reply(.failure(.invalidParams("no disagreement \(p.disagreement) (rollout/disagreements lists them)", field: "disagreement")))
                return
            case .success(let row?): d = row
            }
            guard var r = self.current, r.id == d.rollout, !r.stage.isFinal else {
                ctx.reply(.failure(RPCError(.conflict, "rollout \(d.rollout) is over; its disagreements can no longer be reviewed")))
                return
            }
            if d.labelSource == "review" {
                ctx.reply(.failure(RPCError(.conflict, "disagreement \(d.id) is already reviewed (as \(d.label ?? "?"))")))
                return
            }
            let labels = self.candidate?.version.labels ?? self.model.version?.labels ?? []
            guard labels.contains(p.label) else {
                let near = labels.filter { $0.contains(p.label) || p.label.contains($0) }.prefix(5)
                ctx.reply(.failure(.invalidParams("'\(p.label)' is not an intent of the candidate and control" + (near.isEmpty ? "" : "; did you mean \(near.joined(separator: ", "))?"),
                                                  field: "label", expected: "one of the \(labels.count) intents", found: "\"\(p.label)\"")))
                return
            }
            let controlCost = p.label == d.controlLabel ? 0 : self.policy.cost(truth: p.label, predicted: d.controlLabel)
            let candidateCost = p.label == d.candidateLabel ? 0 : self.policy.cost(truth: p.label, predicted: d.candidateLabel)
            let before = r, knownBefore = self.knownCosts[d.text]
            // The occurrences sampled for the test while the input waited for its review count now.
            for _ in 0..<d.requested { r.recordLabel(controlCost: controlCost, candidateCost: candidateCost) }
            self.current = r
            self.knownCosts[d.text] = (controlCost, candidateCost)
            // The review and the state that counts it are stored in one transaction.
            self.persist(review: (d.id, p.label, d.requested)) { [weak self] stored in
                guard let self else { return }
                switch stored {
                case .failure(let e):
                    if self.current?.id == before.id { self.current = before }
                    self.knownCosts[d.text] = knownBefore
                    ctx.reply(.failure(e))
                case .success:
                    var out = d
                    out.label = p.label
                    out.labelSource = "review"
                    out.counted += d.requested
                    out.requested = 0
                    self.decide()
                    ctx.reply(RolloutReview.Result(disagreement: Self.wire(out), rollout: self.view(self.current ?? r)))
                }
            }
        })
    }
}
