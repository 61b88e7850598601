import Foundation
import Testing
@testable import Scoring

/// Gaussian blobs: C classes in D dimensions, class c centred at `spread · e_c`.
struct Blobs {
    var x: [Float] = []
    var y: [Int] = []
    init(classes C: Int, dimension D: Int, perClass: Int, spread: Float, seed: UInt64) {
        var g = SystemLikeRNG(seed: seed)
        for c in 0..<C {
            for _ in 0..<perClass {
                for d in 0..<D { x.append((d == c % D ? spread : 0) + g.gaussian()) }
                y.append(c)
            }
        }
    }
}

struct SystemLikeRNG {
    var s: UInt64
    init(seed: UInt64) { s = seed }
    mutating func next() -> UInt64 { s &+= 0x9E37_79B9_7F4A_7C15; var z = s; z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9; z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB; return z ^ (z >> 31) }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }
    mutating func gaussian() -> Float {
        let u1 = max(uniform(), 1e-7), u2 = uniform()
        return (-2 * logf(u1)).squareRoot() * cosf(2 * .pi * u2)
    }
}

@Suite("Scoring: head, calibration, out-of-scope")
struct ScoringTests {
    @Test("L-BFGS finds the minimum of the Rosenbrock function")
    func lbfgs() {
        var x = [-1.2, 1.0]
        var opt = LBFGS()
        opt.maxIterations = 1000
        opt.gradientTolerance = 1e-8
        let r = opt.minimize(&x) { p, g in
            let a = 1 - p[0], b = p[1] - p[0] * p[0]
            g[0] = -2 * a - 400 * p[0] * b
            g[1] = 200 * b
            return a * a + 100 * b * b
        }
        #expect(r.converged)
        #expect(abs(x[0] - 1) < 1e-4 && abs(x[1] - 1) < 1e-4)
    }

    @Test("logistic regression converges, separates blobs, and shrinks weights as λ grows")
    func logisticRegression() {
        let train = Blobs(classes: 4, dimension: 8, perClass: 100, spread: 3, seed: 1)
        let test = Blobs(classes: 4, dimension: 8, perClass: 50, spread: 3, seed: 2)
        let fit = LogisticRegression.fit(train.x, labels: train.y, classes: 4, dimension: 8, lambda: 1e-3)
        #expect(fit.converged)
        let logits = fit.head.logits(test.x, count: test.y.count)
        var correct = 0
        for n in 0..<test.y.count {
            let row = logits[(n * 4)..<(n * 4 + 4)]
            if row.firstIndex(of: row.max()!)! - n * 4 == test.y[n] { correct += 1 }
        }
        #expect(Double(correct) / Double(test.y.count) > 0.9)
        let strong = LogisticRegression.fit(train.x, labels: train.y, classes: 4, dimension: 8, lambda: 1)
        let norm = { (h: LinearHead) in h.weight.reduce(0) { $0 + $1 * $1 } }
        #expect(norm(strong.head) < norm(fit.head))
    }

    @Test("temperature scaling undoes overconfidence and lowers the calibration error")
    func temperature() {
        let train = Blobs(classes: 5, dimension: 6, perClass: 80, spread: 1.5, seed: 3)
        let val = Blobs(classes: 5, dimension: 6, perClass: 80, spread: 1.5, seed: 4)
        let fit = LogisticRegression.fit(train.x, labels: train.y, classes: 5, dimension: 6, lambda: 1e-4)
        // Make the logits overconfident by a factor of 4, then fit T on held-out data.
        let logits = fit.head.logits(val.x, count: val.y.count).map { $0 * 4 }
        let T = TemperatureScaling.fit(logits: logits, labels: val.y, classes: 5)
        #expect(T > 2.5 && T < 6, "T = \(T)")
        func ece(_ t: Double) -> Double {
            var conf: [Float] = [], ok: [Bool] = []
            for n in 0..<val.y.count {
                let p = softmax(logits[(n * 5)..<(n * 5 + 5)], temperature: t)
                let best = p.firstIndex(of: p.max()!)!
                conf.append(p[best]); ok.append(best == val.y[n])
            }
            return expectedCalibrationError(confidences: conf, correct: ok)
        }
        #expect(ece(T) < ece(1) * 0.7, "ECE \(ece(1)) → \(ece(T))")
    }

