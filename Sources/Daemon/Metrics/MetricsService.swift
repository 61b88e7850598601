import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport
import Store

/// One `metrics/subscribe`.
///
/// - Important: Used only on the loop thread.
final class MetricsSubscription {
    let id: Int
    weak var connection: Connection?
    let filters: [String]?
    let intervalMs: UInt64
    let onChange: Bool
    var nextDue: UInt64
    var lastSent: [String: Double]?
    var coalesced = 0

    init(id: Int, connection: Connection, filters: [String]?, intervalMs: UInt64, onChange: Bool, now: UInt64) {
        self.id = id
        self.connection = connection
        self.filters = filters
        self.intervalMs = intervalMs
        self.onChange = onChange
        nextDue = now + intervalMs
    }
}

/// Live metrics: `metrics/get`, `metrics/subscribe` with `metrics/update` notifications
/// (coalesced for slow readers), `metrics/history` (snapshots in the store), Prometheus text.
///
/// - Important: Used only on the loop thread.
final class MetricsService: DaemonService {
    /// The largest output queue a subscriber may have before its updates are coalesced.
    static let subscriberQueueLimit = 256 << 10

    private let metrics: LiveMetrics
    private let model: ActiveModel
    private let store: StoreThread
    private let loop: Loop
    private let logger: Logger
    private let startedAt: Date
    private let snapshotSeconds: Double
    /// Every other service's gauges, gathered when asked for.
    private let gauges: () -> [String: Double]
    private var subscriptions: [Int: MetricsSubscription] = [:]
    private var nextSubscriptionID = 1
    private var subscriptionTimer: EventLoop.Timer?
    private var snapshotTimer: EventLoop.Timer?

    init(metrics: LiveMetrics, model: ActiveModel, store: StoreThread, loop: Loop, logger: Logger, startedAt: Date,
         snapshotSeconds: Double, gauges: @escaping () -> [String: Double]) {
        self.metrics = metrics
        self.model = model
        self.store = store
        self.loop = loop
        self.logger = logger
        self.startedAt = startedAt
        self.snapshotSeconds = snapshotSeconds
        self.gauges = gauges
        model.batcher?.onBatch = { [metrics] n in metrics.recordBatch(texts: n, at: LiveMetrics.now()) }
        startMetricSnapshots()
    }

    func close() {
        subscriptionTimer?.close()
        subscriptionTimer = nil
        subscriptions.removeAll()
        snapshotMetrics()
        snapshotTimer?.close()
        snapshotTimer = nil
    }

