import CLibUV
import Datasets
import Encoder
import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport
import Scoring
import Store
import Tensor
import Training

/// Fine-tune jobs (`finetune/start`, `status`, `list`, `cancel`, `finetune/event`): one job
/// at a time on its own thread, beside live traffic; the candidate is gated and, if it passes
/// and auto-promotion is on, made active. Jobs are stored and outlive their client.
///
/// - Important: Used only on the loop thread; the job's work runs on its thread.
final class FineTuneService: DaemonService {
    let model: ActiveModel
    let store: StoreThread
    let regions: RegionService
    let policy: RiskPolicy
    let repository: VersionRepository
    let settings: ConfigFile.FineTuneSettings
    let loop: Loop
    let logger: Logger
    /// The jobs known here, the waiting ones, the one running.
    var book = JobBook()
    var isStopping = false
    private var jobTimer: EventLoop.Timer?
    /// A fleet (PostgreSQL store): jobs are claimed from the shared table, one running in the
    /// whole fleet; jobs other replicas run are followed from their rows.
    var fleetJobs: Bool { store.backend == "postgresql" }
    /// A claim or a sync on the store thread (a fleet).
    var fleetWork = FleetWork()

    let rollout: RolloutService

    init(model: ActiveModel, store: StoreThread, regions: RegionService, policy: RiskPolicy, repository: VersionRepository,
         rollout: RolloutService, settings: ConfigFile.FineTuneSettings, loop: Loop, logger: Logger) {
        self.rollout = rollout
        self.model = model
        self.store = store
        self.regions = regions
        self.policy = policy
        self.repository = repository
        self.settings = settings
        self.loop = loop
        self.logger = logger
        loadJobs()
    }

    func stopping() { isStopping = true }

    func close() {
        jobTimer?.close()
        jobTimer = nil
        if let id = book.running { book[id]?.token.cancel() }
    }

    func gauges(into values: inout [String: Double]) {
        values["finetune.running"] = book.running == nil ? 0 : 1
    }

    /// Waits for the job's thread to stop (it stops within one training step once cancelled).
    func waitForJobThread() {
        guard let done = book.threadDone else { return }
        logger.info("waiting for the fine-tune job to stop", metadata: ["job": "\(book.running ?? 0)"])
        done.wait()
    }


    func register(on router: Router) {
        router.onDeferred(FineTuneStart.self) { [unowned self] params, ctx in
            self.model.whenReady { [weak self] _ in self?.startFineTune(params, ctx) }
        }

        router.onDeferred(FineTuneStatus.self) { [unowned self] params, ctx in
            self.withJob(params.job, ctx) { job in
                if params.watch == true { job.watchers.add(ctx.connection) }
                ctx.reply(job.view)
            }
        }

        router.on(FineTuneList.self) { [unowned self] params, _ throws(RPCError) in
            let limit = params.limit ?? 100
            guard (1...10_000).contains(limit) else {
                throw RPCError.invalidParams("'limit' must be 1 to 10000", field: "limit", expected: "1…10000", found: "\(limit)")
            }
            let before = try PageCursor.decode(FineTuneList.name, params.cursor, count: 1)?[0] ?? Int.max
            let all = self.book.all.map(\.view).filter { $0.id < before && (params.state == nil || $0.state == params.state) }
                .sorted { $0.id > $1.id }
            let page = Array(all.prefix(limit))
            let next = all.count > limit ? page.last.map { PageCursor.encode(FineTuneList.name, [$0.id]) } : nil
            return FineTuneList.Result(jobs: page, nextCursor: next)
        }

        router.onDeferred(FineTuneCancel.self) { [unowned self] params, ctx in
            self.withJob(params.job, ctx) { job in self.cancel(job, ctx) }
        }

    }

