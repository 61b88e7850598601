import Foundation
import Reports
import Scoring

/// Chooses a local fine-tune's data: the target regions' reported failures (with their
/// corrected labels) and labelled examples, a seeded typo-augmented copy of each, and a replay
/// sample of the other intents' examples against forgetting.
///
/// Held-out data must be data the parent never trained on, or early stopping would always
/// prefer the parent (the parent fits its own training data best) and the gate would be
/// flattered: so both come from the dataset's validation examples and a held-out share of the
/// failures, split in two, stratified by intent: one half for early stopping, the other for
/// the gate (an intent with one validation example gives it to the gate).
public enum DataSelection {
    public struct Options: Sendable, Codable, Equatable {
        /// Word typo rate of the augmented copies (0: no augmentation).
        public var typoRate = 0.1
        /// Augmented copies of each target example: the first with typos, later ones with
        /// other kinds of noise too (``Noise``). Each copy shares a group with its clean example.
        public var typoCopies = 1
        /// Replayed examples of other intents per target example.
        public var replayRatio = 2.0
        /// Noisy copies of each replayed example too (0: replay stays clean). A fine-tune that
        /// sees noise only on its target intents learns the others' clean forms alone and loses
        /// their robustness; the gate's typo checks measure that on every intent.
        public var replayCopies = 1
        /// Loss weight of a reported failure (the regions' examples weigh 1).
        public var failureWeight: Float = 2
        /// Share of the failures held out (half for early stopping, half for the gate).
        public var failureHoldOut = 0.3
        public var seed: UInt64 = 1
        public init() {}
    }

    public struct Failure: Sendable {
        public var text: String
        public var correct: String
        public var cost: Double
        public init(text: String, correct: String, cost: Double) { self.text = text; self.correct = correct; self.cost = cost }
    }

    public struct Selection: Sendable {
        public var train: [LabelledText] = []
        public var earlyStopping: [LabelledText] = []
        public var targetHeldOut: [LabelledText] = []
        public var globalHeldOut: [LabelledText] = []
        public var counts: Counts = Counts()
    }

    public typealias Counts = SelectionCounts

