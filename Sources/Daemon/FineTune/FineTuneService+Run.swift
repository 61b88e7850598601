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

extension FineTuneService {
    // MARK: Running

    /// Starts the next job whose time has come, if none is running.
    func pumpJobs() {
        let now = Date().timeIntervalSince1970
        for id in book.waiting {
            guard let job = book[id], job.view.state == .scheduled else { continue }
            if (job.view.notBefore ?? 0) <= now && Self.inWindow(job.window, at: now) {
                job.view.state = .queued
                job.view.progress.phase = "queued"
                emit(job, kind: .phase, message: "its time has come; queued")
                if fleetJobs { persist(job) }
            }
        }
        if fleetJobs {
            // One job at a time in the whole fleet: whichever replica claims it runs it.
            syncFleetJobs()
            claimFleetJob()
            return
        }
        guard book.running == nil, !isStopping else { return }
        guard let next = book.waiting.first(where: { book[$0]?.view.state == .queued }), let job = book[next] else { return }
        book.unqueue(next)
        runJob(job)
    }

    private struct JobData: Sendable {
        var train: [(String, String)]
        var heldOut: [(String, String)]
        var failures: [DataSelection.Failure]
        var count: Int
    }

    /// Runs a job this replica claimed from the fleet's table.
    func runClaimed(_ job: FineTuneJobState) { runJob(job) }

