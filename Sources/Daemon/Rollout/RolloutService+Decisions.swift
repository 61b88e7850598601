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

/// Decisions and their effects: transitions stored (a promotion with its activation), events,
/// the periodic store of the state.
extension RolloutService {
    // MARK: Decisions

    func decide() {
        // Nothing is decided while the candidate is loading (after a restart): no evidence arrives then.
        // A follower never decides: the driving replica does.
        guard !isFollower, var r = current, !r.stage.isFinal, !promotion.inProgress, promotion.pending == nil, candidate != nil else { return }
        guard let t = r.decide(now: Date().timeIntervalSince1970) else { return }
        current = r
        transitioned(t)
    }

    /// Stores the transition (with the promotion's activation in the same transaction) and acts on it.
    func transitioned(_ t: Transition, then done: ((Result<Void, RPCError>) -> Void)? = nil) {
        guard let r = current else { return }
        logger.info("rollout \(t.to == .promoted ? "promoted" : t.to == .rolledBack ? "rolled back" : "advanced")", metadata: [
            "rollout": "\(r.id)", "candidate": "\(r.candidate)", "from": "\(t.from?.rawValue ?? "-")", "to": "\(t.to.rawValue)",
            "by": "\(t.by)", "reason": "\(t.reason)",
        ])
        emit(.transition, t)
        commit(t, done: done)
    }

    func commit(_ t: Transition, done: ((Result<Void, RPCError>) -> Void)?) {
        guard let r = current else { return }
        let id = r.id, stage = r.stage.rawValue, state = Self.encode(r), candidateID = r.candidate
        let promote = t.to == .promoted
        if promote { promotion.inProgress = true }
        flushDisagreements()
        upkeep.dirty = false
        store.run({ store throws(StoreError) in
            try store.updateRollout(id: id, stage: stage, state: state, at: t.at, review: nil)
            if promote { try store.setActive(candidateID) }
        }, completion: { [weak self] result in
            guard let self else { return }
            self.promotion.inProgress = false
            if case .failure(let e) = result {
                self.logger.error("rollout transition not stored; will retry", metadata: ["rollout": "\(id)", "error": "\(e.message)"])
                self.upkeep.dirty = true
                if promote {
                    self.promotion.pending = t
                    done?(.failure(e))
                    return
                }
            }
            if promote, case .success = result, let c = self.candidate, let layers = self.promotion.candidateLayers {
                self.promotion.inProgress = true
                self.model.activate(c.version, layers: layers)
                self.promotion.inProgress = false
            }
            if t.to.isFinal { self.dropCandidate() }
            done?(result.map { _ in () })
        })
    }

    func dropCandidate() {
        candidate = nil
        promotion.candidateLayers = nil
        shadow.queue = []
        shadow.canaryDisagreeing = []
        shadow.knownCosts = [:]
    }

    func activeChanged(_ v: ModelVersion) {
        guard !promotion.inProgress, !isFollower, var r = current, !r.stage.isFinal, v.id != r.control else { return }
        // Someone activated another version by hand: the rollout's control is gone.
        if let t = try? r.abort(now: Date().timeIntervalSince1970, by: "fault",
                                reason: "version \(v.id) was activated by hand during the rollout; its control (version \(r.control)) no longer serves") {
            current = r
            transitioned(t)
        }
    }

    func tick() {
        if isFollower { flushPooled(); return }
        guard let r = current else { return }
        takePooled()
        if let t = promotion.pending {
            promotion.pending = nil
            commit(t, done: nil)
            return
        }
        if !r.stage.isFinal { decide() }
        flushDisagreements()
        if upkeep.dirty { persist() }
        let now = Date().timeIntervalSince1970
        if !r.stage.isFinal && !watchers.isEmpty && now - upkeep.lastEvidenceAt >= 1 {
            upkeep.lastEvidenceAt = now
            emit(.evidence, nil)
        }
    }

    func persist(review: (id: Int, label: String, counted: Int)? = nil, done: ((Result<Void, RPCError>) -> Void)? = nil) {
        guard !isFollower, let r = current else { return }
        upkeep.dirty = false
        let id = r.id, stage = r.stage.rawValue, state = Self.encode(r), now = Date().timeIntervalSince1970
        store.run({ store throws(StoreError) in try store.updateRollout(id: id, stage: stage, state: state, at: now, review: review) },
                  completion: { [weak self] result in
            if case .failure(let e) = result, review == nil {
                self?.logger.warning("rollout state not stored; will retry", metadata: ["error": "\(e.message)"])
                self?.upkeep.dirty = true
            }
            done?(result)
        })
    }

    func flush() {
        flushDisagreements()
        if let t = promotion.pending { promotion.pending = nil; commit(t, done: nil) } else if upkeep.dirty { persist() }
    }

    func emit(_ kind: RolloutEvent.Params.Kind, _ t: Transition?) {
        guard let r = current else { return }
        let v = view(r)
        let p = RolloutEvent.Params(rollout: r.id, kind: kind, stage: r.stage, transition: t, evidence: v.evidence, progress: v.progress)
        watchers.notify(RolloutEvent.self, p)
    }

    func view(_ r: Rollout) -> RolloutView {
        RolloutView(r, loaded: candidate != nil && current?.id == r.id, now: Date().timeIntervalSince1970)
    }

    func rollout(_ id: Int?) throws(RPCError) -> Rollout {
        guard let r = current else { throw RPCError(.invalidParams, "no rollout yet: rollout/start puts a candidate on one (a fine-tune whose candidate passes its offline gate starts one by itself)") }
        if let id, id != r.id { throw RPCError(.invalidParams, "rollout \(id) is not the current one (\(r.id)); rollout/list lists every rollout") }
        return r
    }
}
