import CLibUV
import Datasets
import Encoder
import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring
import Store
import Tensor
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
    var costs: [String: [String: Double]]
    var impacts: [String: Double]
    var defaultCost: Double
}

/// What the job thread hands back.
struct FineTuneOutput: @unchecked Sendable {
    var candidate: LocalFineTune.Candidate
    var counts: DataSelection.Counts
}

extension Server {
    func registerFineTuneMethods() {
        router.onDeferred(FineTuneStart.self) { [unowned self] params, ctx in self.startFineTune(params, ctx) }

        router.on(FineTuneStatus.self) { [unowned self] params, ctx throws(RPCError) in
            guard let job = self.jobs[params.job] else { throw Self.unknownJob(params.job) }
            if params.watch == true { job.watchers[ctx.connection.id] = ctx.connection }
            return job.view
        }

        router.on(FineTuneList.self) { [unowned self] params, _ throws(RPCError) in
            let limit = params.limit ?? 100
            guard (1...10_000).contains(limit) else {
                throw RPCError.invalidParams("'limit' must be 1 to 10000", field: "limit", expected: "1…10000", found: "\(limit)")
            }
            let all = self.jobs.values.map(\.view).sorted { $0.id > $1.id }
            return FineTuneList.Result(jobs: Array(all.filter { params.state == nil || $0.state == params.state }.prefix(limit)))
        }

        router.onDeferred(FineTuneCancel.self) { [unowned self] params, ctx in
            guard let job = self.jobs[params.job] else { ctx.reply(.failure(Self.unknownJob(params.job))); return }
            switch job.view.state {
            case "scheduled", "queued":
                job.token.cancel()
                self.jobQueue.removeAll { $0 == job.view.id }
                self.finishJob(job, state: .cancelled, error: "cancelled before it started")
                ctx.reply(job.view)
            case "running":
                job.token.cancel()
                job.cancelWaiters.append(ctx)
            default:
                ctx.reply(job.view)  // already over: nothing to stop
            }
        }

        router.onDeferred(ModelActivate.self) { [unowned self] params, ctx in self.activate(params.version, ctx) }
    }

    static func unknownJob(_ id: Int) -> RPCError {
        .invalidParams("no fine-tune job \(id) (finetune/list shows them)", field: "job", expected: "a job id", found: "\(id)")
    }

    /// Loads the jobs the store knows (a restart has already marked unfinished ones interrupted).
    func loadJobs() {
        store.run({ store throws(StoreError) -> [JobRecord] in try store.jobs() }, completion: { [unowned self] result in
            guard case .success(let records) = result else { return }
            for r in records where self.jobs[r.id] == nil {
                guard let p = try? JSONParser.parse(Array(r.params.utf8)), let view = try? JSONValueDecoder().decode(FineTuneJob.self, from: p["job"] ?? .null)
                else { continue }
                var v = view
                v.id = r.id
                v.state = r.state.rawValue
                v.startedAt = r.startedAt
                v.finishedAt = r.finishedAt
                v.version = r.version
                v.error = r.error
                v.result = r.result.flatMap { try? JSONParser.parse(Array($0.utf8)) }
                if let pr = try? JSONParser.parse(Array(r.progress.utf8)), let progress = try? JSONValueDecoder().decode(FineTuneJob.Progress.self, from: pr) {
                    v.progress = progress
                }
                if r.state == .interrupted { v.progress.phase = "interrupted" }
                v.promoted = v.result?["promoted"]?.boolValue
                self.jobs[r.id] = FineTuneJobState(view: v, params: FineTuneStart.Params(), targets: v.intents)
            }
        })
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        t?.start(timeoutMs: 1000, repeatMs: 1000) { [unowned self] in self.pumpJobs() }
        jobTimer = t
    }

    // MARK: Starting

