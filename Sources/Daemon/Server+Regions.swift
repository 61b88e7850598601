import Foundation
import JSON
import JSONRPC
import RobustdAPI
import Scoring
import Store

extension Server {
    func registerRegionMethods() {
        router.onDeferred(RiskRegions.self) { [unowned self] params, ctx in
            let limit = params.limit ?? 20
            guard (1...500).contains(limit) else {
                ctx.reply(.failure(.invalidParams("'limit' must be 1 to 500", field: "limit", expected: "1…500", found: "\(limit)")))
                return
            }
            let window = params.window ?? .all
            let now = Date().timeIntervalSince1970
            let since: Double? = window == .hour ? now - 3600 : window == .day ? now - 86_400 : nil
            self.rankRegions(since: since) { result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let r):
                    let expected = r.regions.filter { $0.kind == "intent" }.reduce(0) { $0 + $1.costPer1000 }
                    let shown = r.regions.filter { params.kind == nil || $0.kind == params.kind!.rawValue }.prefix(limit)
                    ctx.reply(RiskRegions.Result(window: window.rawValue, traffic: r.traffic, failures: r.failures,
                                                 expectedCostPer1000: expected,
                                                 regions: shown.map { (try? JSONValueEncoder().encode($0)) ?? .null }))
                }
            }
        }
    }

    struct RankedRegions: Sendable {
        var regions: [Region]
        var traffic: Int
        var failures: Int
    }

    /// Ranks regions from the stored and pending traffic and the reported failures since a time
    /// (nil: all); the ranking runs on the compute pool, `done` on the loop.
    func rankRegions(since: Double?, done: @escaping (Result<RankedRegions, RPCError>) -> Void) {
        // Traffic not yet flushed counts too.
        let sinceHour = Int((since ?? 0) / 3600)
        var pending: [String: TrafficTotal] = [:]
        for (k, n) in pendingTraffic where k.hour >= sinceHour {
            pending[k.label, default: TrafficTotal(count: 0, expectedErrors: 0)].count += n.count
            pending[k.label]!.expectedErrors += n.expectedErrors
        }
        let weights = impactWeights
        let defaultCost = feedbackCosts["complaint"] ?? 1
        store.run({ store throws(StoreError) -> ([String: TrafficTotal], [FeedbackRecord]) in
            (try store.traffic(since: since), try store.feedback(FeedbackFilter(since: since, limit: 100_000, withVectors: true)))
        }, completion: { [unowned self] result in
            switch result {
            case .failure(let e): done(.failure(e))
            case .success(let (stored, feedback)):
                var merged = stored
                for (l, n) in pending {
                    merged[l, default: TrafficTotal(count: 0, expectedErrors: 0)].count += n.count
                    merged[l]!.expectedErrors += n.expectedErrors
                }
                let traffic = merged.mapValues(\.count)
                let expected = merged.mapValues(\.expectedErrors)
                let failures = feedback.filter { $0.kind != "confirmation" }.map {
                    FailureCase(predicted: $0.predictedLabel, correct: $0.correctLabel, cost: $0.cost, text: $0.text, vector: $0.vector)
                }
                self.compute.submit(work: { _ -> [Region] in
                    RegionRanking.rank(traffic: traffic, expectedErrors: expected, failures: failures, impact: { weights[$0] ?? 1 }, defaultCost: defaultCost)
                }, completion: { regions in
                    guard let regions else { done(.failure(.internalError("the ranking did not run"))); return }
                    done(.success(RankedRegions(regions: regions, traffic: traffic.values.reduce(0, +), failures: failures.count)))
                })
            }
        })
    }
}
