import EventLoop
import Foundation
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring
import Store

/// `risk/regions`: the regions of the input space ranked by the risk they carry, from the
/// stored and unflushed traffic and the reported failures. Fine-tuning asks it too.
///
/// - Important: Used only on the loop thread; the ranking runs on the compute pool.
final class RegionService: DaemonService {
    struct Ranked: Sendable {
        var regions: [Region]
        var traffic: Int
        var failures: Int
    }

    private let store: StoreThread
    private let traffic: TrafficLedger
    private let policy: RiskPolicy
    private let compute: ComputePool
    private let model: ActiveModel

    init(store: StoreThread, traffic: TrafficLedger, policy: RiskPolicy, compute: ComputePool, model: ActiveModel) {
        self.model = model
        self.store = store
        self.traffic = traffic
        self.policy = policy
        self.compute = compute
    }

    func register(on router: Router) {
        router.onDeferred(RiskRegions.self) { [unowned self] params, ctx in
            let limit = params.limit ?? 20
            guard (1...500).contains(limit) else {
                ctx.reply(.failure(.invalidParams("'limit' must be 1 to 500", field: "limit", expected: "1…500", found: "\(limit)")))
                return
            }
            let window = params.window ?? .all
            let now = Date().timeIntervalSince1970
            let since: Double? = window == .hour ? now - 3600 : window == .day ? now - 86_400 : nil
            self.rank(since: since, by: params.by == .fragility ? .fragility : .failures) { result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let r):
                    let expected = r.regions.filter { $0.kind == .intent }.reduce(0) { $0 + $1.costPer1000 }
                    let shown = r.regions.filter { params.kind == nil || $0.kind.rawValue == params.kind!.rawValue }.prefix(limit)
                    ctx.reply(RiskRegions.Result(window: window, traffic: r.traffic, failures: r.failures, expectedCostPer1000: expected,
                                                 regions: shown.map(RiskRegions.Region.init)))
                }
            }
        }
    }

    /// Ranks regions from the traffic and the reported failures since a time (nil: all), with
    /// the active version's fragility; `done` runs on the loop.
    func rank(since: Double?, by order: RegionRanking.Order = .failures, done: @escaping (Result<Ranked, RPCError>) -> Void) {
        let pending = traffic.pendingByLabel(sinceHour: Int((since ?? 0) / 3600))
        let fragility = model.version?.fragility
        let policy = self.policy
        let compute = self.compute
        store.run({ store throws(StoreError) -> ([String: TrafficTotal], [FeedbackRecord]) in
            (try store.traffic(since: since), try store.feedback(FeedbackFilter(since: since, limit: 100_000, withVectors: true)))
        }, completion: { result in
            switch result {
            case .failure(let e): done(.failure(e))
            case .success(let (stored, feedback)):
                var merged = stored
                for (l, n) in pending {
                    merged[l, default: TrafficTotal(count: 0, expectedErrors: 0)].count += n.count
                    merged[l]!.expectedErrors += n.expectedErrors
                }
                let counts = merged.mapValues(\.count)
                let expected = merged.mapValues(\.expectedErrors)
                let failures = feedback.filter { $0.kind != "confirmation" }.map {
                    FailureCase(predicted: $0.predictedLabel, correct: $0.correctLabel, cost: $0.cost, text: $0.text, vector: $0.vector)
                }
                compute.submit(work: { _ -> [Region] in
                    RegionRanking.rank(traffic: counts, expectedErrors: expected, failures: failures, impact: { policy.impact($0) },
                                       defaultCost: policy.unitCost, fragility: fragility, by: order)
                }, completion: { regions in
                    guard let regions else { done(.failure(.internalError("the ranking did not run"))); return }
                    done(.success(Ranked(regions: regions, traffic: counts.values.reduce(0, +), failures: failures.count)))
                })
            }
        })
    }
}

extension RiskRegions.Region {
    init(_ r: Region) {
        self.init(id: r.id, kind: r.kind == .intent ? .intent : .cluster, label: r.label, labels: r.labels, traffic: r.traffic,
                  failures: r.failures, trafficShare: r.trafficShare, rawFailureRate: r.rawFailureRate, failureRate: r.failureRate,
                  impact: r.impact, risk: r.risk, costPer1000: r.costPer1000, examples: r.examples,
                  fragility: r.fragility, fragilityRisk: r.fragilityRisk)
    }
}