    private func startFineTune(_ p: FineTuneStart.Params, _ ctx: RequestContext) {
        guard let encoder, batcher != nil else { ctx.reply(.failure(Self.noModelError)); return }
        guard encoder.pooling == .mean else {
            ctx.reply(.failure(RPCError(.invalidParams, "fine-tuning needs a mean-pooling model; this one pools the CLS token")))
            return
        }
        guard let active = activeVersion else { ctx.reply(.failure(Self.noVersionError)); return }
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
        let spec = p.regions ?? .string("auto")
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
        if case .string(let s) = spec, s == "all" {
            finish(["all"], labels)
            return
        }
        var ids: [String] = []
        if case .string(let s) = spec, s == "auto" {
            ids = []
        } else if case .array(let a) = spec, !a.isEmpty, a.allSatisfy({ $0.stringValue != nil }) {
            ids = a.compactMap(\.stringValue)
        } else {
            return bad("regions", "'regions' must be \"auto\", \"all\" or an array of region ids from risk/regions",
                       "\"auto\", \"all\" or [\"intent:…\", \"cluster:…\"]", JSONWriter.string(spec))
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
        rankRegions(since: nil) { result in
            switch result {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let ranked):
                if ids.isEmpty {
                    let chosen = ranked.regions.filter { $0.kind == "intent" && known.contains($0.label) && $0.risk > 0 }.prefix(top)
                    guard !chosen.isEmpty else {
                        ctx.reply(.failure(RPCError(.invalidParams, "no region carries risk yet: score traffic and report failures first (risk/regions is empty)")))
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
        var view = FineTuneJob(id: 0, state: waits ? "scheduled" : "queued", method: method.rawValue, regions: regions, intents: intents,
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
                job.watchers[ctx.connection.id] = ctx.connection
                job.progress = ctx.progress(token: p.workDoneToken)
                job.progress?.begin(title: "Fine-tuning version \(parent) (\(method.rawValue)) on \(intents.count) intent\(intents.count == 1 ? "" : "s")")
                self.jobs[id] = job
                self.jobQueue.append(id)
                self.logger.info("fine-tune job created", metadata: ["job": "\(id)", "method": "\(method.rawValue)", "intents": "\(intents.count)",
                                                                      "state": "\(job.view.state)"])
                ctx.reply(job.view)
                self.pumpJobs()
            }
        })
    }

    // MARK: Running

    /// Starts the next job whose time has come, if none is running.
    func pumpJobs() {
        let now = Date().timeIntervalSince1970
        for id in jobQueue {
            guard let job = jobs[id], job.view.state == "scheduled" else { continue }
            if (job.view.notBefore ?? 0) <= now && Self.inWindow(job.window, at: now) {
                job.view.state = "queued"
                job.view.progress.phase = "queued"
                emit(job, kind: "phase", message: "its time has come; queued")
            }
        }
        guard runningJob == nil, !isStopping else { return }
        guard let next = jobQueue.first(where: { jobs[$0]?.view.state == "queued" }), let job = jobs[next] else { return }
        jobQueue.removeAll { $0 == next }
        runJob(job)
    }

    private struct JobData: Sendable {
        var train: [(String, String)]
        var heldOut: [(String, String)]
        var failures: [DataSelection.Failure]
        var count: Int
    }

    private func runJob(_ job: FineTuneJobState) {
        guard let parent = activeVersion, parent.id == job.view.parent, let parentEncoder = activeEncoder else {
            finishJob(job, state: .failed, error: "version \(job.view.parent) is no longer the active version; start the job again")
            return
        }
        runningJob = job.view.id
        job.view.state = "running"
        job.view.startedAt = Date().timeIntervalSince1970
        job.view.progress = .init(phase: "reading data")
        emit(job, kind: "started", message: nil)
        persist(job)
        let dataset = job.view.dataset
        let labels = parent.labels
        let known = Set(labels)
        store.run({ store throws(StoreError) -> JobData in
            guard let info = try store.dataset(named: dataset) else { throw StoreError(.notFound, "no dataset named '\(dataset)'") }
            let all = try store.examples(dataset: info.id, split: nil)
            var train = all.filter { $0.split == .train }
            var validation = all.filter { $0.split == .validation }
            // The same held-out split model/fit made (its default seed), so the parent never trained on it.
            if validation.isEmpty { (train, validation) = Server.stratifiedSplit(train, fraction: 0.1, seed: 42) }
            let failures = try store.feedback(FeedbackFilter(limit: 1_000_000)).compactMap { f -> DataSelection.Failure? in
                guard f.kind != "confirmation", let c = f.correctLabel, known.contains(c) else { return nil }
                return DataSelection.Failure(text: f.text, correct: c, cost: f.cost)
            }
            return JobData(train: train.filter { known.contains($0.label) }.map { ($0.text, $0.label) },
                           heldOut: validation.filter { known.contains($0.label) }.map { ($0.text, $0.label) }, failures: failures,
                           count: train.count)
        }, completion: { [unowned self] result in
            switch result {
            case .failure(let e):
                self.runningJob = nil
                self.finishJob(job, state: .failed, error: e.message)
                self.pumpJobs()
            case .success(let data):
                guard !job.token.isCancelled else {
                    self.runningJob = nil
                    self.finishJob(job, state: .cancelled, error: "cancelled")
                    self.pumpJobs()
                    return
                }
                // Production volume per intent, misses included, weighs the held-out examples.
                self.rankRegions(since: nil) { ranked in
                    let production = ((try? ranked.get())?.regions ?? []).filter { $0.kind == "intent" }
                        .reduce(into: [String: Double]()) { $0[$1.label, default: 0] += Double($1.traffic) }
                    self.launch(job, data: data, production: production, parent: parent, parentEncoder: parentEncoder)
                }
            }
        })
    }

    private func launch(_ job: FineTuneJobState, data: JobData, production: [String: Double], parent: ModelVersion, parentEncoder: SentenceEncoder) {
        let p = job.params
        var plan = LocalFineTune.Plan()
        let method = FineTuner.Method(rawValue: job.view.method) ?? .lora
        plan.settings = FineTuner.Settings(method: method)
        plan.settings.layers = p.layers ?? 2
        plan.settings.rank = p.rank ?? 8
        plan.settings.alpha = Float(p.alpha ?? Double(2 * plan.settings.rank))
        plan.settings.epochs = p.epochs ?? 6
        plan.settings.batchSize = p.batchSize ?? 16
        if let v = p.learningRate { plan.settings.learningRate = Float(v) }
        if let v = p.headLearningRate { plan.settings.headLearningRate = Float(v) }
        if let v = p.decay { plan.settings.decay = Float(v) }
        let seed = UInt64(truncatingIfNeeded: p.seed ?? 1)
        plan.settings.seed = seed
        plan.maxSteps = p.maxSteps
        plan.maxSeconds = p.maxSeconds
        plan.threads = 1
        let f = config.file.finetune
        plan.gate.minTargetReduction = f.minTargetReduction
        plan.gate.globalTolerance = f.globalTolerance
        plan.gate.confidence = f.confidence
        var sel = DataSelection.Options()
        sel.seed = seed
        if let v = p.typoRate { sel.typoRate = v }
        if let v = p.replayRatio { sel.replayRatio = v }
        let inputs = FineTuneInputs(production: production, plan: plan, selection: sel, parent: parent, parentEncoder: parentEncoder,
                                    labels: parent.labels, targets: Set(job.targets), train: data.train,
                                    heldOut: data.heldOut, failures: data.failures, fullDataCount: data.count + data.failures.count,
                                    costs: misroutingCosts, impacts: impactWeights, defaultCost: feedbackCosts["complaint"] ?? 1)
        let loop = self.loop
        let server = LoopBound(WeakServer(server: self), loop: loop)
        let token = job.token
        let jobID = job.view.id
        // Serving keeps priority: the job runs on its own thread at a lower scheduling priority,
        // and OpenBLAS runs every product on its caller's thread while a job runs.
        BLASThreads.limit = 1
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            _ = robustd_nice_this_thread(10)
            let outcome = Self.trainOnThread(inputs, token: token) { event in
                loop.post { server.value.server?.jobEvent(jobID, event) }
            }
            loop.post { server.value.server?.jobFinished(jobID, outcome) }
            done.signal()
        }
        thread.name = "robustd-finetune-\(jobID)"
        thread.stackSize = 8 << 20
        jobThreadDone = done
        thread.start()
    }

    struct WeakServer: @unchecked Sendable { weak var server: Server? }

    /// The job's work, off the loop: select the data, train, gate, build the candidate.
    static func trainOnThread(_ i: FineTuneInputs, token: CancellationToken,
                              events: @escaping @Sendable (LocalFineTune.Event) -> Void) -> Result<FineTuneOutput, LocalFineTune.Failure> {
        let selection = DataSelection.select(labels: i.labels, targets: i.targets, train: i.train, heldOut: i.heldOut,
                                             failures: i.failures, production: i.production, options: i.selection)
        var plan = i.plan
        plan.train = selection.train
        plan.earlyStopping = selection.earlyStopping
        plan.targetHeldOut = selection.targetHeldOut
        plan.globalHeldOut = selection.globalHeldOut
        let index = Dictionary(uniqueKeysWithValues: i.labels.enumerated().map { ($1, $0) })
        plan.outOfScopeTrain = i.train.compactMap { t, l in index[l].map { LabelledText(text: t, label: $0) } }
        let labels = i.labels, costs = i.costs, impacts = i.impacts, defaultCost = i.defaultCost
        let cost = { (truth: Int, predicted: Int) -> Double in
            costs[labels[truth]]?[labels[predicted]] ?? (impacts[labels[truth]] ?? 1) * defaultCost
        }
        do {
            let c = try LocalFineTune.run(encoder: i.parentEncoder, parent: i.parent, plan: plan, cost: cost, fullDataCount: i.fullDataCount,
                                          events: events, shouldStop: { token.isCancelled })
            return .success(FineTuneOutput(candidate: c, counts: selection.counts))
        } catch {
            return .failure(error)
        }
    }

    // MARK: Events and the end of a job

    func jobEvent(_ id: Int, _ event: LocalFineTune.Event) {
        guard let job = jobs[id], job.view.state == "running" else { return }
        switch event {
        case .phase(let name):
            job.view.progress.phase = name
            job.view.progress.percentage = name.hasPrefix("caching") ? 5 : name.hasPrefix("training") ? 20 : name.hasPrefix("measuring the candidate") ? 90 : job.view.progress.percentage
            emit(job, kind: "phase", message: name)
            persist(job)
        case .step(let step, let steps, let epoch, let loss, let elapsed):
            job.view.progress.step = step
            job.view.progress.steps = steps
            job.view.progress.epoch = epoch
            job.view.progress.loss = Double(loss)
            job.view.progress.etaSeconds = step > 0 ? elapsed / Double(step) * Double(max(0, steps - step)) : nil
            job.view.progress.percentage = 20 + 70 * step / max(1, steps)
            let now = Date().timeIntervalSince1970
            if now - job.lastEventAt >= 0.5 || step == steps {
                job.lastEventAt = now
                emit(job, kind: "step", message: nil)
            }
            if now - job.lastStoredAt >= 5 { persist(job) }
        case .evaluation(_, let score):
            job.view.progress.validationScore = score
            emit(job, kind: "evaluation", message: nil)
        }
    }

    func jobFinished(_ id: Int, _ outcome: Result<FineTuneOutput, LocalFineTune.Failure>) {
        jobThreadDone = nil
        BLASThreads.limit = Int.max
        runningJob = nil
        guard let job = jobs[id] else { return }
        // A stopping daemon leaves the job as running in the store: the next start marks it interrupted.
        guard !isStopping else { return }
        switch outcome {
        case .failure(.cancelled):
            finishJob(job, state: .cancelled, error: "cancelled")
            pumpJobs()
        case .failure(let e):
            finishJob(job, state: .failed, error: e.description)
            pumpJobs()
        case .success(let out):
            job.view.progress.phase = "writing"
            job.view.progress.percentage = 95
            emit(job, kind: "phase", message: "writing the version")
            saveCandidate(job, out)
        }
    }

    private func saveCandidate(_ job: FineTuneJobState, _ out: FineTuneOutput) {
        let c = out.candidate
        let passed = c.gate.passed
        let auto = job.params.autoPromote ?? config.file.finetune.autoPromote
        let promote = passed && auto
        let stateDir = config.stateDir
        let parentID = job.view.parent
        let dataset = job.view.dataset
        let method = job.view.method
        let baseModel = encoder?.folder ?? ""
        var result: [String: JSONValue] = [
            "training": (try? JSONValueEncoder().encode(c.report)) ?? .null,
            "selection": (try? JSONValueEncoder().encode(out.counts)) ?? .null,
            "gate": (try? JSONValueEncoder().encode(c.gate)) ?? .null,
            "regions": .array(job.view.regions.map { .string($0) }),
            "intents": .array(job.view.intents.map { .string($0) }),
            "job": .int(Int64(job.view.id)),
            "promoted": .bool(promote),
            "autoPromote": .bool(auto),
        ]
        let layers = c.layers
        let box = CandidateBox(c)
        let fixed = result
        store.run({ store throws(StoreError) -> ModelVersion in
            let id = try store.createVersion(parent: parentID, method: method, dataset: dataset)
            let r = box.candidate.version
            let v = ModelVersion(id: id, labels: r.labels, head: r.head, temperature: r.temperature, outOfScope: r.outOfScope, oosThreshold: r.oosThreshold)
            var withID = fixed
            withID["version"] = .int(Int64(id))
            let report = JSONValue.object(withID)
            do {
                try VersionFiles.write(.init(version: v, layers: box.candidate.layers, adapters: box.candidate.adapters),
                                       manifest: ["dataset": .string(dataset), "method": .string(method), "parent": .int(Int64(parentID)), "report": report],
                                       stateDir: stateDir, baseModel: baseModel)
            } catch {
                try? store.finishVersion(id: id, status: .failed, report: JSONWriter.string(report), activate: false)
                throw StoreError(.sqlite(0), "writing version \(id) failed: \(error)")
            }
            try store.finishVersion(id: id, status: passed ? .ready : .candidate, report: JSONWriter.string(report), activate: promote)
            return v
        }, completion: { [unowned self] r in
            switch r {
            case .failure(let e):
                self.finishJob(job, state: .failed, error: e.message)
            case .success(let v):
                if promote { self.setActive(v, layers: layers.mapValues(\.serving)) }
                job.view.version = v.id
                job.view.promoted = promote
                result["version"] = .int(Int64(v.id))
                job.view.result = .object(result)
                self.logger.info(promote ? "fine-tuned version promoted" : "fine-tuned version kept as a candidate", metadata: [
                    "job": "\(job.view.id)", "version": "\(v.id)", "gate": "\(passed ? "passed" : "failed")",
                    "targetReduction": "\(String(format: "%.3f", c.gate.targetReduction))",
                    "globalDifference": "\(String(format: "%+.4f", c.gate.global.difference))",
                ])
                self.finishJob(job, state: .succeeded, error: nil)
            }
            self.pumpJobs()
        })
    }

    struct CandidateBox: @unchecked Sendable {
        let candidate: LocalFineTune.Candidate
        init(_ c: LocalFineTune.Candidate) { candidate = c }
    }

    /// Records the end of a job, tells its watchers, answers the requests waiting on its end.
    func finishJob(_ job: FineTuneJobState, state: JobState, error: String?) {
        job.view.state = state.rawValue
        job.view.finishedAt = Date().timeIntervalSince1970
        job.view.error = error
        job.view.progress.phase = state == .succeeded ? "done" : state.rawValue
        if state == .succeeded { job.view.progress.percentage = 100; job.view.progress.etaSeconds = 0 }
        emit(job, kind: "finished", message: error)
        persist(job)
        let summary: String
        switch state {
        case .succeeded: summary = "version \(job.view.version ?? 0) \(job.view.promoted == true ? "promoted" : "kept as a candidate")"
        default: summary = "\(state.rawValue)\(error.map { ": \($0)" } ?? "")"
        }
        job.progress?.end(message: summary)
        job.progress = nil
        for w in job.cancelWaiters { w.reply(job.view) }
        job.cancelWaiters = []
        if state != .succeeded { logger.info("fine-tune job ended", metadata: ["job": "\(job.view.id)", "state": "\(state.rawValue)", "error": "\(error ?? "")"]) }
    }

    private func emit(_ job: FineTuneJobState, kind: String, message: String?) {
        var p = FineTuneEvent.Params(job: job.view.id, kind: kind, state: job.view.state, progress: job.view.progress)
        p.version = job.view.version
        p.promoted = job.view.promoted
        p.message = message
        for (id, c) in job.watchers {
            if c.isClosed { job.watchers[id] = nil; continue }
            c.notify(FineTuneEvent.self, p)
        }
        if kind == "step" || kind == "phase" {
            let pr = job.view.progress
            var text = pr.phase
            if let s = pr.step, let n = pr.steps { text += " step \(s)/\(n)" }
            if let l = pr.loss { text += String(format: ", loss %.4f", l) }
            if let eta = pr.etaSeconds { text += String(format: ", about %.0f s left", eta) }
            job.progress?.report(message: text, percentage: pr.percentage)
        }
    }

    private func persist(_ job: FineTuneJobState) {
        job.lastStoredAt = Date().timeIntervalSince1970
        let v = job.view
        let record = JobRecord(id: v.id, createdAt: v.createdAt, startedAt: v.startedAt, finishedAt: v.finishedAt,
                               state: JobState(rawValue: v.state) ?? .failed, params: "",
                               progress: JSONWriter.string((try? JSONValueEncoder().encode(v.progress)) ?? .object([:])),
                               result: v.result.map { JSONWriter.string($0) }, error: v.error, version: v.version)
        store.run({ store throws(StoreError) in try store.updateJob(record) }, completion: { _ in })
    }

    // MARK: Activation

    private func activate(_ id: Int, _ ctx: RequestContext) {
        guard encoder != nil else { ctx.reply(.failure(Self.noModelError)); return }
        let previous = activeVersion?.id
        // Load the files first: a version whose files are damaged is refused and nothing changes.
        readVersion(id, allowed: [.ready, .candidate], ctx: ctx) { [unowned self] loaded in
            self.store.run({ store throws(StoreError) in try store.setActive(id) }, completion: { [unowned self] r in
                switch r {
                case .failure(let e): ctx.reply(.failure(e))
                case .success:
                    self.setActive(loaded.version, layers: loaded.layers)
                    self.logger.info("version activated", metadata: ["version": "\(id)", "previous": "\(previous.map(String.init) ?? "-")"])
                    ctx.reply(ModelActivate.Result(active: id, previous: previous, changedLayers: loaded.layers.keys.sorted()))
                }
            })
        }
    }
}
