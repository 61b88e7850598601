import Scoring
import Testing

@Suite("Fragility as a risk signal")
struct FragilityTests {
    @Test("per intent, the share of typo variants whose prediction differs from the clean one")
    func perIntent() {
        // Three examples of intent 0 (two variants each), one of intent 1.
        let f = Fragility.perIntent(labels: ["a", "b"], truth: [0, 0, 0, 1], clean: [0, 0, 1, 1],
                                    variants: [0, 1, 0, 0, 1, 0, 0, 0], perExample: 2)
        #expect(f["a"] == 2.0 / 6)
        #expect(f["b"] == 1)
    }

    @Test("ranked by fragility, an intent no one has complained about yet comes first when it is the one about to fail")
    func ranking() {
        let traffic = ["steady": 500, "fragile": 400, "failing": 100]
        let failures = (0..<20).map { _ in FailureCase(predicted: "steady", correct: "failing", cost: 1, text: "x", vector: []) }
        let fragility = ["steady": 0.02, "fragile": 0.4, "failing": 0.05, "quiet": 0.9]
        let byFailures = RegionRanking.rank(traffic: traffic, failures: failures, impact: { _ in 1 }, defaultCost: 1, fragility: fragility)
        #expect(byFailures.first?.label == "failing")
        #expect(!byFailures.contains { $0.label == "quiet" })
        let byFragility = RegionRanking.rank(traffic: traffic, failures: failures, impact: { _ in 1 }, defaultCost: 1,
                                             fragility: fragility, by: .fragility)
        #expect(byFragility.first?.label == "fragile")
        // An intent without traffic is ranked too, at an add-one share.
        let quiet = byFragility.first { $0.label == "quiet" }
        #expect(quiet?.traffic == 0 && (quiet?.fragilityRisk ?? 0) > 0)
        #expect(byFragility.allSatisfy { $0.fragility != nil })
        // Without fragility, nothing changes.
        let plain = RegionRanking.rank(traffic: traffic, failures: failures, impact: { _ in 1 }, defaultCost: 1)
        #expect(plain.map(\.id) == byFailures.map(\.id))
        #expect(plain.allSatisfy { $0.fragility == nil })
    }
}

@Suite("Combined out-of-scope score")
struct CombinedOutOfScopeTests {
    @Test("neighbour distance and uncertainty, each standardised on in-scope held-out inputs, summed; the threshold keeps the retention asked")
    func combined() {
        let D = 4, C = 3
        var rng = SeededRandom(seed: 5)
        func point(_ c: Int) -> [Float] { (0..<D).map { d in Float(d == c ? 3 : 0) + Float(rng.unit() - 0.5) } }
        var train: [Float] = [], labels: [Int] = []
        for i in 0..<60 { train += point(i % C); labels.append(i % C) }
        var held: [Float] = []
        for i in 0..<40 { held += point(i % C) }
        let oos = OutOfScopeModel.fit(train, labels: labels, classes: C, dimension: D)
        var w = [Float](repeating: 0, count: C * D)
        for c in 0..<C { w[c * D + c] = 2 }
        let head = LinearHead(weight: w, bias: [0, 0, 0], mean: [0, 0, 0, 0], scale: [1, 1, 1, 1], classes: C, dimension: D)
        let logits = head.logits(held, count: 40)
        let (cal, threshold) = OOSCalibration.fit(outOfScope: oos, vectors: held, logits: logits, count: 40, classes: C, temperature: 1, retention: 0.9)
        let c = try! #require(cal)
        #expect(c.neighbourScale > 0 && c.uncertaintyScale > 0)
        let v = ModelVersion(id: 1, labels: ["a", "b", "c"], head: head, temperature: 1, outOfScope: oos, oosThreshold: threshold, oosCalibration: c)
        let scores = v.outOfScopeScores(held, count: 40)
        // Standardised on these very inputs: the two z-scores each average zero.
        #expect(abs(scores.reduce(0, +) / 40) < 1e-3)
        let kept = Double(scores.filter { $0 <= threshold }.count) / 40
        #expect(kept >= 0.9 && kept < 0.9 + 2.0 / 40)
        // The score is the sum of the two standardised parts.
        let nn = oos.scores(held, count: 40).neighbour
        let p = softmax(logits[0..<C], temperature: 1)
        let expected = (Double(nn[0]) - c.neighbourMean) / c.neighbourScale + (Double(1 - p.max()!) - c.uncertaintyMean) / c.uncertaintyScale
        #expect(abs(Double(scores[0]) - expected) < 1e-4)
        // A point far from every class scores far above the threshold; without a calibration
        // the rule is the neighbour distance.
        let far: [Float] = [-3, -3, 3, 3]
        #expect(v.outOfScopeScores(far, count: 1)[0] > threshold)
        let plain = ModelVersion(id: 1, labels: ["a", "b", "c"], head: head, temperature: 1, outOfScope: oos, oosThreshold: 0.5)
        #expect(plain.outOfScopeScores(far, count: 1) == oos.scores(far, count: 1).neighbour)
    }
}
