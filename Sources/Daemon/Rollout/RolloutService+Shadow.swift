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

/// Shadow scoring: each served answer scored unseen by the other version, at background
/// priority; disagreements sampled for the test and stored.
extension RolloutService {
    // MARK: Shadow scoring

    func pumpShadow() {
        guard !shadow.inFlight, !phase.stopping, let candidate, let r = current, !r.stage.isFinal, let first = shadow.queue.first else { return }
        // One batch scores the answers of one arm with the other version.
        let arm = first.arm
        let take = Array(shadow.queue.prefix(16).prefix { $0.arm == arm })
        shadow.queue.removeFirst(take.count)
        let other: ActiveModel.Serving
        if arm == .control { other = candidate } else {
            guard case .success(let control) = model.serving, control.version.id == r.control else { pumpShadow(); return }
            other = control
        }
        shadow.inFlight = true
        let rolloutID = r.id, stage = r.stage
        pipeline.score(take.map(\.text), with: other, token: CancellationToken(), background: true) { [weak self] result in
            guard let self else { return }
            self.shadow.inFlight = false
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
                if self.sampleCoin(rollout: r.id, text: item.text) < r.settings.reviewShare {
                    if let known = self.shadow.knownCosts[item.text] {
                        r.recordLabel(controlCost: known.control, candidateCost: known.candidate)
                        counted = 1
                    } else {
                        requested = 1
                    }
                }
                self.shadow.pendingDisagreements.append(DisagreementRecord(rollout: r.id, text: item.text, controlLabel: k.label, candidateLabel: c.label,
                                                                    controlConfidence: k.confidence, candidateConfidence: c.confidence,
                                                                    expectedCost: stake, requested: requested, counted: counted, at: now))
                if stage == .canary && r.stage == .canary {
                    if self.shadow.canaryDisagreeing.count >= 200_000 { self.shadow.canaryDisagreeing.removeAll(keepingCapacity: true) }
                    self.shadow.canaryDisagreeing.insert(item.text)
                }
            }
            r.recordShadow(requests: take.count, disagreeing: disagreeing)
            if stage == .canary { r.recordDisagreementsServed(arm: arm, count: disagreeing) }
            self.current = r
            self.upkeep.dirty = true
            if self.shadow.pendingDisagreements.count >= 64 { self.flushDisagreements() }
            self.decide()
            self.pumpShadow()
        }
    }

    /// The coin of one disagreeing occurrence: uniform in [0, 1), drawn from a hash of the
    /// rollout, the input and how many times it has disagreed before. It knows nothing of which
    /// version is right (the test's requirement), and a replay of the same traffic samples the
    /// same occurrences, so a rollout's decision can be reproduced.
    func sampleCoin(rollout: Int, text: String) -> Double {
        if shadow.sampledOccurrences.count >= 200_000 { shadow.sampledOccurrences.removeAll(keepingCapacity: true) }
        let n = shadow.sampledOccurrences[text, default: 0]
        shadow.sampledOccurrences[text] = n + 1
        var z = Self.routingHash(text) ^ (UInt64(truncatingIfNeeded: rollout) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(n) &* 0xD1B5_4A32_D192_ED03)
        // SplitMix64's finaliser: every input bit reaches every output bit.
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53)
    }

    func flushDisagreements() {
        guard !shadow.pendingDisagreements.isEmpty else { return }
        let items = shadow.pendingDisagreements
        shadow.pendingDisagreements = []
        store.run({ store throws(StoreError) in try store.addDisagreements(items) }, completion: { [weak self] r in
            if case .failure(let e) = r { self?.logger.warning("disagreements not stored", metadata: ["error": "\(e.message)", "count": "\(items.count)"]) }
        })
    }
}
