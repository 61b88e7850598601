import Foundation
import Scoring

/// A count over sliding windows: per-second buckets for the last hour, per-minute buckets
/// for the last day, and the total since start. Adding is O(1); a window sum is O(buckets).
///
/// - Important: Used only on the loop thread.
struct WindowedCounter {
    private var seconds: [Double]
    private var secondStamp: [Int]
    private var minutes = [Double](repeating: 0, count: 1440)
    private var minuteStamp = [Int](repeating: -1, count: 1440)
    private(set) var total = 0.0

    /// `fine: false` keeps minute buckets only (23 KB instead of 80 KB): per-intent counters.
    init(fine: Bool = true) {
        seconds = fine ? [Double](repeating: 0, count: 3600) : []
        secondStamp = fine ? [Int](repeating: -1, count: 3600) : []
    }

    mutating func add(_ v: Double, at t: Int) {
        if !seconds.isEmpty {
            let s = t % 3600
            if secondStamp[s] != t { secondStamp[s] = t; seconds[s] = 0 }
            seconds[s] += v
        }
        let m = t / 60, mi = m % 1440
        if minuteStamp[mi] != m { minuteStamp[mi] = m; minutes[mi] = 0 }
        minutes[mi] += v
        total += v
    }

    /// The sum over the last `window` seconds up to `now` (per second up to an hour, per
    /// minute beyond: whole minutes, the current one included).
    func sum(last window: Int, now: Int) -> Double {
        if window <= 3600 && !seconds.isEmpty {
            var s = 0.0
            for k in 0..<window {
                let t = now - k, i = ((t % 3600) + 3600) % 3600
                if secondStamp[i] == t { s += seconds[i] }
            }
            return s
        }
        let m = now / 60, n = min(1440, (window + 59) / 60)
        var s = 0.0
        for k in 0..<n {
            let mm = m - k, i = ((mm % 1440) + 1440) % 1440
            if minuteStamp[i] == mm { s += minutes[i] }
        }
        return s
    }
}

/// Latency (or any positive value) in fixed buckets, cumulative for Prometheus, and windowed
/// (per second for a minute, per minute for a day) for quantiles.
struct WindowedHistogram {
    /// Upper bounds, in seconds.
    static let bounds: [Double] = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
                                   0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10]
    private(set) var cumulative = [Int](repeating: 0, count: bounds.count + 1)
    private(set) var count = 0
    private(set) var sum = 0.0
    private var perSecond = [[Int]](repeating: [], count: 60)
    private var secondStamp = [Int](repeating: -1, count: 60)
    private var perMinute = [[Int]](repeating: [], count: 1440)
    private var minuteStamp = [Int](repeating: -1, count: 1440)

    static func bucket(_ v: Double) -> Int { bounds.firstIndex { v <= $0 } ?? bounds.count }

    mutating func observe(_ v: Double, at t: Int) {
        let b = Self.bucket(v)
        cumulative[b] += 1
        count += 1
        sum += v
        let s = t % 60
        if secondStamp[s] != t { secondStamp[s] = t; perSecond[s] = [Int](repeating: 0, count: Self.bounds.count + 1) }
        perSecond[s][b] += 1
        let m = t / 60, mi = m % 1440
        if minuteStamp[mi] != m { minuteStamp[mi] = m; perMinute[mi] = [Int](repeating: 0, count: Self.bounds.count + 1) }
        perMinute[mi][b] += 1
    }

    /// Counts per bucket over the last `window` seconds.
    func counts(last window: Int, now: Int) -> [Int] {
        var c = [Int](repeating: 0, count: Self.bounds.count + 1)
        if window <= 60 {
            for k in 0..<window {
                let t = now - k, i = ((t % 60) + 60) % 60
                if secondStamp[i] == t { for b in c.indices { c[b] += perSecond[i][b] } }
            }
        } else {
            let m = now / 60
            for k in 0..<min(1440, (window + 59) / 60) {
                let mm = m - k, i = ((mm % 1440) + 1440) % 1440
                if minuteStamp[i] == mm { for b in c.indices { c[b] += perMinute[i][b] } }
            }
        }
        return c
    }

    /// The q-quantile of bucketed counts, interpolated linearly inside its bucket (as
    /// Prometheus's histogram_quantile does); nil without observations.
    static func quantile(_ q: Double, _ c: [Int]) -> Double? {
        let n = c.reduce(0, +)
        guard n > 0 else { return nil }
        let rank = q * Double(n)
        var acc = 0
        for (b, k) in c.enumerated() {
            if Double(acc + k) >= rank && k > 0 {
                let lo = b == 0 ? 0 : bounds[b - 1], hi = b < bounds.count ? bounds[b] : bounds[bounds.count - 1]
                return lo + (hi - lo) * (rank - Double(acc)) / Double(k)
            }
            acc += k
        }
        return bounds.last
    }
}

/// Live metrics from traffic and feedback: counters over sliding windows, overall and per
/// intent, and the latency histogram.
///
/// - Important: Used only on the loop thread.
final class LiveMetrics {
    struct IntentCounters {
        var inputs = WindowedCounter(fine: false)
        var flagged = WindowedCounter(fine: false)
        var cost = WindowedCounter(fine: false)
        var failures = WindowedCounter(fine: false)
    }

    var scoreRequests = WindowedCounter()
    var inputs = WindowedCounter()
    var flagged = WindowedCounter()
    var outOfScope = WindowedCounter()
    /// Σ expected cost (pWrong × impact × the complaint cost) of the scored inputs.
    var expectedCost = WindowedCounter()
    var failures: [String: WindowedCounter] = [:]
    var batches = WindowedCounter()
    var batchTexts = WindowedCounter()
    /// Time to answer score and risk/flag requests of one input (what a client waits for one
    /// query), and of several inputs (batches: their time grows with their size).
    var latency = WindowedHistogram()
    var batchLatency = WindowedHistogram()
    var intents: [String: IntentCounters] = [:]
    /// Subscription updates skipped because the subscriber was not reading (coalesced).
    var coalescedUpdates = 0
    var sentUpdates = 0