    /// The job, known here or (in a fleet) just made on another replica and read from its row.
    private func withJob(_ id: Int, _ ctx: RequestContext, _ body: @escaping (FineTuneJobState) -> Void) {
        if let job = book[id] { body(job); return }
        guard fleetJobs else { ctx.reply(.failure(Self.unknownJob(id))); return }
        store.run({ store throws(StoreError) -> JobRecord? in try store.jobs().first { $0.id == id } }, completion: { [weak self] r in
            guard let self else { return }
            switch r {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let rec):
                if let job = self.book[id] { body(job); return }
                guard let rec, let job = Self.jobState(rec) else { ctx.reply(.failure(Self.unknownJob(id))); return }
                self.book.add(job)
                if job.view.state == .queued || job.view.state == .scheduled { self.book.enqueue(id) }
                body(job)
            }
        })
    }

    private func cancel(_ job: FineTuneJobState, _ ctx: RequestContext) {
        if fleetJobs && book.running != job.view.id && !job.view.state.isFinished {
            cancelInFleet(job, ctx)
            return
        }
        switch job.view.state {
        case .scheduled, .queued:
            job.token.cancel()
            book.unqueue(job.view.id)
            finishJob(job, state: .cancelled, error: "cancelled before it started")
            ctx.reply(job.view)
        case .running:
            job.token.cancel()
            job.cancelWaiters.append(ctx)
        default:
            ctx.reply(job.view)  // already over: nothing to stop
        }
    }

    static func unknownJob(_ id: Int) -> RPCError {
        .invalidParams("no fine-tune job \(id) (finetune/list shows them)", field: "job", expected: "a job id", found: "\(id)")
    }

    /// Loads the jobs the store knows (a restart has already marked unfinished ones interrupted).
    private func loadJobs() {
        store.run({ store throws(StoreError) -> [JobRecord] in try store.jobs() }, completion: { [unowned self] result in
            guard case .success(let records) = result else { return }
            for r in records where self.book[r.id] == nil {
                guard let job = Self.jobState(r) else { continue }
                self.book.add(job)
                // A fleet's queued jobs (made by any replica) wait for whichever claims them.
                if self.fleetJobs && (job.view.state == .queued || job.view.state == .scheduled) { self.book.enqueue(r.id) }
            }
        })
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        t?.start(timeoutMs: 1000, repeatMs: 1000) { [unowned self] in self.pumpJobs() }
        jobTimer = t
    }

    // MARK: Starting

    private func startFineTune(_ p: FineTuneStart.Params, _ ctx: RequestContext) {
        guard let encoder = model.encoder, model.batcher != nil else { ctx.reply(.failure(DaemonError.noModel)); return }
        guard encoder.pooling == .mean else {
            ctx.reply(.failure(RPCError(.invalidParams, "fine-tuning needs a mean-pooling model; this one pools the CLS token")))
            return
        }
        guard let active = model.version else { ctx.reply(.failure(DaemonError.noVersion)); return }
        func bad(_ field: String, _ message: String, _ expected: String, _ found: String) {
            ctx.reply(.failure(.invalidParams(message, field: field, expected: expected, found: found)))
        }
        let method = p.method ?? .lora
        let layers = p.layers ?? 2
        guard (1...encoder.config.layers).contains(layers) else {
            return bad("layers", "'layers' must be 1 to \(encoder.config.layers)", "1…\(encoder.config.layers)", "\(layers)")
        }
        let rank = p.rank ?? 8
        guard (1...256).contains(rank) else { return bad("rank", "'rank' must be 1 to 256", "1…256", "\(rank)") }
        if let a = p.alpha, !(a > 0 && a.isFinite) { return bad("alpha", "'alpha' must be a positive number", "> 0", "\(a)") }
        let epochs = p.epochs ?? 6
        guard (1...100).contains(epochs) else { return bad("epochs", "'epochs' must be 1 to 100", "1…100", "\(epochs)") }
        let batchSize = p.batchSize ?? 16
        guard (1...512).contains(batchSize) else { return bad("batchSize", "'batchSize' must be 1 to 512", "1…512", "\(batchSize)") }
        for (name, v) in [("learningRate", p.learningRate), ("headLearningRate", p.headLearningRate)] {
            if let v, !(v > 0 && v < 1) { return bad(name, "'\(name)' must be in (0, 1)", "0 < lr < 1", "\(v)") }
        }
        if let d = p.decay, !(d >= 0 && d < 10) { return bad("decay", "'decay' must be in [0, 10)", "0 ≤ decay < 10", "\(d)") }
        if let r = p.typoRate, !(r >= 0 && r <= 1) { return bad("typoRate", "'typoRate' must be in [0, 1]", "0 ≤ rate ≤ 1", "\(r)") }
        if let n = p.noisyCopies, !(0...8).contains(n) { return bad("noisyCopies", "'noisyCopies' must be 0 to 8", "0…8", "\(n)") }
        if let n = p.replayCopies, !(0...8).contains(n) { return bad("replayCopies", "'replayCopies' must be 0 to 8", "0…8", "\(n)") }
        if let a = p.adversarialExamples, !(0...100_000).contains(a) {
            return bad("adversarialExamples", "'adversarialExamples' must be 0 to 100000", "0…100000", "\(a)")
        }
        if let e = p.adversarialEpsilon, !(e >= 0 && e <= 1) {
            return bad("adversarialEpsilon", "'adversarialEpsilon' must be in [0, 1]", "0 ≤ ε ≤ 1", "\(e)")
        }
        if let c = p.consistency, !(c >= 0 && c <= 100) { return bad("consistency", "'consistency' must be in [0, 100]", "0 ≤ λ ≤ 100", "\(c)") }
        if let r = p.replayRatio, !(r >= 0 && r <= 100) { return bad("replayRatio", "'replayRatio' must be in [0, 100]", "0 ≤ ratio ≤ 100", "\(r)") }
        if let m = p.maxSteps, m < 1 { return bad("maxSteps", "'maxSteps' must be at least 1", "≥ 1", "\(m)") }
        if let m = p.maxSeconds, !(m > 0) { return bad("maxSeconds", "'maxSeconds' must be positive", "> 0", "\(m)") }
        let top = p.top ?? 3
        guard (1...100).contains(top) else { return bad("top", "'top' must be 1 to 100", "1…100", "\(top)") }
        var window: (Int, Int)? = nil
        if let w = p.window {
            guard let parsed = Self.parseWindow(w) else {
                return bad("window", "'window' must be \"HH:MM-HH:MM\" (UTC)", "\"HH:MM-HH:MM\"", "\"\(w)\"")
            }
            window = parsed
        }
        if let parent = p.parent, parent != active.id {
            return bad("parent", "only the active version can be a parent for now (activate version \(parent) first with model/activate)",
                       "\(active.id)", "\(parent)")
        }
        // Which intents: "auto" (the top regions), "all", or region ids.
        let spec = p.regions ?? .auto
        let labels = active.labels
        let known = Set(labels)
        let finish = { [unowned self] (regionIDs: [String], intents: [String]) in
            guard !intents.isEmpty else {
                ctx.reply(.failure(RPCError(.invalidParams, "the chosen regions cover no intent of version \(active.id)")))
                return
            }
            self.store.run({ store throws(StoreError) -> String? in
                try store.versions().first { $0.id == active.id }?.dataset
            }, completion: { [unowned self] result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let parentDataset):
                    guard let dataset = p.dataset ?? parentDataset else {
                        bad("dataset", "version \(active.id) records no dataset; name one", "a dataset name", "nothing")
                        return
                    }
                    self.createJob(p, method: method, regions: regionIDs, intents: intents, parent: active.id, dataset: dataset,
                                   window: window, ctx: ctx)
                }
            })
        }
        let ids: [String]
        switch spec {
        case .all:
            finish(["all"], labels)
            return
        case .auto: ids = []
        case .ids(let list): ids = list
        }
        // Intent regions name their intent; clusters are resolved against the current ranking.
        for id in ids where id.hasPrefix("intent:") {
            let label = String(id.dropFirst("intent:".count))
            guard known.contains(label) else {
                return bad("regions", "region \(id) names no intent of version \(active.id)", "a label of the active version", id)
            }
        }
        for id in ids where !id.hasPrefix("intent:") && !id.hasPrefix("cluster:") {
            return bad("regions", "unknown region id '\(id)'", "intent:<label> or cluster:<n>", id)
        }
        if !ids.isEmpty && ids.allSatisfy({ $0.hasPrefix("intent:") }) {
            finish(ids, Array(Set(ids.map { String($0.dropFirst("intent:".count)) })).sorted())
            return
        }
        let byFragility = ids.isEmpty && p.by == .fragility
        if byFragility && active.fragility == nil {
            return bad("by", "version \(active.id) has no fragility measured (fit it again with model/fit, or fine-tune it)", "failures", "fragility")
        }
        regions.rank(since: nil, by: byFragility ? .fragility : .failures) { result in
            switch result {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let ranked):
                if ids.isEmpty {
                    let chosen = ranked.regions.filter {
                        $0.kind == .intent && known.contains($0.label) && (byFragility ? ($0.fragilityRisk ?? 0) > 0 : $0.risk > 0)
                    }.prefix(top)
                    guard !chosen.isEmpty else {
                        ctx.reply(.failure(RPCError(.invalidParams, byFragility
                            ? "no intent of version \(active.id) flips under typos on its held-out examples: nothing is fragile (risk/regions with by: fragility shows the figures)"
                            : "no region carries risk yet: score traffic and report failures first (risk/regions is empty)")))
                        return
                    }
                    finish(chosen.map(\.id), chosen.map(\.label).sorted())
                    return
                }
                var intents = Set<String>()
                for id in ids {
                    if id.hasPrefix("intent:") { intents.insert(String(id.dropFirst(7))); continue }
                    guard let r = ranked.regions.first(where: { $0.id == id }) else {
                        bad("regions", "no region \(id) in the current ranking (clusters are renumbered as failures arrive; see risk/regions)",
                            "a region id from risk/regions", id)
                        return
                    }
                    intents.formUnion(r.labels.filter { known.contains($0) })
                }
                finish(ids, intents.sorted())
            }
        }
    }

    /// "HH:MM-HH:MM" as minutes of the UTC day.
    static func parseWindow(_ s: String) -> (Int, Int)? {
        let parts = s.split(separator: "-")
        guard parts.count == 2 else { return nil }
        func minutes(_ t: Substring) -> Int? {
            let hm = t.split(separator: ":")
            guard hm.count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0..<24).contains(h), (0..<60).contains(m) else { return nil }
            return h * 60 + m
        }
        guard let a = minutes(parts[0]), let b = minutes(parts[1]), a != b else { return nil }
        return (a, b)
    }

    static func inWindow(_ w: (start: Int, end: Int)?, at t: Double) -> Bool {
        guard let w else { return true }
        let m = Int(t.truncatingRemainder(dividingBy: 86_400) / 60)
        return w.start < w.end ? (m >= w.start && m < w.end) : (m >= w.start || m < w.end)
    }

    private func createJob(_ p: FineTuneStart.Params, method: FineTuneMethod, regions: [String], intents: [String], parent: Int,
                           dataset: String, window: (Int, Int)?, ctx: RequestContext) {
        let now = Date().timeIntervalSince1970
        let waits = (p.notBefore.map { $0 > now } ?? false) || !Self.inWindow(window, at: now)
        var view = FineTuneJob(id: 0, state: waits ? .scheduled : .queued, method: method.rawValue, regions: regions, intents: intents,
                               parent: parent, dataset: dataset, createdAt: now, progress: .init(phase: waits ? "scheduled" : "queued"))
        view.notBefore = p.notBefore
        // The job's first view and parameters, committed with the job before the answer, let
        // finetune/list show it after any restart (its id is the row's).
        let stored = JSONWriter.string(.object(["job": (try? JSONValueEncoder().encode(view)) ?? .null,
                                                "params": (try? JSONValueEncoder().encode(p)) ?? .null]))
        store.run({ store throws(StoreError) -> Int in
            try store.createJob(params: stored, state: waits ? .scheduled : .queued)
        }, completion: { [unowned self] result in
            switch result {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let id):
                view.id = id
                let job = FineTuneJobState(view: view, params: p, targets: intents)
                job.window = window
                job.watchers.add(ctx.connection)
                job.progress = ctx.progress(token: p.workDoneToken)
                job.progress?.begin(title: "Fine-tuning version \(parent) (\(method.rawValue)) on \(intents.count) intent\(intents.count == 1 ? "" : "s")")
                self.book.add(job)
                self.book.enqueue(id)
                self.logger.info("fine-tune job created", metadata: ["job": "\(id)", "method": "\(method.rawValue)", "intents": "\(intents.count)",
                                                                      "state": "\(job.view.state.rawValue)"])
                ctx.reply(job.view)
                self.pumpJobs()
            }
        })
    }

}
