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
