import Testing
import Scoring
@testable import Training

@Suite("Data selection for a local fine-tune")
struct DataSelectionTests {
    static let labels = ["a", "b", "c"]
    static let train: [(String, String)] = (0..<90).map { ("text number \($0) about things", labels[$0 % 3]) }
    static let heldOut: [(String, String)] = (0..<12).map { ("held out \($0) words here", labels[$0 % 3]) }
    static let failures: [DataSelection.Failure] = (0..<10).map { .init(text: "failure \($0) words", correct: $0 % 2 == 0 ? "a" : "c", cost: 3) }

    @Test("targets, failures, typo copies and replay in the proportions asked; held-out sets never trained on")
    func selection() {
        var o = DataSelection.Options()
        o.replayRatio = 1
        let s = DataSelection.select(labels: Self.labels, targets: ["a"], train: Self.train, heldOut: Self.heldOut, failures: Self.failures, options: o)
        let c = s.counts
        #expect(c.regionExamples == 30)
        #expect(c.failures + c.failuresHeldOut + c.failuresForEarlyStopping == 5)  // the failures of "a" only
        #expect(c.failuresHeldOut + c.failuresForEarlyStopping == 2)  // 30% held out, half and half
        #expect(c.augmented == c.regionExamples + c.failures)
        #expect(c.replay == c.regionExamples + c.failures)
        #expect(c.replayAugmented == c.replay)  // one noisy copy of each replayed example (the default)
        #expect(s.train.count == c.regionExamples + c.failures + c.augmented + c.replay + c.replayAugmented)
        // Validation halves: 2 of each intent's 4 to the gate, 2 to early stopping.
        #expect(s.globalHeldOut.count == 6 + c.failuresHeldOut)
        #expect(s.earlyStopping.count == 6 + c.failuresForEarlyStopping)
        #expect(s.targetHeldOut.count == 2 + c.failuresHeldOut)
        // Nothing held out is trained on, and early stopping and the gate share nothing.
        let trained = Set(s.train.map(\.text))
        #expect(s.globalHeldOut.allSatisfy { !trained.contains($0.text) })
        #expect(s.targetHeldOut.allSatisfy { !trained.contains($0.text) })
        #expect(s.earlyStopping.allSatisfy { !trained.contains($0.text) })
        #expect(Set(s.earlyStopping.map(\.text)).isDisjoint(with: s.globalHeldOut.map(\.text) + s.targetHeldOut.map(\.text)))
        // Failures weigh more and keep their cost; replay comes from the other intents only.
        #expect(s.train.filter { $0.text.hasPrefix("failure") }.allSatisfy { $0.weight == 2 && $0.cost == 3 && $0.label == 0 })
        #expect(s.train.filter { $0.label == 0 }.count == 2 * (c.regionExamples + c.failures))
    }

    @Test("held-out examples weigh their intent's production share over its held-out share")
    func productionWeights() {
        let s = DataSelection.select(labels: Self.labels, targets: ["a"], train: Self.train, heldOut: Self.heldOut, failures: [],
                                     production: ["a": 97, "b": 0, "c": 0])
        // Shares with add-one smoothing: a 98/100, b and c 1/100 each; each intent is a third of the held-out set.
        let wa = s.globalHeldOut.first { $0.label == 0 }!.weight, wb = s.globalHeldOut.first { $0.label == 1 }!.weight
        #expect(abs(wa - 0.98 * 3) < 1e-4)
        #expect(abs(wb - 0.01 * 3) < 1e-4)
        #expect(s.earlyStopping.allSatisfy { $0.weight > 0 })
        let plain = DataSelection.select(labels: Self.labels, targets: ["a"], train: Self.train, heldOut: Self.heldOut, failures: [])
        #expect(plain.globalHeldOut.allSatisfy { $0.weight == 1 })
    }

    @Test("seeded: the same options give the same selection; no augmentation or replay when turned off")
    func seeded() {
        let a = DataSelection.select(labels: Self.labels, targets: ["b"], train: Self.train, heldOut: Self.heldOut, failures: Self.failures)
        let b = DataSelection.select(labels: Self.labels, targets: ["b"], train: Self.train, heldOut: Self.heldOut, failures: Self.failures)
        #expect(a.train.map(\.text) == b.train.map(\.text))
        var o = DataSelection.Options()
        o.typoRate = 0
        o.replayRatio = 0
        let plain = DataSelection.select(labels: Self.labels, targets: ["b"], train: Self.train, heldOut: Self.heldOut, failures: Self.failures, options: o)
        #expect(plain.counts.augmented == 0 && plain.counts.replay == 0 && plain.counts.replayAugmented == 0)
        #expect(plain.train.allSatisfy { $0.label == 1 })
    }

    @Test("replayed examples get noisy copies in their own groups, of their own intents; none with replayCopies 0")
    func noisyReplay() {
        var o = DataSelection.Options()
        o.replayRatio = 1
        o.replayCopies = 2
        let s = DataSelection.select(labels: Self.labels, targets: ["a"], train: Self.train, heldOut: Self.heldOut, failures: Self.failures, options: o)
        #expect(s.counts.replayAugmented == 2 * s.counts.replay)
        let others = s.train.filter { $0.label != 0 }
        #expect(others.count == 3 * s.counts.replay)
        // Each replayed example with its two copies makes a group of three (consistency trains them together),
        // never shared with a target example's group.
        let groups = Dictionary(grouping: others, by: { $0.group ?? -1 })
        #expect(groups[-1] == nil)
        #expect(groups.values.allSatisfy { g in g.count == 3 && g.filter(\.noisy).count == 2 && Set(g.map(\.label)).count == 1 })
        let targetGroups = Set(s.train.filter { $0.label == 0 }.compactMap(\.group))
        #expect(targetGroups.isDisjoint(with: Set(groups.keys)))
        #expect(others.filter(\.noisy).contains { x in !Self.train.contains { $0.0 == x.text } })  // the copies differ from the clean texts
        o.replayCopies = 0
        let clean = DataSelection.select(labels: Self.labels, targets: ["a"], train: Self.train, heldOut: Self.heldOut, failures: Self.failures, options: o)
        #expect(clean.counts.replayAugmented == 0 && clean.train.filter { $0.label != 0 }.allSatisfy { !$0.noisy })
    }
}
