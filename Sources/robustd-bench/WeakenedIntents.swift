import Encoder
import Foundation
import Scoring
import Tensor
import Training

/// The weakened-intents scenario on Banking77 (Casanueva et al. 2020, CC BY 4.0), shared by the
/// fine-tune and rollout benchmarks: 10 seeded intents cut to 5 training examples, a parent
/// head fitted as model/fit does, half of test replayed as traffic (30% with typos) with
/// feedback on a share of its errors, the risk ranking's top 10 intents as targets. The other
/// half of test is the evaluation set no version sees.
struct WeakenedIntents {
    let enc: SentenceEncoder
    let labels: [String]
    let index: [String: Int]
    let engine: BatchEngine
    let weak: Set<String>
    /// The cut training data, and its model/fit split (stratified 10% validation, seed 42).
    let cut: [(String, String)]
    let train: [(String, String)]
    let validation: [(String, String)]
    let parent: ModelVersion
    let replay: [(String, String)]
    let replayTexts: [String]
    let replayPredictions: [Int]
    let failures: [DataSelection.Failure]
    let failureCases: [FailureCase]
    let targets: Set<String>
    /// Production volume per intent (misses included), as risk/regions estimates it.
    let production: [String: Double]
    let evaluation: [(String, String)]
    let parentSeconds: Double

    init(paths: BenchPaths, seed: UInt64, feedbackRate: Double = 0.3) throws {
        enc = try SentenceEncoder.load(folder: paths.model)
        engine = BatchEngine(encoder: enc)
        let fullTrain = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        labels = Array(Set(fullTrain.map(\.1))).sorted()
        index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        var rng = SeededRandom(seed: seed)
        weak = Set(labels.shuffled(using: &rng).prefix(10))
        var kept: [String: Int] = [:]
        let weak = self.weak
        cut = fullTrain.filter { t in
            guard weak.contains(t.1) else { return true }
            kept[t.1, default: 0] += 1
            return kept[t.1]! <= 5
        }
        (train, validation) = stratifiedSplit(cut, label: \.1, fraction: 0.1, seed: 42)
        let t0 = Date()
        let labelIndex = index
        var parentFit: ModelVersion?
        do {
            let trainX = Self.embed(train.map(\.0), engine: engine, with: enc), valX = Self.embed(validation.map(\.0), engine: engine, with: enc)
            parentFit = HeadFitting.fit(id: 1, labels: labels, dimension: enc.hiddenSize, train: (trainX, train.map { labelIndex[$0.1]! }),
                                        validation: (valX, validation.map { labelIndex[$0.1]! })).0
        }
        parent = parentFit!
        parentSeconds = Date().timeIntervalSince(t0)

        var order = Array(test.indices)
        order.shuffle(using: &rng)
        replay = order.prefix(test.count / 2).map { test[$0] }
        evaluation = order.dropFirst(test.count / 2).map { test[$0] }
        var typoRng = SeededRandom(seed: seed &+ 100)
        replayTexts = replay.map { Double(typoRng.next() % 1000) / 1000 < 0.3 ? typos($0.0, rate: 0.1, rng: &typoRng) : $0.0 }
        let replayLogits = parent.head.logits(Self.embed(replayTexts, engine: engine, with: enc), count: replayTexts.count)
        let C = labels.count
        var predictions: [Int] = []
        var traffic: [String: Int] = [:], expectedErrors: [String: Double] = [:]
        for n in 0..<replayTexts.count {
            let probs = softmax(replayLogits[(n * C)..<((n + 1) * C)], temperature: parent.temperature)
            let p = probs.indices.max { probs[$0] < probs[$1] }!
            predictions.append(p)
            traffic[labels[p], default: 0] += 1
            expectedErrors[labels[p], default: 0] += Double(1 - probs[p])
        }
        replayPredictions = predictions
        var fbRng = SeededRandom(seed: seed &+ 200)
        var failures: [DataSelection.Failure] = [], cases: [FailureCase] = []
        for (i, p) in predictions.enumerated() where labels[p] != replay[i].1 && Double(fbRng.next() % 1000) / 1000 < feedbackRate {
            failures.append(.init(text: replayTexts[i], correct: replay[i].1, cost: 1))
            cases.append(FailureCase(predicted: labels[p], correct: replay[i].1, cost: 1, text: replayTexts[i], vector: []))
        }
        self.failures = failures
        failureCases = cases
        let regions = RegionRanking.rank(traffic: traffic, expectedErrors: expectedErrors, failures: cases, impact: { _ in 1 }, defaultCost: 1)
        targets = Set(regions.filter { $0.kind == .intent }.prefix(10).map(\.label))
        production = Dictionary(regions.filter { $0.kind == .intent }.map { ($0.label, Double($0.traffic)) }, uniquingKeysWith: +)
    }

    static func embed(_ texts: [String], engine: BatchEngine, with e: SentenceEncoder) -> [Float] {
        let H = e.hiddenSize
        var out: [Float] = []
        out.reserveCapacity(texts.count * H)
        let buf = Tensor(shape: [64, H])
        var i = 0
        while i < texts.count {
            let ids = e.encode(Array(texts[i..<min(i + 64, texts.count)])).map(\.ids)
            engine.embed(ids, into: buf, using: e)
            out += Array(UnsafeBufferPointer(start: buf.data, count: ids.count * H))
            i += 64
        }
        return out
    }

    func embed(_ texts: [String], with e: SentenceEncoder) -> [Float] { Self.embed(texts, engine: engine, with: e) }

    func predict(_ v: ModelVersion, _ e: SentenceEncoder, _ texts: [String]) -> [Int] {
        let logits = v.head.logits(embed(texts, with: e), count: texts.count)
        let C = labels.count
        return (0..<texts.count).map { n in (0..<C).max { logits[n * C + $0] < logits[n * C + $1] }! }
    }

    /// The selection a local fine-tune of `targets` makes from the scenario's data, as the plan's data.
    func plan(_ settings: FineTuner.Settings, targets: Set<String>, failures: [DataSelection.Failure], options: DataSelection.Options) -> LocalFineTune.Plan {
        var plan = LocalFineTune.Plan()
        plan.threads = 2
        plan.settings = settings
        let pool = Array(zip(train.map(\.0), train.map(\.1)))
        let sel = DataSelection.select(labels: labels, targets: targets, train: pool, heldOut: validation, failures: failures,
                                       production: production, options: options)
        plan.train = sel.train
        plan.earlyStopping = sel.earlyStopping
        plan.targetHeldOut = sel.targetHeldOut
        plan.globalHeldOut = sel.globalHeldOut
        plan.outOfScopeTrain = pool.map { LabelledText(text: $0.0, label: index[$0.1]!) }
        return plan
    }
}