    func register(on router: Router) {

        router.on(MetricsGet.self) { [unowned self] params, _ throws(RPCError) in
            let top = params.top ?? 10
            guard (1...100).contains(top) else { throw RPCError.invalidParams("'top' must be 1 to 100", field: "top", expected: "1…100", found: "\(top)") }
            let t = LiveMetrics.now()
            let values = Self.filter(self.metricValues(now: t), params.metrics)
            let regions = self.metrics.regions(window: 3600, now: t, top: top).map {
                MetricsRegion(intent: $0.intent, requests: $0.requests, flaggedRate: $0.flaggedRate, failures: $0.failures,
                              expectedCostPer1000Requests: $0.expectedCostPer1000Requests, costShare: $0.costShare)
            }
            return MetricsGet.Result(at: Date().timeIntervalSince1970, version: self.model.version?.id,
                                     activatedAt: self.model.activatedAt?.timeIntervalSince1970, values: values, regions: regions)
        }

        router.on(MetricsSubscribe.self) { [unowned self] params, ctx throws(RPCError) in
            let interval = params.intervalMs ?? 1000
            guard (100...60_000).contains(interval) else {
                throw RPCError.invalidParams("'intervalMs' must be 100 to 60000", field: "intervalMs", expected: "100…60000", found: "\(interval)")
            }
            let names = Self.filter(self.metricValues(now: LiveMetrics.now()), params.metrics).keys.sorted()
            if let f = params.metrics, names.isEmpty {
                throw RPCError.invalidParams("no metric matches \(f); metrics/get lists the names", field: "metrics", expected: "metric names or prefixes",
                                             found: f.joined(separator: ", "))
            }
            let id = self.nextSubscriptionID
            self.nextSubscriptionID += 1
            self.subscriptions[id] = MetricsSubscription(id: id, connection: ctx.connection, filters: params.metrics,
                                                         intervalMs: UInt64(interval), onChange: params.onChange ?? false, now: self.loop.now)
            self.startSubscriptionTimer()
            return MetricsSubscribe.Result(subscription: id, intervalMs: interval, metrics: names)
        }

        router.on(MetricsUnsubscribe.self) { [unowned self] params, ctx throws(RPCError) in
            guard let s = self.subscriptions[params.subscription], s.connection === ctx.connection else {
                return MetricsUnsubscribe.Result(unsubscribed: false)
            }
            self.subscriptions[s.id] = nil
            return MetricsUnsubscribe.Result(unsubscribed: true)
        }

        router.onDeferred(MetricsHistory.self) { [unowned self] params, ctx in
            let now = Date().timeIntervalSince1970
            let since = params.since ?? now - 86_400, until = params.until ?? now
            guard since.isFinite, until.isFinite, since <= until else {
                ctx.reply(.failure(.invalidParams("'since' must not be after 'until'", field: "since", expected: "since ≤ until", found: "\(since) > \(until)")))
                return
            }
            if let step = params.step, !(step >= 1 && step.isFinite) {
                ctx.reply(.failure(.invalidParams("'step' must be at least 1 second", field: "step", expected: "≥ 1", found: "\(step)")))
                return
            }
            let name = params.metric
            self.store.run({ store throws(StoreError) -> ([(at: Double, value: Double)], [String]) in
                let points = try store.metricHistory(name: name, since: since, until: until)
                return (points, points.isEmpty ? try store.metricNames() : [])
            }, completion: { result in
                switch result {
                case .failure(let e): ctx.reply(.failure(e))
                case .success(let (points, names)):
                    if points.isEmpty && !names.isEmpty && !names.contains(name) && !Self.persistedName(name) {
                        ctx.reply(.failure(.invalidParams("no history for '\(name)'; persisted: the .1m window of each metric and the gauges (e.g. \(names.prefix(5).joined(separator: ", ")))",
                                                          field: "metric", expected: "a persisted metric name", found: name)))
                        return
                    }
                    var out = points.map { MetricsHistory.Point(at: $0.at, value: $0.value) }
                    if let step = params.step {
                        var buckets: [Int: (sum: Double, n: Int)] = [:]
                        for p in points { let b = Int(floor((p.at - since) / step)); buckets[b, default: (0, 0)].sum += p.value; buckets[b]!.n += 1 }
                        out = buckets.keys.sorted().map { b in MetricsHistory.Point(at: since + Double(b) * step, value: buckets[b]!.sum / Double(buckets[b]!.n)) }
                    }
                    ctx.reply(MetricsHistory.Result(metric: name, step: params.step, points: out))
                }
            })
        }

        router.on(MetricsPrometheus.self) { [unowned self] _, _ throws(RPCError) in
            MetricsPrometheus.Result(contentType: Prometheus.contentType, text: self.prometheusText())
        }
    }

    /// The names a snapshot keeps: every metric's 1-minute window, and the gauges.
    static func persistedName(_ name: String) -> Bool { name.hasSuffix(".1m") || gaugeNames.contains(name) }
    static let gaugeNames: Set<String> = ["queue.computePending", "queue.computeRunning", "queue.embedPending", "connections.open",
                                          "subscriptions", "finetune.running", "version.active", "documents.open", "store.up",
                                          "fleet.replicasAlive"]

    /// Persists a snapshot now and then (`--metrics-snapshot-seconds`), kept 30 days.
    private func startMetricSnapshots() {
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        let ms = UInt64(max(100, snapshotSeconds * 1000))
        t?.start(timeoutMs: ms, repeatMs: ms) { [unowned self] in self.snapshotMetrics() }
        snapshotTimer = t
    }

    func snapshotMetrics() {
        let values = metricValues(now: LiveMetrics.now()).filter { Self.persistedName($0.key) }
        let at = Date().timeIntervalSince1970
        store.run({ store throws(StoreError) in try store.addMetricSnapshot(at: at, values: values, keepSeconds: 30 * 86_400) },
                  completion: { [weak self] r in
            if case .failure(let e) = r { self?.logger.warning("a metric snapshot was not stored", metadata: ["error": "\(e.message)"]) }
        })
    }

    static func filter(_ values: [String: Double], _ filters: [String]?) -> [String: Double] {
        guard let filters, !filters.isEmpty else { return values }
        return values.filter { k, _ in filters.contains { k == $0 || k.hasPrefix($0 + ".") } }
    }

    /// Windowed metrics and gauges, by name.
    func metricValues(now t: Int) -> [String: Double] {
        // Every one-second bucket from the activation's to now's: counting whole seconds
        // elapsed instead missed the activation's own second (a request scored 1.6 s after
        // activation, straddling a second boundary, was left out of the window).
        let since = model.activatedAt.map { t - Int($0.timeIntervalSince1970.rounded(.down)) + 1 }
        var v = metrics.values(now: t, sinceActivation: since)
        v.merge(gauges()) { _, g in g }
        v["subscriptions"] = Double(subscriptions.count)
        return v
    }

