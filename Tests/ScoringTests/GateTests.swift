import Foundation
import Testing
@testable import Scoring

@Suite("Promotion gate")
struct GateTests {
    @Test("McNemar's exact p-value matches the binomial tail")
    func mcnemar() {
        #expect(Gate.mcnemarExact(0, 0) == 1)
        // b = 0, c = 6: 2 · (1/2)^6 = 0.03125
        #expect(abs(Gate.mcnemarExact(0, 6) - 0.03125) < 1e-12)
        // b = 2, c = 8: 2 · (1 + 10 + 45) / 1024 = 0.109375
        #expect(abs(Gate.mcnemarExact(2, 8) - 0.109375) < 1e-12)
        #expect(Gate.mcnemarExact(5, 5) == 1)
    }

    static func pairs(_ n: Int, parentWrong: Set<Int>, candidateWrong: Set<Int>, cost: Double = 1) -> [Gate.Pair] {
        (0..<n).map { i in
            Gate.Pair(parentCost: parentWrong.contains(i) ? cost : 0, candidateCost: candidateWrong.contains(i) ? cost : 0,
                      parentCorrect: !parentWrong.contains(i), candidateCorrect: !candidateWrong.contains(i))
        }
    }

    @Test("passes when the target cost falls enough and the global cost cannot have risen beyond the tolerance")
    func passes() {
        let target = Self.pairs(40, parentWrong: Set(0..<20), candidateWrong: Set(0..<5))
        let global = Self.pairs(1000, parentWrong: Set(0..<60), candidateWrong: Set(0..<55))
        let r = Gate.evaluate(target: target, global: global)
        #expect(r.passed, "\(r.reasons)")
        #expect(abs(r.targetReduction - 0.75) < 1e-12)
        #expect(r.target.parentOnlyCorrect == 0 && r.target.candidateOnlyCorrect == 15)
        #expect(r.global.difference < 0)
        #expect(r.global.upperBound <= 0.1 * 0.06)
        #expect(abs(r.globalAllowance - 0.006) < 1e-12)
        #expect(abs(r.global.effectiveExamples - 1000) < 1e-9)  // equal weights: every example counts
        var heavy = global
        heavy[0].weight = 100
        let ess = Gate.compare(heavy, settings: Gate.Settings()).effectiveExamples
        #expect(abs(ess - 1099.0 * 1099 / (10_000 + 999)) < 1e-6)  // one example weighing 100 leaves about 110
        #expect(r.global.lowerBound <= r.global.difference && r.global.difference <= r.global.upperBound)
    }

    @Test("fails, with its reasons, on too small a target gain or a possible global regression")
    func fails() {
        let weakGain = Gate.evaluate(target: Self.pairs(40, parentWrong: Set(0..<20), candidateWrong: Set(0..<18)),
                                     global: Self.pairs(1000, parentWrong: Set(0..<60), candidateWrong: Set(0..<60)))
        #expect(!weakGain.passed)
        #expect(weakGain.reasons.count == 1 && weakGain.reasons[0].contains("target cost fell by 10.0%"))
        // 30 new global errors in 1000 (3 points): the bootstrap bound is far above 10% of 0.06.
        let regress = Gate.evaluate(target: Self.pairs(40, parentWrong: Set(0..<20), candidateWrong: []),
                                    global: Self.pairs(1000, parentWrong: Set(0..<60), candidateWrong: Set(0..<90)))
        #expect(!regress.passed)
        #expect(regress.reasons.count == 1 && regress.reasons[0].contains("global cost rises"), "\(regress.reasons)")
        var strict = Gate.Settings()
        strict.rule = .nonInferiority
        let strictRegress = Gate.evaluate(target: Self.pairs(40, parentWrong: Set(0..<20), candidateWrong: []),
                                          global: Self.pairs(1000, parentWrong: Set(0..<60), candidateWrong: Set(0..<90)), settings: strict)
        #expect(strictRegress.reasons.count == 1 && strictRegress.reasons[0].contains("global cost may rise"))
        #expect(regress.global.mcnemarP < 1e-6)
        // Nothing to recover.
        let nothing = Gate.evaluate(target: Self.pairs(10, parentWrong: [], candidateWrong: []), global: Self.pairs(10, parentWrong: [], candidateWrong: []))
        #expect(!nothing.passed)
    }

