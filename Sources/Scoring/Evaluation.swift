import Foundation
import Reports

/// A version measured on labelled data: accuracy, macro-F1, business cost, calibration,
/// out-of-scope detection (examples whose label the version does not know are out of
/// scope), and accuracy under word typos.
public enum Evaluation {
    public typealias TypoAccuracy = Reports.TypoAccuracy

    public typealias OutOfScopeReport = Reports.OutOfScopeReport

    public typealias Report = EvaluationReport

    /// Per-example outcome, for comparing two versions.
    public struct Outcome: Sendable {
        public var correct: [Bool]
        public var cost: [Double]
    }

    /// - Parameters:
    ///   - vectors: `[N, D]` sentence vectors from the version's encoder
    ///   - truth: N labels (any string; unknown to the version = out of scope)
    ///   - typoVectors: per typo rate, `[N, D]` vectors of the perturbed texts
    ///   - cost: the cost of answering `truth` as `predicted`
    ///   - misrouting: the configured misrouting cost of the pair, if any
    public static func evaluate(_ v: ModelVersion, vectors: [Float], truth: [String], typoVectors: [(rate: Double, vectors: [Float])],
                                cost: (String, String) -> Double, misrouting: (String, String) -> Double?) -> (Report, Outcome) {
        let N = truth.count, C = v.labels.count
        let index = Dictionary(uniqueKeysWithValues: v.labels.enumerated().map { ($1, $0) })
        let logits = v.head.logits(vectors, count: N)
        var pred = [Int](repeating: 0, count: N), conf = [Float](repeating: 0, count: N)
        for n in 0..<N {
            let p = softmax(logits[(n * C)..<((n + 1) * C)], temperature: v.temperature)
            let k = p.indices.max { p[$0] < p[$1] }!
            pred[n] = k; conf[n] = p[k]
        }
        let inScope = (0..<N).filter { index[truth[$0]] != nil }
        var correct = [Bool](repeating: false, count: N), costs = [Double](repeating: 0, count: N)
        var misCost = 0.0, misWith = 0
        for n in inScope {
            correct[n] = pred[n] == index[truth[n]]!
            if !correct[n] {
                let p = v.labels[pred[n]]
                costs[n] = cost(truth[n], p)
                if let m = misrouting(truth[n], p) { misCost += m; misWith += 1 }
            }
        }
        let nIn = max(1, inScope.count)
        // Macro-F1 over the labels that occur in the truth or the predictions (in scope).
        var tp = [Int](repeating: 0, count: C), fp = tp, fn = tp
        for n in inScope {
            let y = index[truth[n]]!
            if pred[n] == y { tp[y] += 1 } else { fp[pred[n]] += 1; fn[y] += 1 }
        }
        var f1s: [Double] = []
        for c in 0..<C where tp[c] + fp[c] + fn[c] > 0 {
            f1s.append(2 * Double(tp[c]) / Double(2 * tp[c] + fp[c] + fn[c]))
        }
        let ece = expectedCalibrationError(confidences: inScope.map { conf[$0] }, correct: inScope.map { correct[$0] })
        var oos: OutOfScopeReport? = nil
        let outside = (0..<N).filter { index[truth[$0]] == nil }
        if !outside.isEmpty && !inScope.isEmpty {
            let d = v.outOfScopeScores(vectors, count: N)
            let flagged = (0..<N).filter { d[$0] > v.oosThreshold }
            let hits = outside.filter { d[$0] > v.oosThreshold }.count
            oos = OutOfScopeReport(examples: outside.count, recall: Double(hits) / Double(outside.count),
                                   precision: flagged.isEmpty ? 0 : Double(hits) / Double(flagged.count),
                                   auroc: auroc(positives: outside.map { d[$0] }, negatives: inScope.map { d[$0] }))
        }
        var typos: [TypoAccuracy] = []
        for (rate, tv) in typoVectors {
            let tl = v.head.logits(tv, count: N)
            var ok = 0
            for n in inScope {
                var best = 0
                for c in 1..<C where tl[n * C + c] > tl[n * C + best] { best = c }
                if best == index[truth[n]]! { ok += 1 }
            }
            typos.append(TypoAccuracy(rate: rate, accuracy: Double(ok) / Double(nIn)))
        }
        let total = costs.reduce(0, +)
        let report = Report(version: v.id, examples: N, inScope: inScope.count,
                            accuracy: Double(inScope.filter { correct[$0] }.count) / Double(nIn),
                            macroF1: f1s.isEmpty ? 0 : f1s.reduce(0, +) / Double(f1s.count),
                            costPerRequest: total / Double(nIn), costPer1000: 1000 * total / Double(nIn),
                            misroutingCostPerRequest: misCost / Double(nIn), misroutedWithCost: misWith, ece: ece, outOfScope: oos, typos: typos)
        return (report, Outcome(correct: correct, cost: costs))
    }
}
