import Foundation
import Tensor

/// Seeded, per-class folds: each class's items shuffled and dealt round the folds in turn, so
/// every fold holds about `1/k` of every class. Classes in sorted order, as `stratifiedSplit`.
public func stratifiedFolds<T>(_ items: [T], label: (T) -> String, folds k: Int, seed: UInt64) -> [[T]] {
    precondition(k >= 2, "at least two folds")
    var byLabel: [String: [T]] = [:]
    for x in items { byLabel[label(x), default: []].append(x) }
    var rng = SeededRandom(seed: seed)
    var out = [[T]](repeating: [], count: k)
    var next = 0
    for l in byLabel.keys.sorted() {
        var xs = byLabel[l]!
        xs.shuffle(using: &rng)
        // Start each class where the last one stopped, so small classes do not all land in fold 0.
        for x in xs { out[next % k].append(x); next += 1 }
    }
    return out
}

extension HeadFitting {
    /// λ chosen by k-fold cross-validation: for every fold, the path of `lambdas` (strong to
    /// weak, warm-started) fitted on the other folds and scored on it; the λ with the best
    /// mean held-out accuracy wins, ties to the lower mean log-loss.
    public struct CrossValidation: Sendable {
        public var lambda: Double
        public var lambdas: [Double]
        /// Mean held-out accuracy and log-loss per λ.
        public var accuracy: [Double]
        public var logLoss: [Double]
    }

    public static func crossValidatedLambda(_ x: [Float], labels y: [Int], classes C: Int, dimension D: Int,
                                            lambdas: [Double], folds k: Int, seed: UInt64) -> CrossValidation {
        let folds = stratifiedFolds(Array(y.indices), label: { String(y[$0]) }, folds: k, seed: seed)
        var acc = [Double](repeating: 0, count: lambdas.count), loss = acc
        func rows(_ idx: [Int]) -> [Float] { idx.flatMap { x[($0 * D)..<(($0 + 1) * D)] } }
        // Fewer items than folds leaves some folds empty: the means are over the others.
        let used = Double(max(1, folds.filter { !$0.isEmpty }.count))
        for (f, held) in folds.enumerated() where !held.isEmpty {
            let rest = folds.enumerated().filter { $0.offset != f }.flatMap(\.element)
            let trX = rows(rest), trY = rest.map { y[$0] }
            let vaX = rows(held), vaY = held.map { y[$0] }
            var start: LinearHead? = nil
            for (i, lambda) in lambdas.enumerated() {
                let fit = LogisticRegression.fit(trX, labels: trY, classes: C, dimension: D, lambda: lambda, start: start)
                start = fit.head
                let logits = fit.head.logits(vaX, count: vaY.count)
                let correct = vaY.indices.filter { Scorer.argmax(logits[($0 * C)..<(($0 + 1) * C)]) == vaY[$0] }.count
                acc[i] += Double(correct) / Double(vaY.count) / used
                loss[i] += TemperatureScaling.meanNLL(logits: logits, labels: vaY, classes: C) / used
            }
        }
        var best = 0
        for i in lambdas.indices where acc[i] > acc[best] + 1e-12 || (abs(acc[i] - acc[best]) <= 1e-12 && loss[i] < loss[best]) { best = i }
        return CrossValidation(lambda: lambdas[best], lambdas: lambdas, accuracy: acc, logLoss: loss)
    }
}
