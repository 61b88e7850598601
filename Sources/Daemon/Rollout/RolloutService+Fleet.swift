import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import Rollout
import Store

/// A rollout across a fleet (docs/fleet.md): one replica drives it (its tests, its shadow, its
/// transitions); the others follow: they load the candidate, answer the canary's share of
/// their own traffic with it (the same sticky routing, so an input gets the same arm on every
/// replica), and pool what their arms served and the failure reports made through them into
/// the shared store, where the driver takes them into its tests every second.
extension RolloutService {
    /// What a following replica's arms saw since its last flush.
    struct PooledEvidence: Codable, Equatable {
        struct ArmDelta: Codable, Equatable {
            var requests = 0, inputs = 0, outOfScope = 0, flagged = 0, errors = 0
            var expectedCost = 0.0
        }
        struct Report: Codable, Equatable {
            var arm: Arm
            var cost: Double
        }
        var control = ArmDelta()
        var candidate = ArmDelta()
        var reports: [Report] = []
        var isEmpty: Bool { self == PooledEvidence() }
        subscript(arm: Arm) -> ArmDelta {
            get { arm == .candidate ? candidate : control }
            set { if arm == .candidate { candidate = newValue } else { control = newValue } }
        }
    }

    var isFollower: Bool { following.driver != nil }

    /// The last rollout, and (when it runs) the replica that drives it if it is another; this
    /// replica becomes its driver if the driver's lease expired. On the store thread.
    static func lastRollout(_ store: Store, now: Double) throws(StoreError) -> (RolloutRecord, driver: String?)? {
        guard let last = try store.rollouts().last else { return nil }
        return (last, last.isRunning ? try store.driveRollout(id: last.id, now: now) : nil)
    }

    /// Re-reads the fleet's running rollout: follows one another replica drives, takes one
    /// over whose driver's lease expired, drops one that ended. Called on a rollout
    /// notification and at every heartbeat.
    func refreshFleetRollout() {
        guard store.backend == "postgresql", model.encoder != nil, phase.resumed, !phase.stopping, !following.refreshing else { return }
        following.refreshing = true
        let now = Date().timeIntervalSince1970
        store.run({ store throws(StoreError) in try Self.lastRollout(store, now: now) }, completion: { [weak self] r in
            guard let self else { return }
            self.following.refreshing = false
            guard case .success(let found?) = r, let stored = Self.decode(found.0) else { return }
            self.reconcile(stored, driver: found.driver)
        })
    }

    /// Brings this replica's part in line with the stored rollout and who drives it.
    func reconcile(_ stored: Rollout, driver name: String?) {
        if stored.stage.isFinal {
            // The driver ended it (the pointer moves on its own if it was promoted).
            guard isFollower, current?.id == stored.id else { return }
            flushPooled()
            current = stored
            following.driver = nil
            dropCandidate()
            logger.info("the fleet's rollout ended", metadata: ["rollout": "\(stored.id)", "stage": "\(stored.stage.rawValue)"])
            return
        }
        if let name {
            // Another replica drives it: follow (the stored state is the driver's latest).
            let starting = current?.id != stored.id || !isFollower
            current = stored
            following.driver = name
            if starting {
                logger.info("following the fleet's rollout", metadata: ["rollout": "\(stored.id)", "stage": "\(stored.stage.rawValue)", "driver": "\(name)"])
                loadCandidate(stored)
            }
            return
        }
        // This replica drives it.
        if isFollower || current?.id != stored.id {
            logger.info("driving the fleet's rollout (its driver's lease expired, or it was started here)",
                        metadata: ["rollout": "\(stored.id)", "stage": "\(stored.stage.rawValue)"])
            flushPooled()
            let had = candidate != nil && current?.id == stored.id
            current = stored
            following.driver = nil
            if !had { loadCandidate(stored) }
        }
    }