    @Test("Mahalanobis and nearest-neighbour scores rise away from the training data")
    func outOfScope() {
        let train = Blobs(classes: 3, dimension: 4, perClass: 60, spread: 5, seed: 5)
        let oos = OutOfScopeModel.fit(train.x, labels: train.y, classes: 3, dimension: 4)
        let near: [Float] = [5, 0, 0, 0], far: [Float] = [-20, 15, 20, -10]
        #expect(oos.mahalanobis(near[...]) < 5)
        #expect(oos.mahalanobis(far[...]) > 50)
        #expect(oos.neighbourDistance(far[...]) > oos.neighbourDistance(near[...]))
        #expect(abs(oos.neighbourDistance(train.x[0..<4]) - oos.neighbourDistance(train.x[0..<4])) < 1e-6)
        // The precision times the covariance it came from is the identity (Cholesky inverse).
        let a: [Double] = [4, 2, 0.5, 2, 3, 0.25, 0.5, 0.25, 2]
        let inv = invertSPD(a, 3)
        for i in 0..<3 { for j in 0..<3 {
            var s = 0.0
            for k in 0..<3 { s += a[i * 3 + k] * inv[k * 3 + j] }
            #expect(abs(s - (i == j ? 1 : 0)) < 1e-9)
        } }
    }

    @Test("thresholds keep the asked recall; AUROC of separated and identical scores")
    func thresholdsAndAUROC() {
        let inScope: [Float] = (1...100).map { Float($0) }
        #expect(thresholdKeeping(recall: 0.95, inScopeScores: inScope) == 95)
        #expect(auroc(positives: [5, 6, 7], negatives: [1, 2, 3]) == 1)
        #expect(auroc(positives: [1, 1], negatives: [1, 1]) == 0.5)
        #expect(abs(auroc(positives: [2, 4], negatives: [1, 3]) - 0.75) < 1e-12)
    }
}

@Suite("Per-input score components on constructed cases")
struct ScorerTests {
    /// Two classes in 2-D: class "a" where x₀ is large, "b" where x₁ is; identity standardisation.
    func version(temperature: Double = 1) -> ModelVersion {
        let head = LinearHead(weight: [4, 0, 0, 4], bias: [0, 0], mean: [0, 0], scale: [1, 1], classes: 2, dimension: 2)
        let oos = OutOfScopeModel(dimension: 2, classes: 2, means: [1, 0, 0, 1], precision: [1, 0, 0, 1], neighbours: [1, 0, 0, 1], k: 1)
        return ModelVersion(id: 7, labels: ["a", "b"], head: head, temperature: temperature, outOfScope: oos, oosThreshold: 0.5)
    }

    @Test("label, confidence, margin, top-k and risk follow the formulas in docs/risk-model.md")
    func components() {
        let v = version()
        let s = Scorer.score(v, vectors: [1, 0], count: 1, variants: nil, perturbations: 0, options: ScoreOptions(),
                             thresholds: RiskThresholds(), impact: { $0 == "a" ? 2 : 1 })[0]
        let pa = 1 / (1 + exp(-4.0))  // softmax of logits (4, 0)
        #expect(s.label == "a")
        #expect(abs(s.confidence - pa) < 1e-6)
        #expect(abs(s.margin - (2 * pa - 1)) < 1e-6)
        #expect(s.top.map(\.label) == ["a", "b"])
        #expect(abs(s.risk.pWrong - (1 - pa)) < 1e-6)
        #expect(s.risk.impact == 2)
        #expect(abs(s.risk.score - 2 * (1 - pa)) < 1e-6)
        #expect(s.risk.level == .low)
        #expect(s.version == 7)
        #expect(s.outOfScope.mahalanobis < 1e-6 && !s.outOfScope.flagged)
        #expect(s.stability == nil)
    }

    @Test("a higher temperature lowers confidence; an ambiguous input is high risk")
    func temperatureAndAmbiguity() {
        let hot = Scorer.score(version(temperature: 4), vectors: [1, 0], count: 1, variants: nil, perturbations: 0,
                               options: ScoreOptions(), thresholds: RiskThresholds(), impact: { _ in 1 })[0]
        #expect(abs(hot.confidence - 1 / (1 + exp(-1.0))) < 1e-6)
        let tie = Scorer.score(version(), vectors: [0.5, 0.5], count: 1, variants: nil, perturbations: 0,
                               options: ScoreOptions(), thresholds: RiskThresholds(), impact: { _ in 1 })[0]
        #expect(abs(tie.margin) < 1e-6)
        #expect(tie.risk.level == .high)
    }

