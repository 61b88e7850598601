import Foundation
import Rollout
import XCTest

/// SplitMix64: reproducible draws for the simulations below.
struct Draws {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func bernoulli(_ p: Double) -> Bool { uniform() < p }
}

final class BettingTestTests: XCTestCase {
    /// Under the null, looking after every one of 2,000 observations, the test rejects in at
    /// most α of the runs (Ville's inequality), even at the null's boundary.
    func testErrorRateUnderContinuousMonitoring() {
        var rng = Draws(state: 1)
        var rejections = 0
        let runs = 500
        for _ in 0..<runs {
            var t = BettingTest(direction: .above, null: 0.5, alpha: 0.05)
            for _ in 0..<2000 { t.observe(rng.bernoulli(0.5) ? 1 : 0); if t.rejected { break } }
            if t.rejected { rejections += 1 }
        }
        // α = 0.05; 500 runs: a one-sided binomial 95% band reaches about 0.066.
        XCTAssertLessThanOrEqual(Double(rejections) / Double(runs), 0.066, "rejected \(rejections) of \(runs) under the null")
    }

    func testPowerAndDirection() {
        var rng = Draws(state: 2)
        var rejectedWithin200 = 0
        for _ in 0..<200 {
            var up = BettingTest(direction: .above, null: 0.5, alpha: 0.05)
            var down = BettingTest(direction: .below, null: 0.5, alpha: 0.05)
            for _ in 0..<200 { let x: Double = rng.bernoulli(0.7) ? 1 : 0; up.observe(x); down.observe(x) }
            if up.rejected { rejectedWithin200 += 1 }
            XCTAssertFalse(down.rejected, "a mean of 0.7 must not reject 'mean ≥ 0.5'")
        }
        XCTAssertGreaterThanOrEqual(rejectedWithin200, 190, "a mean of 0.7 against 0.5 is found within 200 observations")
    }

    /// A null that changes per observation (the canary's request share) stays valid.
    func testVaryingNull() {
        var rng = Draws(state: 3)
        var rejections = 0
        for _ in 0..<500 {
            var t = BettingTest(direction: .above, null: 0.2, alpha: 0.05)
            for i in 0..<1000 {
                let s = 0.1 + 0.3 * Double(i % 7) / 6
                t.observe(rng.bernoulli(s) ? 1 : 0, null: s)
            }
            if t.rejected { rejections += 1 }
        }
        XCTAssertLessThanOrEqual(rejections, 35)
    }

    func testAReasonQuotesTheEvidenceReachedNotOnlyTheWealthNow() {
        // A test that has decided stays decided; a stage may wait (minimum requests) while its
        // wealth falls back under 1/α. The reason must show what it reached, not "18.3 ≥ 20".
        var t = BettingTest(direction: .above, null: 0.5, alpha: 0.05)
        while !t.rejected { t.observe(1) }
        XCTAssertEqual(Rollout.reached(t), String(format: "e-value reached %.1f ≥ 20", t.eValue))
        for _ in 0..<3 { t.observe(0) }
        XCTAssertLessThan(t.eValue, 20)
        let reason = Rollout.reached(t)
        let peak = Double(reason.split(separator: " ")[2])!
        XCTAssertGreaterThanOrEqual(peak, 20, reason)
        XCTAssertTrue(reason.hasSuffix(String(format: ", %.1f now", t.eValue)), reason)
    }

    func testCodableRoundTripKeepsTheWealth() throws {
        var t = BettingTest(direction: .below, null: 0.6, alpha: 0.01)
        for x in [0.0, 1, 0, 0, 0.5] { t.observe(x) }
        let back = try JSONDecoder().decode(BettingTest.self, from: JSONEncoder().encode(t))
        XCTAssertEqual(back, t)
        XCTAssertEqual(back.pValue, t.pValue)
    }
}