    private func loadCandidate(_ r: Rollout) {
        candidate = nil
        repository.load(r.candidate) { [weak self] loaded in
            guard let self, let c = self.current, c.id == r.id, !c.stage.isFinal else { return }
            switch loaded {
            case .success(let l): self.attach(l)
            case .failure(let e):
                self.logger.error("the rollout's candidate cannot be loaded here; this replica answers with the active version",
                                  metadata: ["rollout": "\(r.id)", "error": "\(e.message)"])
            }
        }
    }

    // MARK: A follower's evidence

    func poolServed(arm: Arm, inputs: Int, outOfScope: Int, flagged: Int, expectedCost: Double) {
        var a = following.pooled[arm]
        a.requests += 1
        a.inputs += inputs
        a.outOfScope += outOfScope
        a.flagged += flagged
        a.expectedCost += expectedCost
        following.pooled[arm] = a
    }

    func poolError(arm: Arm) { following.pooled[arm].errors += 1 }

    func poolReport(arm: Arm, cost: Double) { following.pooled.reports.append(.init(arm: arm, cost: cost)) }

    /// Sends what this follower pooled to the shared store (every second, and when it stops).
    func flushPooled() {
        guard isFollower, !following.pooled.isEmpty, let r = current else { return }
        let evidence = following.pooled
        following.pooled = PooledEvidence()
        guard let bytes = try? JSONBytesEncoder().bytes(evidence) else { return }
        let payload = String(decoding: bytes, as: UTF8.self), id = r.id
        store.run({ store throws(StoreError) in try store.addRolloutEvidence(rollout: id, payload: payload) }, completion: { [weak self] res in
            guard let self, case .failure(let e) = res else { return }
            // Kept for the next flush (the store is away): nothing pooled is dropped.
            self.following.pooled.control = Self.sum(self.following.pooled.control, evidence.control)
            self.following.pooled.candidate = Self.sum(self.following.pooled.candidate, evidence.candidate)
            self.following.pooled.reports = evidence.reports + self.following.pooled.reports
            self.logger.debug("pooled rollout evidence kept for the next flush", metadata: ["error": "\(e.message)"])
        })
    }

    static func sum(_ a: PooledEvidence.ArmDelta, _ b: PooledEvidence.ArmDelta) -> PooledEvidence.ArmDelta {
        .init(requests: a.requests + b.requests, inputs: a.inputs + b.inputs, outOfScope: a.outOfScope + b.outOfScope,
              flagged: a.flagged + b.flagged, errors: a.errors + b.errors, expectedCost: a.expectedCost + b.expectedCost)
    }

    // MARK: The driver takes the followers' evidence

    func takePooled() {
        guard store.backend == "postgresql", !isFollower, !following.takingPooled, let r = current, r.stage == .canary else { return }
        following.takingPooled = true
        let id = r.id
        store.run({ store throws(StoreError) -> [String] in try store.takeRolloutEvidence(rollout: id) }, completion: { [weak self] res in
            guard let self else { return }
            self.following.takingPooled = false
            guard case .success(let payloads) = res, !payloads.isEmpty, var r = self.current, r.id == id, r.stage == .canary else { return }
            for p in payloads {
                guard let v = try? JSONParser.parse(Array(p.utf8)), let e = try? JSONValueDecoder().decode(PooledEvidence.self, from: v) else { continue }
                for arm in Arm.allCases {
                    let a = e[arm]
                    r.recordServed(arm: arm, requests: a.requests, inputs: a.inputs, outOfScope: a.outOfScope, flagged: a.flagged,
                                   expectedCost: a.expectedCost, errors: a.errors)
                }
                for rep in e.reports { r.recordFailureReport(arm: rep.arm, cost: rep.cost) }
            }
            self.current = r
            self.upkeep.dirty = true
            self.decide()
        })
    }

    /// The answer to an operator's change on a follower: send it to the driver.
    func followerRefusal(_ what: String) -> RPCError {
        RPCError(.conflict, "rollout \(current?.id ?? 0) is driven by replica \(following.driver ?? "?"); \(what) there (daemon/fleet lists the replicas)")
    }
}