    private func startSubscriptionTimer() {
        guard subscriptionTimer == nil else { return }
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        t?.start(timeoutMs: 50, repeatMs: 50) { [unowned self] in self.serveSubscriptions() }
        subscriptionTimer = t
    }

    /// Sends the updates that are due: the values are computed once per tick for everyone; a
    /// subscriber whose output queue is backed up is skipped (its next update carries the
    /// latest values), so a slow reader never queues without bound nor slows the others.
    func serveSubscriptions() {
        let now = loop.now
        var values: [String: Double]? = nil
        var at = 0.0
        for s in Array(subscriptions.values) {
            guard let c = s.connection, !c.isClosed else { subscriptions[s.id] = nil; continue }
            guard now >= s.nextDue else { continue }
            s.nextDue = max(s.nextDue + s.intervalMs, now)
            if values == nil { values = metricValues(now: LiveMetrics.now()); at = Date().timeIntervalSince1970 }
            let mine = Self.filter(values!, s.filters)
            if s.onChange && mine == s.lastSent { continue }
            if c.queuedOutputBytes > Self.subscriberQueueLimit {
                s.coalesced += 1
                metrics.coalescedUpdates += 1
                continue
            }
            c.notify(MetricsUpdate.self, .init(subscription: s.id, at: at, values: mine, coalesced: s.coalesced))
            s.coalesced = 0
            s.lastSent = mine
            metrics.sentUpdates += 1
        }
        if subscriptions.isEmpty {
            subscriptionTimer?.close()
            subscriptionTimer = nil
        }
    }

    // MARK: Prometheus