    /// - Parameters:
    ///   - labels: the version's labels (indices are positions here)
    ///   - targets: the target regions' intents
    ///   - train: the dataset's training examples (text, label)
    ///   - heldOut: the dataset's validation examples
    ///   - failures: reported failures whose corrected label is one of `labels`
    ///   - production: estimated production volume per intent (risk/regions' traffic, misses
    ///     included). Held-out examples are weighted by their intent's production share over
    ///     its share of the held-out data, so that held-out costs are costs per production
    ///     request: a validation split cut from training data rarely has production's mix
    ///     (intents that were thin in training are thin in validation too, and those are what
    ///     a fine-tune fixes). nil or empty: every example weighs 1.
    public static func select(labels: [String], targets: Set<String>, train: [(String, String)], heldOut: [(String, String)],
                              failures: [Failure], production: [String: Double]? = nil, options o: Options = Options()) -> Selection {
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        var rng = SeededRandom(seed: o.seed)
        var sel = Selection()
        // Failures of the target regions: most train, a share is held out for the gate.
        var fails = failures.filter { targets.contains($0.correct) && index[$0.correct] != nil }
        fails.shuffle(using: &rng)
        let holdFailures = fails.count >= 5 ? Int((Double(fails.count) * o.failureHoldOut).rounded()) : 0
        let failTrain = fails.dropFirst(holdFailures).map { LabelledText(text: $0.text, label: index[$0.correct]!, weight: o.failureWeight, cost: $0.cost) }
        let held = fails.prefix(holdFailures).map { LabelledText(text: $0.text, label: index[$0.correct]!, weight: 1, cost: $0.cost) }
        let failES = Array(held.prefix(held.count / 2)), failHeld = Array(held.dropFirst(held.count / 2))
        let regionExamples = train.compactMap { t, l in targets.contains(l) ? index[l].map { LabelledText(text: t, label: $0) } : nil }
        // Seeded noisy copies of each example, in a group with it (groups numbered from `firstGroup`).
        func noisyCopies(of xs: inout [LabelledText], copies: Int, firstGroup: Int, salt: UInt64) -> [LabelledText] {
            guard o.typoRate > 0 && copies > 0 else { return [] }
            var out: [LabelledText] = []
            for k in xs.indices {
                let g = firstGroup + k
                xs[k].group = g
                let x = xs[k]
                for c in 0..<copies {
                    let t = Noise.variant(x.text, copy: c, typoRate: o.typoRate, seed: o.seed &* 7919 &+ salt &+ UInt64(g * 16 + c))
                    out.append(LabelledText(text: t, label: x.label, weight: x.weight, cost: x.cost, group: g, noisy: true))
                }
            }
            return out
        }
        var targetSet = failTrain + regionExamples
        let augmented = noisyCopies(of: &targetSet, copies: o.typoCopies, firstGroup: 0, salt: 0)
        targetSet += augmented
        var others = train.compactMap { t, l in targets.contains(l) ? nil : index[l].map { LabelledText(text: t, label: $0) } }
        others.shuffle(using: &rng)
        var replay = Array(others.prefix(Int((Double(failTrain.count + regionExamples.count) * o.replayRatio).rounded())))
        let replayNoisy = noisyCopies(of: &replay, copies: o.replayCopies, firstGroup: targetSet.count, salt: 0x5EED)
        var all = targetSet + replay + replayNoisy
        all.shuffle(using: &rng)
        sel.train = all
        // Validation, stratified: every other example of an intent to early stopping, starting
        // with the second, so that an intent with one example gives it to the gate.
        var byLabel: [Int: [LabelledText]] = [:]
        for (t, l) in heldOut { if let i = index[l] { byLabel[i, default: []].append(LabelledText(text: t, label: i)) } }
        var gate: [LabelledText] = [], es: [LabelledText] = []
        for l in byLabel.keys.sorted() {
            var items = byLabel[l]!
            items.shuffle(using: &rng)
            for (k, x) in items.enumerated() { if k % 2 == 0 { gate.append(x) } else { es.append(x) } }
        }
        // Held-out failures count as held-out examples of their corrected intent. They were
        // all wrong for the parent by construction, which flatters a candidate that fixes them:
        // the target-region comparison is meant to show exactly that, and the global check
        // weighs them by their intent's production share like every other example.
        es += failES
        gate += failHeld
        if let production, !production.isEmpty {
            // Add-one smoothing over the version's labels, so an intent without traffic still counts a little.
            let total = labels.reduce(0.0) { $0 + (production[$1] ?? 0) + 1 }
            func weighted(_ xs: [LabelledText]) -> [LabelledText] {
                var count: [Int: Int] = [:]
                for x in xs { count[x.label, default: 0] += 1 }
                return xs.map { x in
                    var y = x
                    let p = ((production[labels[x.label]] ?? 0) + 1) / total, q = Double(count[x.label]!) / Double(xs.count)
                    y.weight = Float(p / q)
                    return y
                }
            }
            es = weighted(es)
            gate = weighted(gate)
        } else {
            es = es.map { var y = $0; y.weight = 1; return y }
            gate = gate.map { var y = $0; y.weight = 1; return y }
        }
        sel.earlyStopping = es
        sel.globalHeldOut = gate
        sel.targetHeldOut = gate.filter { targets.contains(labels[$0.label]) }
        sel.counts = Counts(failures: failTrain.count, failuresHeldOut: failHeld.count, failuresForEarlyStopping: failES.count,
                            regionExamples: regionExamples.count, augmented: augmented.count, replay: replay.count, replayAugmented: replayNoisy.count,
                            earlyStopping: sel.earlyStopping.count, targetHeldOut: sel.targetHeldOut.count, globalHeldOut: sel.globalHeldOut.count)
        return sel
    }
}