    @Test("out of scope: unlike every training vector is flagged and raises the level; both distances are shown")
    func outOfScope() {
        let s = Scorer.score(version(), vectors: [-1, -1], count: 1, variants: nil, perturbations: 0,
                             options: ScoreOptions(), thresholds: RiskThresholds(), impact: { _ in 1 })[0]
        #expect(abs(s.outOfScope.mahalanobis - 5) < 1e-4)  // (−1−1)² + (−1)² to either class mean
        #expect(abs(s.outOfScope.neighbourDistance - (1 + 0.5.squareRoot())) < 1e-5)  // 1 − cos 135°
        #expect(s.outOfScope.flagged)
        #expect(s.risk.level != .low)
        let inside = Scorer.score(version(), vectors: [2, 0], count: 1, variants: nil, perturbations: 0,
                                  options: ScoreOptions(), thresholds: RiskThresholds(), impact: { _ in 1 })[0]
        #expect(!inside.outOfScope.flagged)
        #expect(abs(inside.outOfScope.mahalanobis - 1) < 1e-4)
    }

    @Test("stability: the share of typo variants whose label differs")
    func stability() {
        let variants: [Float] = [1, 0, 0, 1, 0, 1, 1, 0]  // a, b, b, a
        let s = Scorer.score(version(), vectors: [1, 0], count: 1, variants: variants, perturbations: 4,
                             options: ScoreOptions(), thresholds: RiskThresholds(), impact: { _ in 1 })[0]
        #expect(s.stability == .init(variants: 4, flips: 2, flipRate: 0.5))
        #expect(s.risk.level == .medium)  // unstable at the 0.5 threshold
    }

    @Test("typos are seeded: the same seed gives the same variant, words keep their places")
    func typos() {
        let text = "where is my new card please"
        #expect(Typos.perturb(text, rate: 0.5, seed: 3) == Typos.perturb(text, rate: 0.5, seed: 3))
        #expect(Typos.perturb(text, rate: 1, seed: 3) != text)
        #expect(Typos.perturb(text, rate: 1, seed: 3).split(separator: " ").count == 6)
        #expect(Typos.perturb(text, rate: 0.000001, seed: 3) == text)
    }
}

@Suite("Risk regions")
struct RegionTests {
    func failures(_ label: String, _ n: Int, correct: String? = nil, cost: Double = 10, vector: [Float] = []) -> [FailureCase] {
        (0..<n).map { FailureCase(predicted: label, correct: correct, cost: cost, text: "\(label) \($0)", vector: vector) }
    }

    @Test("three reports do not outrank three hundred: the Beta prior and the traffic share")
    func smoothing() {
        let traffic = ["big": 3000, "small": 3, "quiet": 1000]
        let regions = RegionRanking.rank(traffic: traffic, failures: failures("big", 300) + failures("small", 3),
                                         impact: { _ in 1 }, defaultCost: 10)
        let big = regions.first { $0.id == "intent:big" }!, small = regions.first { $0.id == "intent:small" }!
        #expect(small.rawFailureRate == 1)
        #expect(small.failureRate < 0.2, "smoothed \(small.failureRate)")
        #expect(big.risk > small.risk)
        #expect(regions.first?.id == "intent:big")
        // The smoothed rate moves toward the raw rate as evidence grows.
        #expect(abs(big.failureRate - 0.1) < 0.01)
    }

    @Test("impact weights and costs scale risk; a corrected failure belongs to the intent that was meant")
    func impactAndCorrected() {
        let traffic = ["a": 1000, "b": 1000]
        let f = failures("a", 20, correct: "c", cost: 5) + failures("b", 20, cost: 5)
        let plain = RegionRanking.rank(traffic: traffic, failures: f, impact: { _ in 1 }, defaultCost: 5)
        let weighted = RegionRanking.rank(traffic: traffic, failures: f, impact: { $0 == "b" ? 10 : 1 }, defaultCost: 5)
        let pb = plain.first { $0.id == "intent:b" }!, wb = weighted.first { $0.id == "intent:b" }!
        #expect(abs(wb.risk - 10 * pb.risk) < 1e-12)
        let corrected = plain.first { $0.id == "intent:c" }
        #expect(corrected?.failures == 20)
        #expect(corrected?.label == "c")
        #expect(plain.first { $0.id == "intent:a" }?.failures == 0)
        #expect(abs((corrected?.costPer1000 ?? 0) - 1000 * (corrected?.risk ?? 0)) < 1e-9)
    }

    @Test("failures that look alike across intents form a cluster region")
    func clusters() {
        let mode: [Float] = [1, 0.1, 0], other: [Float] = [0, 0, 1]
        let f = failures("a", 3, vector: mode) + failures("b", 3, vector: mode) + failures("c", 2, vector: other)
        let regions = RegionRanking.rank(traffic: ["a": 100, "b": 100, "c": 100], failures: f, impact: { _ in 1 }, defaultCost: 1)
        let clusters = regions.filter { $0.kind == .cluster }
        #expect(clusters.count == 1)
        #expect(clusters.first?.labels == ["a", "b"])
        #expect(clusters.first?.failures == 6)
    }
}
