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

/// Operators (advance, abort), the disagreement listing and reviews.
extension RolloutService {
    // MARK: Operators

    func operate(_ p: RolloutAdvance.Params, _ ctx: RequestContext, _ change: (inout Rollout, Double) throws(RolloutError) -> Transition) {
        if isFollower, p.rollout == nil || p.rollout == current?.id {
            ctx.reply(.failure(followerRefusal(ctx.method == RolloutAdvance.name ? "advance it" : "abort it")))
            return
        }
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

    func disagreements(_ p: RolloutDisagreements.Params, _ ctx: RequestContext) {
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

    func review(_ p: RolloutReview.Params, _ ctx: RequestContext) {
        if isFollower { ctx.reply(.failure(followerRefusal("review its disagreements"))); return }
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
            let before = r, knownBefore = self.shadow.knownCosts[d.text]
            // The occurrences sampled for the test while the input waited for its review count now.
            for _ in 0..<d.requested { r.recordLabel(controlCost: controlCost, candidateCost: candidateCost) }
            self.current = r
            self.shadow.knownCosts[d.text] = (controlCost, candidateCost)
            // The review and the state that counts it are stored in one transaction.
            self.persist(review: (d.id, p.label, d.requested)) { [weak self] stored in
                guard let self else { return }
                switch stored {
                case .failure(let e):
                    if self.current?.id == before.id { self.current = before }
                    self.shadow.knownCosts[d.text] = knownBefore
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