final class RolloutTests: XCTestCase {
    func settings() -> RolloutSettings {
        var s = RolloutSettings()
        s.shadow.minRequests = 100
        s.shadow.minLabels = 10
        s.canary.minRequests = 300
        s.canary.maxRequests = 5000
        s.guardrails.minRequests = 50
        return s
    }

    /// Feeds a rollout traffic in which the candidate is right on a disagreement with
    /// probability `pc` and the control with `pk`, and complaints come for a share of the
    /// served wrong answers; returns the final stage (or the stage after `requests`).
    func simulate(pc: Double, pk: Double, errK: Double, complaintC: Double = 0.5, seed: UInt64, settings s: RolloutSettings,
                  requests: Int = 20_000, startInCanary: Bool = false) -> Rollout {
        var rng = Draws(state: seed)
        var r = Rollout(id: 1, candidate: 2, control: 1, settings: s, maxCost: 10, now: 0, gate: "offline gate passed")
        if startInCanary { _ = try? r.advanceByOperator(now: 0, reason: "straight to canary") }
        for i in 0..<requests {
            let now = Double(i)
            guard !r.stage.isFinal else { return r }
            // Both versions answer every request (one of them unseen); they disagree on a tenth.
            let disagree = rng.bernoulli(0.1)
            var c = false, k = false
            if disagree {
                c = rng.bernoulli(pc)
                k = !c && rng.bernoulli(pk / max(1e-9, 1 - pc))
            }
            r.recordShadow(requests: 1, disagreeing: disagree ? 1 : 0)
            if disagree && rng.bernoulli(0.3) { r.recordLabel(controlCost: k ? 0 : 10, candidateCost: c ? 0 : 10) }
            if r.stage == .canary {
                let arm = r.arm(forHash: rng.next())
                // Off the disagreements both are right or both wrong alike (errK's share of the traffic).
                let wrong = disagree ? !(arm == .candidate ? c : k) : rng.bernoulli(errK)
                r.recordServed(arm: arm, inputs: 1, latencyMs: 5 + rng.uniform(), outOfScope: 0, flagged: wrong ? 1 : 0, expectedCost: 0)
                if disagree { r.recordDisagreementsServed(arm: arm, count: 1) }
                if wrong && rng.bernoulli(arm == .candidate ? complaintC : 0.5) { r.recordFailureReport(arm: arm, cost: 10, onDisagreement: disagree) }
            }
            _ = r.decide(now: now)
        }
        return r
    }

    func testABetterCandidateIsPromoted() {
        var promoted = 0
        for seed in 0..<40 {
            let r = simulate(pc: 0.6, pk: 0.25, errK: 0.12, seed: UInt64(seed), settings: settings())
            if r.stage == .promoted { promoted += 1 }
            if r.stage == .promoted {
                XCTAssertEqual(r.timeline.map(\.to), [.shadow, .canary, .promoted])
                XCTAssertGreaterThanOrEqual(r.labels, 10)
            }
        }
        XCTAssertGreaterThanOrEqual(promoted, 36, "a clearly better candidate is promoted in at least 90% of seeds")
    }

    func testAWorseCandidateIsRolledBackInShadow() {
        for seed in 0..<20 {
            let r = simulate(pc: 0.25, pk: 0.6, errK: 0.12, seed: UInt64(seed), settings: settings())
            XCTAssertEqual(r.stage, .rolledBack, "seed \(seed)")
            XCTAssertEqual(r.timeline.count, 2, "rolled back from shadow, never served")
        }
    }

    func testAnEqualCandidateIsRarelyPromoted() {
        var promoted = 0, rolledBack = 0
        for seed in 0..<50 {
            let r = simulate(pc: 0.4, pk: 0.4, errK: 0.12, seed: UInt64(seed), settings: settings(), requests: 40_000)
            if r.stage == .promoted { promoted += 1 }
            if r.stage == .rolledBack { rolledBack += 1 }
        }
        XCTAssertLessThanOrEqual(promoted, 4, "an equal candidate is promoted at most about α of the time")
        XCTAssertGreaterThanOrEqual(rolledBack, 42, "the futility test ends an equal candidate's rollout")
    }