    func prometheusText() -> String {
        let g = gauges()
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(labels: [(String, String)], value: Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for s in samples {
                let labels = s.labels.isEmpty ? "" : "{" + s.labels.map { "\($0.0)=\"\(Prometheus.escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
                out += "\(name)\(labels) \(Prometheus.number(s.value))\n"
            }
        }
        let m = metrics
        family("robustd_build_info", "gauge", "robustd's version.", [([("version", RobustdVersion.current)], 1)])
        family("robustd_uptime_seconds", "gauge", "Seconds since the daemon started.", [([], Date().timeIntervalSince(startedAt))])
        family("robustd_score_requests_total", "counter", "score and risk/flag requests answered.", [([], m.scoreRequests.total)])
        family("robustd_scored_inputs_total", "counter", "Inputs scored.", [([], m.inputs.total)])
        family("robustd_flagged_inputs_total", "counter", "Scored inputs at medium or high risk, or out of scope.", [([], m.flagged.total)])
        family("robustd_out_of_scope_inputs_total", "counter", "Scored inputs flagged out of scope.", [([], m.outOfScope.total)])
        family("robustd_expected_cost_total", "counter", "Sum of the expected cost of scored inputs (pWrong x impact x the complaint cost), in the configuration's cost unit.",
               [([], m.expectedCost.total)])
        family("robustd_failure_reports_total", "counter", "Failure cases reported, by feedback kind.",
               m.failures.keys.sorted().map { ([("kind", $0)], m.failures[$0]!.total) })
        out += "# HELP robustd_score_request_duration_seconds Time from a score request's arrival to its answer, by request size (single: one input; batch: several).\n"
        out += "# TYPE robustd_score_request_duration_seconds histogram\n"
        for (size, h) in [("single", m.latency), ("batch", m.batchLatency)] {
            var acc = 0
            for (i, b) in WindowedHistogram.bounds.enumerated() {
                acc += h.cumulative[i]
                out += "robustd_score_request_duration_seconds_bucket{size=\"\(size)\",le=\"\(Prometheus.number(b))\"} \(acc)\n"
            }
            out += "robustd_score_request_duration_seconds_bucket{size=\"\(size)\",le=\"+Inf\"} \(h.count)\n"
            out += "robustd_score_request_duration_seconds_sum{size=\"\(size)\"} \(Prometheus.number(h.sum))\n"
            out += "robustd_score_request_duration_seconds_count{size=\"\(size)\"} \(h.count)\n"
        }
        family("robustd_encoder_batches_total", "counter", "Encoder batches run.", [([], m.batches.total)])
        family("robustd_encoder_batch_texts_total", "counter", "Texts in encoder batches.", [([], m.batchTexts.total)])
        family("robustd_compute_queue_depth", "gauge", "Compute jobs waiting.", [([], g["queue.computePending"] ?? 0)])
        family("robustd_embed_queue_texts", "gauge", "Texts waiting for an encoder batch.", [([], g["queue.embedPending"] ?? 0)])
        family("robustd_connections_open", "gauge", "Open client connections.", [([], g["connections.open"] ?? 0)])
        family("robustd_metric_subscriptions", "gauge", "Live metric subscriptions.", [([], Double(subscriptions.count))])
        family("robustd_metric_updates_coalesced_total", "counter", "Subscription updates skipped for a subscriber that was not reading.",
               [([], Double(m.coalescedUpdates))])
        family("robustd_active_version", "gauge", "The active version's id (0: none).", [([], g["version.active"] ?? 0)])
        family("robustd_finetune_running", "gauge", "1 while a fine-tune job runs.", [([], g["finetune.running"] ?? 0)])
        family("robustd_store_up", "gauge", "1 while the store answers (0: unreachable; scoring goes on, writes are refused).", [([], g["store.up"] ?? 1)])
        family("robustd_fleet_replicas_alive", "gauge", "Replicas whose heartbeat in the shared store is within the lease (1 without a fleet).",
               [([], g["fleet.replicasAlive"] ?? 1)])
        family("robustd_fleet_swaps_total", "counter", "Active-version swaps this replica made because another replica moved the fleet's pointer.",
               [([], g["fleet.swaps"] ?? 0)])
        if let id = g["rollout.id"] {
            // The current rollout's figures, per arm (control: the active version; candidate).
            let r = [("rollout", String(Int(id)))]
            func arms(_ name: String) -> [(labels: [(String, String)], value: Double)] {
                ["control", "candidate"].map { (r + [("arm", $0)], g["rollout.arm.\($0).\(name)"] ?? 0) }
            }
            family("robustd_rollout_stage", "gauge", "The current rollout's stage: 1 shadow, 2 canary, 3 promoted, 4 rolled back.", [(r, g["rollout.stage"] ?? 0)])
            family("robustd_rollout_shadow_inputs_total", "counter", "Inputs scored unseen by the other version during the rollout.", [(r, g["rollout.shadowRequests"] ?? 0)])
            family("robustd_rollout_shadow_dropped_total", "counter", "Inputs not shadow-scored because the background queue was full.", [(r, g["rollout.shadowDropped"] ?? 0)])
            family("robustd_rollout_disagreements_total", "counter", "Inputs on which the candidate and the control disagreed.", [(r, g["rollout.disagreements"] ?? 0)])
            family("robustd_rollout_reviewed_total", "counter", "Disagreements reviewed (the shadow test's labels).", [(r, g["rollout.labels"] ?? 0)])
            family("robustd_rollout_requests_total", "counter", "Requests each arm answered in the canary.", arms("requests"))
            family("robustd_rollout_failure_reports_total", "counter", "Failure reports about each arm's answers in the canary.", arms("failureReports"))
            family("robustd_rollout_failure_reports_per_request", "gauge", "Failure reports per request, per arm, over the canary.", arms("failureReportsPerRequest"))
            family("robustd_rollout_expected_cost_per_1000_requests", "gauge", "Expected cost per 1,000 inputs each arm answered in the canary.", arms("expectedCostPer1000"))
            family("robustd_rollout_reported_cost_per_1000_requests", "gauge", "Business cost of the failure reports about each arm's canary answers, per 1,000 requests.", arms("reportedCostPer1000"))
            family("robustd_rollout_out_of_scope_ratio", "gauge", "Share of each arm's inputs flagged out of scope in the canary.", arms("outOfScopeRate"))
            family("robustd_rollout_flagged_ratio", "gauge", "Share of each arm's inputs at medium or high risk in the canary.", arms("flaggedRate"))
            family("robustd_rollout_error_ratio", "gauge", "Share of each arm's requests that failed in the canary.", arms("errorRate"))
            family("robustd_rollout_latency_p99_seconds", "gauge", "p99 latency of each arm's latest 512 canary requests.", arms("latencyP99Ms").map { ($0.labels, $0.value / 1000) })
        }
        let t = LiveMetrics.now()
        let top = m.regions(window: 3600, now: t, top: 10)
        family("robustd_intent_expected_cost_per_1000_requests", "gauge",
               "Expected cost per 1,000 requests of all traffic from each of the top 10 intents by expected cost over the last hour.",
               top.map { ([("intent", $0.intent)], $0.costShare) })
        family("robustd_intent_requests_last_hour", "gauge", "Requests predicted as each of the top 10 intents over the last hour.",
               top.map { ([("intent", $0.intent)], $0.requests) })
        return out
    }

}