    private func runJob(_ job: FineTuneJobState) {
        guard let parent = model.version, parent.id == job.view.parent, let parentEncoder = model.versionEncoder else {
            finishJob(job, state: .failed, error: "version \(job.view.parent) is no longer the active version; start the job again")
            return
        }
        book.running = job.view.id
        job.view.state = .running
        job.view.startedAt = Date().timeIntervalSince1970
        job.view.progress = .init(phase: "reading data")
        emit(job, kind: .started, message: nil)
        persist(job)
        let dataset = job.view.dataset
        let labels = parent.labels
        let known = Set(labels)
        let parentID = parent.id
        store.run({ store throws(StoreError) -> JobData in
            // A version refitted on its validation split (or descended from one) has trained
            // on the held-out data that early stopping and the gate would judge it on.
            let records = Dictionary(uniqueKeysWithValues: try store.versions().map { ($0.id, $0) })
            var ancestor: Int? = parentID
            while let a = ancestor, let r = records[a] {
                if (try? JSONParser.parse(Array(r.report.utf8)))?["refitted"]?.boolValue == true {
                    throw StoreError(.invalid, "version \(parentID)\(a == parentID ? " was" : " descends from version \(a), which was") refitted on its validation split (model/fit refit: true), so no held-out data is left to early-stop and gate a fine-tune on; fine-tune from a version fitted with refit: false")
                }
                ancestor = r.parent
            }
            guard let info = try store.dataset(named: dataset) else { throw StoreError(.notFound, "no dataset named '\(dataset)'") }
            let all = try store.examples(dataset: info.id, split: nil)
            var train = all.filter { $0.split == .train }
            var validation = all.filter { $0.split == .validation }
            // The same held-out split model/fit made (its default seed), so the parent never trained on it.
            if validation.isEmpty { (train, validation) = Scoring.stratifiedSplit(train, label: \.label, fraction: 0.1, seed: 42) }
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
                self.book.running = nil
                self.finishJob(job, state: .failed, error: e.message)
                self.pumpJobs()
            case .success(let data):
                guard !job.token.isCancelled else {
                    self.book.running = nil
                    self.finishJob(job, state: .cancelled, error: "cancelled")
                    self.pumpJobs()
                    return
                }
                // Production volume per intent, misses included, weighs the held-out examples.
                self.regions.rank(since: nil) { ranked in
                    let production = ((try? ranked.get())?.regions ?? []).filter { $0.kind == .intent }
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
        if let v = p.consistency { plan.settings.consistency = Float(v) }
        if let v = p.adversarialExamples { plan.adversarialExamples = v }
        if let v = p.adversarialEpsilon { plan.settings.adversarialEpsilon = Float(v) }
        let seed = UInt64(truncatingIfNeeded: p.seed ?? 1)
        plan.settings.seed = seed
        plan.maxSteps = p.maxSteps
        plan.maxSeconds = p.maxSeconds
        plan.threads = 1
        let f = settings
        plan.gate.minTargetReduction = f.minTargetReduction
        plan.gate.globalTolerance = f.globalTolerance
        plan.gate.confidence = f.confidence
        var sel = DataSelection.Options()
        sel.seed = seed
        if let v = p.typoRate { sel.typoRate = v }
        if let v = p.noisyCopies { sel.typoCopies = v }
        if let v = p.replayRatio { sel.replayRatio = v }
        if let v = p.replayCopies { sel.replayCopies = v }
        let inputs = FineTuneInputs(production: production, plan: plan, selection: sel, parent: parent, parentEncoder: parentEncoder,
                                    labels: parent.labels, targets: Set(job.targets), train: data.train,
                                    heldOut: data.heldOut, failures: data.failures, fullDataCount: data.count + data.failures.count,
                                    policy: policy)
        let loop = self.loop
        let service = LoopBound(Weak(service: self), loop: loop)
        let token = job.token
        let jobID = job.view.id
        // Serving keeps priority: the job runs on its own thread at a lower scheduling priority,
        // and OpenBLAS runs every product on its caller's thread while a job runs.
        BLASThreads.limit = 1
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            _ = robustd_nice_this_thread(10)
            let outcome = Self.trainOnThread(inputs, token: token) { event in
                loop.post { service.value.service?.jobEvent(jobID, event) }
            }
            loop.post { service.value.service?.jobFinished(jobID, outcome) }
            done.signal()
        }
        thread.name = "robustd-finetune-\(jobID)"
        thread.stackSize = 8 << 20
        book.threadDone = done
        thread.start()
    }

    private struct Weak { weak var service: FineTuneService? }

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
        // The candidate learns the words of the corrections (typos in them are left out as
        // typos of more frequent words).
        plan.normaliser = i.parent.normaliser?.adding(texts: i.failures.map(\.text))
        let labels = i.labels, policy = i.policy
        let cost = { (truth: Int, predicted: Int) -> Double in policy.cost(truth: labels[truth], predicted: labels[predicted]) }
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
        guard let job = book[id], job.view.state == .running else { return }
        switch event {
        case .phase(let name):
            job.view.progress.phase = name
            job.view.progress.percentage = name.hasPrefix("caching") ? 5 : name.hasPrefix("training") ? 20 : name.hasPrefix("measuring the candidate") ? 90 : job.view.progress.percentage
            emit(job, kind: .phase, message: name)
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
                emit(job, kind: .step, message: nil)
            }
            // In a fleet the row is how the other replicas follow the job: every second.
            if now - job.lastStoredAt >= (fleetJobs ? 1 : 5) { persist(job) }
        case .evaluation(_, let score):
            job.view.progress.validationScore = score
            emit(job, kind: .evaluation, message: nil)
        }
    }

