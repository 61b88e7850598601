import Foundation

/// One reported failure case, as region ranking sees it.
public struct FailureCase: Sendable {
    public var predicted: String
    public var correct: String?
    public var cost: Double
    public var text: String
    /// Sentence vector (may be empty: then it joins no cluster).
    public var vector: [Float]
    public init(predicted: String, correct: String?, cost: Double, text: String, vector: [Float]) {
        self.predicted = predicted; self.correct = correct; self.cost = cost; self.text = text; self.vector = vector
    }
}

/// A region of the input space and how much risk it carries.
public struct Region: Sendable, Codable, Equatable {
    /// `intent:<intent>` or `cluster:<n>`.
    public enum Kind: String, Sendable, Codable { case intent, cluster }
    public var id: String
    public var kind: Kind
    /// The intent (for a cluster, its most frequent predicted intent).
    public var label: String
    /// The intents a cluster spans.
    public var labels: [String]
    public var traffic: Int
    public var failures: Int
    /// traffic / all scored traffic in the window.
    public var trafficShare: Double
    /// failures / traffic, before smoothing.
    public var rawFailureRate: Double
    /// (failures + α) / (traffic + α + β), the Beta prior centred on the overall rate.
    public var failureRate: Double
    /// Impact weight of the intent × smoothed mean cost of its failures.
    public var impact: Double
    /// trafficShare × failureRate × impact: the expected cost per scored request from this region.
    public var risk: Double
    /// risk × 1000.
    public var costPer1000: Double
    public var examples: [String]
    /// Intent regions, when the version's fragility is known: the share of its held-out
    /// examples' typo variants whose prediction flips.
    public var fragility: Double? = nil
    /// smoothed traffic share × fragility × impact: the cost per request of the noisy inputs
    /// this intent is about to get wrong, whether or not any was reported yet.
    public var fragilityRisk: Double? = nil
}

/// Ranks regions by risk (docs/risk-model.md gives the formulas).
public enum RegionRanking {
    public struct Options: Sendable {
        /// Strength of the Beta prior, in pseudo-requests.
        public var priorStrength = 20.0
        /// Cosine similarity that joins a failure to a cluster's leader.
        public var clusterSimilarity: Float = 0.8
        /// Smallest cluster reported.
        public var minClusterSize = 3
        public var examples = 3
        public init() {}
    }

    /// What the ranking orders by: reported and expected failures (risk), or fragility under
    /// noisy input (fragilityRisk).
    public enum Order: String, Sendable { case failures, fragility }