    func testACanaryThatDrawsMoreComplaintsIsRolledBack() {
        var s = settings()
        s.canary.maxRequests = 50_000
        var back = 0
        for seed in 0..<20 {
            // As good where they disagree, but its served answers draw every complaint they can.
            let r = simulate(pc: 0.4, pk: 0.4, errK: 0.3, complaintC: 1, seed: UInt64(seed), settings: s, requests: 60_000, startInCanary: true)
            if r.stage == .rolledBack, r.timeline.last?.from == .canary, r.timeline.last!.reason.contains("failure reports") { back += 1 }
        }
        XCTAssertGreaterThanOrEqual(back, 19, "the harm test rolls it back")
    }

    func testLatencyGuardrailRollsBackAtOnce() {
        var r = Rollout(id: 1, candidate: 2, control: 1, settings: settings(), maxCost: 1, now: 0, gate: "")
        _ = try? r.advanceByOperator(now: 1, reason: nil)
        XCTAssertEqual(r.stage, .canary)
        for i in 0..<80 {
            r.recordServed(arm: .control, inputs: 1, latencyMs: 5, outOfScope: 0, flagged: 0, expectedCost: 0)
            r.recordServed(arm: .candidate, inputs: 1, latencyMs: 50, outOfScope: 0, flagged: 0, expectedCost: 0)
            let t = r.decide(now: Double(i))
            if i < 49 { XCTAssertNil(t) }
        }
        XCTAssertEqual(r.stage, .rolledBack)
        XCTAssertEqual(r.timeline.last?.by, "guardrail")
        XCTAssertTrue(r.timeline.last!.reason.contains("latency"), r.timeline.last!.reason)
    }

    func testWithoutAutoPromotionTheDecisionWaitsForAnOperator() throws {
        var s = settings()
        s.autoPromote = false
        var r = Rollout(id: 3, candidate: 5, control: 4, settings: s, maxCost: 1, now: 0, gate: "")
        r.recordShadow(requests: 500, disagreeing: 100)
        for _ in 0..<40 { r.recordLabel(controlCost: 1, candidateCost: 0) }
        XCTAssertNil(r.decide(now: 1))
        XCTAssertEqual(r.stage, .shadow)
        XCTAssertNotNil(r.pending)
        let t = try r.advanceByOperator(now: 2, reason: "looked at the disagreements")
        XCTAssertEqual(t.to, .canary)
        XCTAssertEqual(t.by, "operator")
        XCTAssertNil(r.pending)
        _ = try r.abort(now: 3, reason: nil)
        XCTAssertThrowsError(try r.advanceByOperator(now: 4, reason: nil)) { e in
            XCTAssertEqual(e as? RolloutError, .finished(id: 3, stage: .rolledBack))
        }
        XCTAssertThrowsError(try r.abort(now: 4, reason: nil))
    }

    func testStateSurvivesEncoding() throws {
        var r = simulate(pc: 0.6, pk: 0.25, errK: 0.12, seed: 9, settings: settings(), requests: 3000)
        let data = try JSONEncoder().encode(r)
        var back = try JSONDecoder().decode(Rollout.self, from: data)
        XCTAssertEqual(back, r)
        // Both go on identically.
        back.recordShadow(requests: 1, disagreeing: 0)
        r.recordShadow(requests: 1, disagreeing: 0)
        XCTAssertEqual(back.decide(now: 5000), r.decide(now: 5000))
        XCTAssertEqual(back, r)
    }

    func testSettingsAreChecked() {
        var s = RolloutSettings()
        XCTAssertEqual(s.problems(), [])
        s.canaryShare = 1.5
        s.falsePromotionRate = 0
        s.shadow.maxLabels = 1
        XCTAssertEqual(s.problems().count, 3, "\(s.problems())")
    }
}