    func jobFinished(_ id: Int, _ outcome: Result<FineTuneOutput, LocalFineTune.Failure>) {
        book.threadDone = nil
        BLASThreads.limit = Int.max
        book.running = nil
        guard let job = book[id] else { return }
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
            emit(job, kind: .phase, message: "writing the version")
            saveCandidate(job, out)
        }
    }

    private func saveCandidate(_ job: FineTuneJobState, _ out: FineTuneOutput) {
        let c = out.candidate
        let passed = c.gate.passed
        let auto = job.params.autoPromote ?? settings.autoPromote
        // A candidate that passes its offline gate goes on a staged rollout, which promotes or
        // rolls it back on live evidence; nothing is made active here.
        let startRollout = passed && auto
        let files = self.repository.files
        let parentID = job.view.parent
        let dataset = job.view.dataset
        let method = job.view.method
        var result = FineTuneReport(training: c.report, selection: out.counts, gate: c.gate, regions: job.view.regions,
                                    intents: job.view.intents, job: job.view.id, autoPromote: auto)
        let box = CandidateBox(c)
        let fixed = result
        store.run({ store throws(StoreError) -> ModelVersion in
            try files.create(in: store, parent: parentID, method: method, dataset: dataset, status: passed ? .ready : .candidate,
                                  activate: false) { id in
                let v = box.candidate.version.withID(id)
                var withID = fixed
                withID.version = id
                return (.init(version: v, layers: box.candidate.layers, adapters: box.candidate.adapters),
                        ["dataset": .string(dataset), "method": .string(method), "parent": .int(Int64(parentID)),
                         "report": (try? JSONValueEncoder().encode(withID)) ?? .null])
            }
        }, completion: { [unowned self] r in
            switch r {
            case .failure(let e):
                self.finishJob(job, state: .failed, error: e.message)
            case .success(let v):
                job.view.version = v.id
                job.view.promoted = false
                result.version = v.id
                job.view.result = result
                self.logger.info(startRollout ? "fine-tuned version passed its offline gate; starting its rollout" : "fine-tuned version kept as a candidate", metadata: [
                    "job": "\(job.view.id)", "version": "\(v.id)", "gate": "\(passed ? "passed" : "failed")",
                    "targetReduction": "\(String(format: "%.3f", c.gate.targetReduction))",
                    "globalDifference": "\(String(format: "%+.4f", c.gate.global.difference))",
                ])
                guard startRollout else { self.finishJob(job, state: .succeeded, error: nil); break }
                self.rollout.start(candidate: v.id, overrides: nil, force: false) { [weak self] r in
                    guard let self else { return }
                    switch r {
                    case .success(let view):
                        result.rollout = view.id
                    case .failure(let e):
                        result.rolloutError = e.message
                        self.logger.warning("the candidate's rollout did not start", metadata: ["version": "\(v.id)", "error": "\(e.message)"])
                    }
                    job.view.result = result
                    self.finishJob(job, state: .succeeded, error: nil)
                }
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
        job.view.state = FineTuneJob.State(rawValue: state.rawValue) ?? .failed
        job.view.finishedAt = Date().timeIntervalSince1970
        job.view.error = error
        job.view.progress.phase = state == .succeeded ? "done" : state.rawValue
        if state == .succeeded { job.view.progress.percentage = 100; job.view.progress.etaSeconds = 0 }
        emit(job, kind: .finished, message: error)
        persist(job)
        let summary: String
        switch state {
        case .succeeded:
            if let r = job.view.result?.rollout {
                summary = "version \(job.view.version ?? 0) passed its offline gate; rollout \(r) started (shadow)"
            } else {
                summary = "version \(job.view.version ?? 0) kept as a candidate"
            }
        default: summary = "\(state.rawValue)\(error.map { ": \($0)" } ?? "")"
        }
        job.progress?.end(message: summary)
        job.progress = nil
        for w in job.cancelWaiters { w.reply(job.view) }
        job.cancelWaiters = []
        if state != .succeeded { logger.info("fine-tune job ended", metadata: ["job": "\(job.view.id)", "state": "\(state.rawValue)", "error": "\(error ?? "")"]) }
    }

    func emit(_ job: FineTuneJobState, kind: FineTuneEvent.Params.Kind, message: String?) {
        var p = FineTuneEvent.Params(job: job.view.id, kind: kind, state: job.view.state, progress: job.view.progress)
        p.version = job.view.version
        p.promoted = job.view.promoted
        p.message = message
        job.watchers.notify(FineTuneEvent.self, p)
        if kind == .step || kind == .phase {
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
                               state: JobState(rawValue: v.state.rawValue) ?? .failed, params: "",
                               progress: JSONWriter.string((try? JSONValueEncoder().encode(v.progress)) ?? .object([:])),
                               result: v.result.flatMap { try? JSONBytesEncoder().string($0) }, error: v.error, version: v.version)
        store.run({ store throws(StoreError) in try store.updateJob(record) }, completion: { _ in })
    }

}