    /// - Parameters:
    ///   - fragility: per intent, the active version's flip rate under typos; with it, every
    ///     intent it names is ranked (those without traffic at an add-one share), and each
    ///     intent region carries its fragility risk
    public static func rank(traffic: [String: Int], expectedErrors: [String: Double] = [:], failures: [FailureCase],
                            impact: (String) -> Double, defaultCost: Double, fragility: [String: Double]? = nil,
                            by order: Order = .failures, options o: Options = Options()) -> [Region] {
        let failing = failures
        let totalTraffic = max(1, traffic.values.reduce(0, +))
        // Not every failure is reported. The calibrated model expects Σ(1 − confidence) errors
        // in its traffic; reported / expected estimates the share reported, and counts of
        // reported failures are scaled up by it (with no estimate, by nothing).
        let expected = expectedErrors.values.reduce(0, +)
        let reporting = expected > 0 ? min(1, max(0.02, Double(failing.count) / expected)) : 1
        let scale = 1 / reporting
        let globalRate = min(0.5, Double(failing.count) * scale / Double(totalTraffic))
        let alpha = max(1e-3, globalRate) * o.priorStrength, beta = (1 - max(1e-3, globalRate)) * o.priorStrength
        let meanCost = failing.isEmpty ? defaultCost : failing.reduce(0) { $0 + $1.cost } / Double(failing.count)

        func region(id: String, kind: Region.Kind, label: String, labels: [String], traffic t: Int, cases: [FailureCase]) -> Region {
            let n = cases.count
            let estimated = Double(n) * scale
            let tt = max(Double(t), estimated)
            let share = tt / Double(totalTraffic)
            let raw = t > 0 ? min(1, Double(n) / Double(t)) : (n > 0 ? 1 : 0)
            let rate = (estimated + alpha) / (tt + alpha + beta)
            // Mean cost smoothed toward the overall mean with the same prior weight.
            let costs = cases.reduce(0) { $0 + $1.cost }
            let cost = (costs + meanCost * 5) / (Double(n) + 5)
            let imp = impact(label) * cost
            let risk = share * rate * imp
            let ex = cases.sorted { $0.cost > $1.cost }.prefix(o.examples).map(\.text)
            return Region(id: id, kind: kind, label: label, labels: labels, traffic: Int(tt.rounded()), failures: n, trafficShare: share,
                          rawFailureRate: raw, failureRate: rate, impact: imp, risk: risk, costPer1000: risk * 1000, examples: Array(ex))
        }

        var out: [Region] = []
        // Intents. A failure belongs to its corrected intent where one is known (what the person
        // meant), else to its predicted intent. An intent's volume is what was predicted as it
        // plus its (estimated) misses: failures corrected to it that were predicted as another.
        var byIntent: [String: [FailureCase]] = [:]
        var misses: [String: Int] = [:]
        for f in failing {
            let owner = f.correct ?? f.predicted
            byIntent[owner, default: []].append(f)
            if let c = f.correct, c != f.predicted { misses[c, default: 0] += 1 }
        }
        // Ranked by fragility, an intent with no traffic yet still counts (it may be about to fail).
        var intents = Set(traffic.keys).union(byIntent.keys)
        if order == .fragility, let fragility { intents.formUnion(fragility.keys) }
        var volumes: [String: Int] = [:]
        for label in intents { volumes[label] = (traffic[label] ?? 0) + Int((Double(misses[label] ?? 0) * scale).rounded()) }
        let totalVolume = Double(volumes.values.reduce(0, +)), count = Double(max(1, intents.count))
        for label in intents {
            var r = region(id: "intent:\(label)", kind: .intent, label: label, labels: [label], traffic: volumes[label]!, cases: byIntent[label] ?? [])
            if let f = fragility?[label] {
                r.fragility = f
                r.fragilityRisk = (Double(volumes[label]!) + 1) / (totalVolume + count) * f * r.impact
            }
            out.append(r)
        }
        // Clusters of failure vectors: a failure mode that spans intents.
        for (i, members) in clusters(failing, similarity: o.clusterSimilarity).enumerated() where members.count >= o.minClusterSize {
            let cases = members.map { failing[$0] }
            let labels = Array(Set(cases.map(\.predicted))).sorted()
            guard labels.count >= 2 else { continue }  // one intent: its intent region already shows it
            var counts: [String: Int] = [:]
            for c in cases { counts[c.predicted, default: 0] += 1 }
            let main = counts.max { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }!.key
            let t = labels.reduce(0) { $0 + (traffic[$1] ?? 0) }
            out.append(region(id: "cluster:\(i + 1)", kind: .cluster, label: main, labels: labels, traffic: max(t, cases.count), cases: cases))
        }
        if order == .fragility {
            return out.sorted {
                let a = $0.fragilityRisk ?? -1, b = $1.fragilityRisk ?? -1
                return a > b || (a == b && ($0.risk > $1.risk || ($0.risk == $1.risk && $0.id < $1.id)))
            }
        }
        return out.sorted { $0.risk > $1.risk || ($0.risk == $1.risk && $0.id < $1.id) }
    }

    /// Leader clustering on cosine similarity: each vector joins the first leader it is close
    /// enough to, or leads a new cluster. Deterministic for a given order.
    static func clusters(_ cases: [FailureCase], similarity: Float) -> [[Int]] {
        var leaders: [(vector: [Float], members: [Int])] = []
        for (i, c) in cases.enumerated() where !c.vector.isEmpty {
            let v = normalized(c.vector)
            if let j = leaders.firstIndex(where: { cosine($0.vector, v) >= similarity }) {
                leaders[j].members.append(i)
            } else {
                leaders.append((v, [i]))
            }
        }
        return leaders.map(\.members).sorted { $0.count > $1.count }
    }

    static func normalized(_ v: [Float]) -> [Float] {
        let n = max(v.reduce(0) { $0 + $1 * $1 }.squareRoot(), 1e-12)
        return v.map { $0 / n }
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        guard a.count == b.count else { return -1 }
        var s: Float = 0
        for i in 0..<a.count { s += a[i] * b[i] }
        return s
    }
}
