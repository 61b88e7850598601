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

/// A job's stored row, and the jobs of a fleet: one job table shared by every replica, a job
/// claimed by one of them, cancels asked from any.
extension FineTuneService {
    /// A job as its row holds it: the view and the parameters it was started with.
    static func jobState(_ r: JobRecord) -> FineTuneJobState? {
        guard let p = try? JSONParser.parse(Array(r.params.utf8)), let view = try? JSONValueDecoder().decode(FineTuneJob.self, from: p["job"] ?? .null)
        else { return nil }
        var v = view
        v.id = r.id
        apply(r, to: &v)
        let params = (try? JSONValueDecoder().decode(FineTuneStart.Params.self, from: p["params"] ?? .object([:]))) ?? FineTuneStart.Params()
        let job = FineTuneJobState(view: v, params: params, targets: v.intents)
        job.window = params.window.flatMap(parseWindow)
        return job
    }

    /// The row's state, times, progress and result laid over a view.
    static func apply(_ r: JobRecord, to v: inout FineTuneJob) {
        v.state = FineTuneJob.State(rawValue: r.state.rawValue) ?? .failed
        v.startedAt = r.startedAt
        v.finishedAt = r.finishedAt
        v.version = r.version
        v.error = r.error
        v.result = r.result.flatMap { try? JSONValueDecoder().decode(FineTuneReport.self, fromJSON: $0) }
        if let pr = try? JSONParser.parse(Array(r.progress.utf8)), let progress = try? JSONValueDecoder().decode(FineTuneJob.Progress.self, from: pr) {
            v.progress = progress
        }
        if r.state == .interrupted || r.state == .cancelled { v.progress.phase = r.state.rawValue }
        v.promoted = v.result?.promoted
    }

    // MARK: A fleet's jobs

    /// Follows the shared job table: jobs made elsewhere appear, jobs run elsewhere move on
    /// (their watchers here hear it), a cancel asked on another replica stops the job here.
    func syncFleetJobs() {
        guard fleetJobs, !fleetWork.syncing else { return }
        fleetWork.syncing = true
        store.run({ store throws(StoreError) -> [JobRecord] in try store.jobs() }, completion: { [weak self] r in
            guard let self else { return }
            self.fleetWork.syncing = false
            guard case .success(let records) = r else { return }
            for rec in records {
                if rec.id == self.book.running {
                    if rec.cancelRequested, let job = self.book[rec.id], !job.token.isCancelled {
                        self.logger.info("fine-tune job cancelled from another replica", metadata: ["job": "\(rec.id)"])
                        job.token.cancel()
                    }
                    continue
                }
                guard let job = self.book[rec.id] else {
                    if let job = Self.jobState(rec) {
                        self.book.add(job)
                        if job.view.state == .queued || job.view.state == .scheduled { self.book.enqueue(rec.id) }
                    }
                    continue
                }
                let before = job.view
                var v = job.view
                Self.apply(rec, to: &v)
                guard v.state != before.state || v.progress.step != before.progress.step || v.progress.phase != before.progress.phase
                        || v.version != before.version else { continue }
                job.view = v
                if v.state.isFinished {
                    self.book.unqueue(rec.id)
                    self.emit(job, kind: .finished, message: v.error)
                    job.progress?.end(message: "\(v.state.rawValue) on replica \(rec.owner)")
                    job.progress = nil
                    for w in job.cancelWaiters { w.reply(job.view) }
                    job.cancelWaiters = []
                } else if v.state == .running && before.state != .running {
                    self.book.unqueue(rec.id)
                    self.emit(job, kind: .started, message: "running on replica \(rec.owner)")
                } else {
                    self.emit(job, kind: .phase, message: nil)
                }
            }
        })
    }

    /// Claims the fleet's oldest queued job if no job runs anywhere, and runs it here.
    func claimFleetJob() {
        guard fleetJobs, book.running == nil, !isStopping, !fleetWork.claiming, model.version != nil else { return }
        fleetWork.claiming = true
        let now = Date().timeIntervalSince1970
        store.run({ store throws(StoreError) -> JobRecord? in try store.claimNextJob(now: now) }, completion: { [weak self] r in
            guard let self else { return }
            self.fleetWork.claiming = false
            guard case .success(let rec?) = r else { return }
            guard let job = self.book[rec.id] ?? Self.jobState(rec) else {
                self.logger.error("a claimed fine-tune job cannot be read", metadata: ["job": "\(rec.id)"])
                return
            }
            self.book.add(job)
            self.book.unqueue(rec.id)
            self.logger.info("fine-tune job claimed", metadata: ["job": "\(rec.id)", "createdBy": "\(rec.owner)"])
            if self.isStopping {
                self.finishJob(job, state: .interrupted, error: "the replica began to stop as it claimed the job")
                return
            }
            self.runClaimed(job)
        })
    }

    /// Cancels a job this replica does not run: a queued one at once, a running one by asking
    /// its replica (the answer waits for its end, as a local cancel does).
    func cancelInFleet(_ job: FineTuneJobState, _ ctx: RequestContext) {
        let id = job.view.id
        let now = Date().timeIntervalSince1970
        store.run({ store throws(StoreError) -> Bool in try store.requestJobCancel(id: id, now: now) }, completion: { [weak self] r in
            guard let self else { return }
            switch r {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(true):
                job.token.cancel()
                self.book.unqueue(id)
                self.finishJob(job, state: .cancelled, error: "cancelled before it started")
                ctx.reply(job.view)
            case .success(false):
                job.cancelWaiters.append(ctx)
                self.syncFleetJobs()
            }
        })
    }
}