    static func now() -> Int { Int(Date().timeIntervalSince1970) }

    func recordScored(label: String, flagged isFlagged: Bool, outOfScope oos: Bool, expectedCost c: Double, at t: Int) {
        inputs.add(1, at: t)
        if isFlagged { flagged.add(1, at: t) }
        if oos { outOfScope.add(1, at: t) }
        expectedCost.add(c, at: t)
        // Mutated in place (a copy out of the dictionary would copy the buckets too).
        intents[label, default: IntentCounters()].inputs.add(1, at: t)
        if isFlagged { intents[label]!.flagged.add(1, at: t) }
        intents[label]!.cost.add(c, at: t)
    }

    /// One score or risk/flag request: its inputs and its latency (by size class).
    func recordRequest(_ scores: [InputScore], seconds: Double, unitCost: Double) {
        let t = Self.now()
        scoreRequests.add(1, at: t)
        if scores.count <= 1 { latency.observe(seconds, at: t) } else { batchLatency.observe(seconds, at: t) }
        for s in scores {
            recordScored(label: s.label, flagged: s.risk.level != .low || s.outOfScope.flagged, outOfScope: s.outOfScope.flagged,
                         expectedCost: s.risk.pWrong * s.risk.impact * unitCost, at: t)
        }
    }

    func recordFailure(kind: String, intent: String, at t: Int) {
        failures[kind, default: WindowedCounter()].add(1, at: t)
        intents[intent, default: IntentCounters()].failures.add(1, at: t)
    }

    func recordBatch(texts: Int, at t: Int) {
        batches.add(1, at: t)
        batchTexts.add(Double(texts), at: t)
    }

    /// The windows reported: name and length in seconds.
    static let windows: [(String, Int)] = [("1m", 60), ("1h", 3600), ("24h", 86_400)]

    /// Every windowed value as a flat name → number map (the names `metrics/subscribe` takes).
    /// `sinceActivation` (seconds since the active version became active, capped at a day)
    /// adds a window named `sinceActivation`.
    func values(now t: Int, sinceActivation: Int?) -> [String: Double] {
        var out: [String: Double] = [:]
        var windows = Self.windows
        if let s = sinceActivation { windows.append(("sinceActivation", max(1, min(86_400, s)))) }
        for (name, w) in windows {
            let n = inputs.sum(last: w, now: t)
            out["requests.\(name)"] = n
            out["requestRate.\(name)"] = n / Double(w)
            out["scoreCalls.\(name)"] = scoreRequests.sum(last: w, now: t)
            out["flaggedRate.\(name)"] = n > 0 ? flagged.sum(last: w, now: t) / n : 0
            out["outOfScopeRate.\(name)"] = n > 0 ? outOfScope.sum(last: w, now: t) / n : 0
            out["expectedCostPer1000.\(name)"] = n > 0 ? 1000 * expectedCost.sum(last: w, now: t) / n : 0
            var allFailures = 0.0
            for (kind, c) in failures {
                let f = c.sum(last: w, now: t)
                out["failures.\(kind).\(name)"] = f
                allFailures += f
            }
            out["failures.\(name)"] = allFailures
            out["failureRate.\(name)"] = n > 0 ? allFailures / n : 0
            let lat = latency.counts(last: w, now: t)
            if let p = WindowedHistogram.quantile(0.5, lat) { out["latencyP50Ms.\(name)"] = 1000 * p }
            if let p = WindowedHistogram.quantile(0.99, lat) { out["latencyP99Ms.\(name)"] = 1000 * p }
            let blat = batchLatency.counts(last: w, now: t)
            if let p = WindowedHistogram.quantile(0.5, blat) { out["batchLatencyP50Ms.\(name)"] = 1000 * p }
            if let p = WindowedHistogram.quantile(0.99, blat) { out["batchLatencyP99Ms.\(name)"] = 1000 * p }
            let b = batches.sum(last: w, now: t)
            out["meanBatchSize.\(name)"] = b > 0 ? batchTexts.sum(last: w, now: t) / b : 0
        }
        return out
    }

    struct RegionRow: Codable, Sendable {
        var intent: String
        var requests: Double
        var flaggedRate: Double
        var failures: Double
        var expectedCostPer1000Requests: Double
        /// This intent's expected cost per 1,000 requests of all traffic (its share of the total).
        var costShare: Double
    }

    /// The top `k` intents by expected cost over the window.
    func regions(window w: Int, now t: Int, top k: Int) -> [RegionRow] {
        let total = max(1, inputs.sum(last: w, now: t))
        var rows: [RegionRow] = []
        for (label, c) in intents {
            let n = c.inputs.sum(last: w, now: t)
            let cost = c.cost.sum(last: w, now: t)
            let f = c.failures.sum(last: w, now: t)
            guard n > 0 || f > 0 else { continue }
            rows.append(RegionRow(intent: label, requests: n, flaggedRate: n > 0 ? c.flagged.sum(last: w, now: t) / n : 0, failures: f,
                                  expectedCostPer1000Requests: n > 0 ? 1000 * cost / n : 0, costShare: 1000 * cost / total))
        }
        return Array(rows.sorted { $0.costShare > $1.costShare || ($0.costShare == $1.costShare && $0.intent < $1.intent) }.prefix(k))
    }
}