    @Test("costs weigh the decision, not error counts")
    func costs() {
        // The candidate fixes twelve cheap errors and makes twelve expensive ones: as many errors, far more cost.
        var global = Self.pairs(200, parentWrong: Set(0..<12), candidateWrong: Set(100..<112))
        for i in 100..<112 { global[i].candidateCost = 50 }
        let r = Gate.evaluate(target: Self.pairs(10, parentWrong: Set(0..<5), candidateWrong: []), global: global)
        #expect(abs(r.global.difference - (12.0 * 50 - 12) / 200) < 1e-12)
        #expect(r.global.mcnemarP == 1, "the error counts are equal")
        #expect(!r.passed)
    }

    @Test("screens: a candidate better on a small held-out set passes though its bound is wide; the strict rule fails it")
    func screenOnSmallData() {
        // 300 examples, the candidate one error better with many discordant pairs: the bootstrap's
        // upper bound is far above 10% of the parent's cost.
        let target = Self.pairs(20, parentWrong: Set(0..<10), candidateWrong: Set(0..<4))
        let global = Self.pairs(300, parentWrong: Set(0..<30).union(Set(100..<120)), candidateWrong: Set(0..<20).union(Set(200..<229)))
        let screened = Gate.evaluate(target: target, global: global)
        #expect(screened.passed, "\(screened.reasons)")
        #expect(screened.global.upperBound > screened.globalAllowance)
        var strict = Gate.Settings()
        strict.rule = .nonInferiority
        #expect(!Gate.evaluate(target: target, global: global, settings: strict).passed)
    }

    @Test("fails a candidate that buys clean accuracy with robustness to typos, or that calls in-scope inputs out of scope")
    func robustness() {
        let target = Self.pairs(20, parentWrong: Set(0..<10), candidateWrong: Set(0..<2))
        let global = Self.pairs(500, parentWrong: Set(0..<50), candidateWrong: Set(0..<40))
        // At 20% typos the candidate makes 40 more errors on 500.
        let typos = Self.pairs(500, parentWrong: Set(0..<100), candidateWrong: Set(0..<140))
        let mild = Self.pairs(500, parentWrong: Set(0..<70), candidateWrong: Set(0..<66))
        let r = Gate.evaluate(target: target, global: global, perturbed: [(0.1, mild), (0.2, typos)])
        #expect(!r.passed)
        #expect(r.reasons.count == 1 && r.reasons[0].contains("at 20% word typos"), "\(r.reasons)")
        #expect(r.perturbed?.count == 2)
        #expect(abs((r.perturbed?[1].candidateAccuracy ?? 0) - 0.72) < 1e-12)
        let fine = Gate.evaluate(target: target, global: global, perturbed: [(0.1, mild)])
        #expect(fine.passed, "\(fine.reasons)")
        let oos = Gate.evaluate(target: target, global: global, perturbed: [(0.1, mild)],
                                outOfScope: .init(examples: 500, parentRate: 0.05, candidateRate: 0.06, parentRateWithTypos: 0.08, candidateRateWithTypos: 0.2))
        #expect(!oos.passed)
        #expect(oos.reasons.count == 1 && oos.reasons[0].contains("with typos"), "\(oos.reasons)")
    }

    @Test("reports written before the typo checks still decode, as the strict rule they were made with")
    func oldReports() throws {
        let old = #"{"minTargetReduction":0.2,"globalTolerance":0.1,"confidence":0.95,"bootstrapSamples":2000,"seed":7}"#
        let s = try JSONDecoder().decode(Gate.Settings.self, from: Data(old.utf8))
        #expect(s.rule == .nonInferiority && s.typoRates.isEmpty)
    }
}
