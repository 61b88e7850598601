import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor
import Training

/// The weakened-intents scenario of the risk benchmark, then a local fine-tune per method
/// against a full fine-tune of every layer on all data.
struct LocalFineTuneBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune",
        abstract: "Local fine-tuning on Banking77's weakened-intents scenario: head, lora, top-layers and a full fine-tune, one table.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seed of the scenario (which intents are weakened, the typos, the feedback).")
    var seed: UInt64 = 1

    @Option(help: "Methods to run, comma-separated (head, lora, top-layers, full; full-robust: every layer on all the data with the robust objective).")
    var methods: String = "head,lora,top-layers,full"

    @Option(help: "Epochs of the local fine-tunes.")
    var epochs: Int = 6

    @Option(help: "Batch size of the local fine-tunes (finetune/start's default is 32).")
    var batchSize: Int = 16

    @Option(help: "Epochs of the full fine-tune.")
    var fullEpochs: Int = 2

    @Option(help: "Layers for lora and top-layers.")
    var layers: Int = 2

    @Flag(help: "Instead of the scenario: fine-tune on all of Banking77's train (no weakening, typo-augmented) and report test accuracy.")
    var allData = false

    @Option(help: "Epochs of the all-data fine-tunes.")
    var allDataEpochs: Int = 2

    @Option(help: "Typo rate of the augmentation in the all-data fine-tunes (0: none).")
    var typoRate: Double = 0.1

    @Option(help: "Noisy copies of each replayed example in the scenario's local fine-tunes (finetune/start's `replayCopies`).")
    var replayCopies = DataSelection.Options().replayCopies

    @Flag(help: "Scenario: every version reads its input through a spelling normaliser built from the cut train (model/fit's), the parent included.")
    var normaliser = false

    @Option(help: "Scenario: objective of the local fine-tunes and of full-robust (augment, consistency: noisy copies and the KL term, adversarial: that and adversarial typos).")
    var objective: String = "augment"

    @Option(help: "Scenario: noisy copies per example with the consistency and adversarial objectives.")
    var noisyCopies: Int = 2

    @Option(help: "Scenario: riskiest target examples given an adversarial typo (adversarial objective).")
    var adversarialExamples: Int = 200

    func run() throws {
        if allData {
            let enc = try SentenceEncoder.load(folder: paths.model)
            let fullTrain = try paths.rows("train.csv"), test = try paths.rows("test.csv")
            let labels = Array(Set(fullTrain.map(\.1))).sorted()
            let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
            let engine = BatchEngine(encoder: enc)
            print("robustd-bench finetune: Banking77 (\(fullTrain.count) train, \(test.count) test), model \(paths.model); Banking77: Casanueva et al. 2020, CC BY 4.0")
            let embed = { (t: [String], e: SentenceEncoder) in WeakenedIntents.embed(t, engine: engine, with: e) }
            let predict = { (v: ModelVersion, e: SentenceEncoder, t: [String]) -> [Int] in
                let logits = v.head.logits(embed(t, e), count: t.count)
                return (0..<t.count).map { n in (0..<labels.count).max { logits[n * labels.count + $0] < logits[n * labels.count + $1] }! }
            }
            try runAllData(enc: enc, labels: labels, index: index, fullTrain: fullTrain, test: test, embed: embed, predict: predict)
            return
        }
        guard ["augment", "consistency", "adversarial"].contains(objective) else { throw ValidationError("--objective: augment, consistency or adversarial") }
        let sc = try WeakenedIntents(paths: paths, seed: seed)
        let enc = sc.enc, labels = sc.labels, index = sc.index
        let train = sc.train, validation = sc.validation, failures = sc.failures, targets = sc.targets, production = sc.production
        let cut = sc.cut, evaluation = sc.evaluation, weak = sc.weak
        // model/fit's normaliser: the words of every text of the dataset, the tokenizer's whole
        // words protected.
        var spelling: Normaliser? = nil
        if normaliser {
            spelling = Normaliser.build(texts: cut.map(\.0), protected: try paths.protectedWords())
        }
        let parent = sc.parent.withNormaliser(spelling)
        func predict(_ v: ModelVersion, _ e: SentenceEncoder, _ texts: [String]) -> [Int] {
            sc.predict(v, e, v.normaliser.map { n in texts.map { n.normalise($0).text } } ?? texts)
        }
        print("robustd-bench finetune: Banking77 (\(sc.cut.count) cut train, \(sc.replay.count + sc.evaluation.count) test), model \(paths.model); Banking77: Casanueva et al. 2020, CC BY 4.0")
        print(String(format: "parent: frozen encoder + logistic-regression head on the cut train (%d examples), fitted in %.0f s", train.count, sc.parentSeconds))
        var t0 = Date()
        print("scenario seed \(seed): weakened \(weak.sorted().joined(separator: ", "))")
        print("  \(sc.replay.count) requests replayed, \(sc.replayPredictions.enumerated().filter { labels[$0.1] != sc.replay[$0.0].1 }.count) errors, \(failures.count) reported;"
              + " target regions (top 10 of risk/regions): \(targets.intersection(weak).count) of them weakened")

        // Evaluation: cost = 1 per error (every intent's impact 1).
        let evalTexts = evaluation.map(\.0), evalY = evaluation.map { index[$0.1]! }
        var evRng = SeededRandom(seed: seed &+ 300)
        let typo10 = evalTexts.map { typos($0, rate: 0.1, rng: &evRng) }, typo20 = evalTexts.map { typos($0, rate: 0.2, rng: &evRng) }
        let inTarget = evaluation.map { targets.contains($0.1) }
        struct Result { var name: String; var target: Double; var global: Double; var acc: Double; var acc10: Double; var acc20: Double
                        var targetAcc10: Double; var targetAcc20: Double; var seconds: Double; var flops: Double; var gate: String }
        func measure(_ name: String, _ v: ModelVersion, _ e: SentenceEncoder, seconds: Double, flops: Double, gate: String) -> Result {
            let p = predict(v, e, evalTexts), p10 = predict(v, e, typo10), p20 = predict(v, e, typo20)
            let wrong = zip(p, evalY).map { $0 != $1 }
            let tN = inTarget.filter { $0 }.count
            let tErr = zip(wrong, inTarget).filter { $0 && $1 }.count
            func acc(_ q: [Int]) -> Double { Double(zip(q, evalY).filter { $0 == $1 }.count) / Double(evalY.count) }
            func targetAcc(_ q: [Int]) -> Double {
                Double(q.indices.filter { inTarget[$0] && q[$0] == evalY[$0] }.count) / Double(max(1, tN))
            }
            return Result(name: name, target: Double(tErr) / Double(max(1, tN)), global: Double(wrong.filter { $0 }.count) / Double(wrong.count),
                          acc: acc(p), acc10: acc(p10), acc20: acc(p20), targetAcc10: targetAcc(p10), targetAcc20: targetAcc(p20),
                          seconds: seconds, flops: flops, gate: gate)
        }
        var results = [measure("parent", parent, enc, seconds: 0, flops: 0, gate: "-")]
        let pool = Array(zip(train.map(\.0), train.map(\.1)))
        for m in methods.split(separator: ",").map(String.init) {
            var plan = LocalFineTune.Plan()
            plan.threads = 2
            var opts = DataSelection.Options()
            opts.seed = seed
            opts.replayCopies = replayCopies
            var targetSet = targets
            if m == "full" || m == "full-robust" {
                plan.settings.method = .topLayers
                plan.settings.layers = enc.config.layers
                plan.settings.epochs = fullEpochs
                plan.settings.learningRate = 5e-5
                plan.settings.headLearningRate = 5e-5
                targetSet = Set(labels)
                opts.replayRatio = 0
                if m == "full" { opts.typoRate = 0 }
            } else {
                guard let method = FineTuner.Method(rawValue: m) else { throw ValidationError("unknown method \(m)") }
                plan.settings = FineTuner.Settings(method: method)
                plan.settings.layers = layers
                plan.settings.epochs = epochs
                plan.settings.batchSize = batchSize
            }
            // The robust objective, for the local methods and full-robust alike.
            if m != "full" && objective != "augment" {
                opts.typoCopies = noisyCopies
                plan.settings.consistency = 1
                if objective == "adversarial" { plan.adversarialExamples = adversarialExamples }
            }
            let sel = DataSelection.select(labels: labels, targets: targetSet, train: pool, heldOut: validation, failures: failures,
                                           production: production, options: opts)
            plan.train = sel.train; plan.earlyStopping = sel.earlyStopping
            plan.targetHeldOut = DataSelection.select(labels: labels, targets: targets, train: [], heldOut: validation, failures: failures,
                                                      production: production, options: opts).targetHeldOut
            plan.globalHeldOut = sel.globalHeldOut
            plan.outOfScopeTrain = pool.map { LabelledText(text: $0.0, label: index[$0.1]!) }
            t0 = Date()
            FileHandle.standardError.write(Data("\(m): \(sel.train.count) training examples (\(sel.counts.failures) failures, \(sel.counts.regionExamples) region examples, \(sel.counts.augmented) typo copies, \(sel.counts.replay) replay)\n".utf8))
            let cand = try LocalFineTune.run(encoder: enc, parent: parent, plan: plan, cost: { _, _ in 1 }, fullDataCount: cut.count + failures.count,
                                             events: { e in
                                                 if case .step(let s, let n, _, let loss, _) = e, s % 100 == 0 {
                                                     FileHandle.standardError.write(Data("  \(m) step \(s)/\(n) loss \(String(format: "%.4f", loss))\n".utf8))
                                                 }
                                                 if case .evaluation(let s, let score) = e {
                                                     FileHandle.standardError.write(Data("  \(m) step \(s): early-stopping score \(String(format: "%.4f", score))\n".utf8))
                                                 }
                                             })
            let seconds = Date().timeIntervalSince(t0)
            let e2 = enc.replacingLayers(cand.layers.mapValues(\.serving))
            let gate = (cand.gate.passed ? "pass" : "fail") + String(format: " (target %+.0f%%, global %+.4f, bound %+.4f)", -100 * cand.gate.targetReduction,
                                                                     cand.gate.global.difference, cand.gate.global.upperBound)
            results.append(measure(m, cand.version, e2, seconds: seconds, flops: cand.report.trainingFlops, gate: gate))
            FileHandle.standardError.write(Data(String(format: "  %@: training %.1f GFLOP, with the gate's measurements and refits %.1f GFLOP; estimated full fine-tune %.1f GFLOP\n",
                                                       m, cand.report.trainingFlops / 1e9, cand.report.flops / 1e9, cand.report.fullFineTuneFlops / 1e9).utf8))
            FileHandle.standardError.write(Data("  \(m): \(cand.report.steps) steps (\(cand.report.stoppedBy)), \(String(format: "%.0f", seconds)) s\n".utf8))
        }
        print("")
        print("evaluation: the other half of test (\(evaluation.count) texts, \(inTarget.filter { $0 }.count) in the target regions); cost = 1 per error")
        if let spelling { print("every version reads through model/fit's normaliser (\(spelling.counts.count) words of the cut train); objective of the local fine-tunes and full-robust: \(objective)") }
        print("method       target cost  global cost  test acc  acc@10% typos  acc@20% typos  target @10%  target @20%  seconds  train GFLOP  gate (held-out validation)")
        for r in results {
            print(String(format: "%@  %11.4f  %11.4f  %7.2f%%  %12.2f%%  %12.2f%%  %10.2f%%  %10.2f%%  %7.0f  %11.1f  %@", r.name.padding(toLength: 11, withPad: " ", startingAt: 0) as NSString, r.target, r.global,
                         100 * r.acc, 100 * r.acc10, 100 * r.acc20, 100 * r.targetAcc10, 100 * r.targetAcc20, r.seconds, r.flops / 1e9, r.gate as NSString))
        }
        if let robust = results.first(where: { $0.name == "full-robust" }) {
            // Issue 13's target: a local robust fine-tune at ≤ 10% of the full robust fine-tune's
            // FLOPs reaching ≥ 90% of its robustness gain (accuracy under typos over the parent),
            // on the target regions and on every intent.
            let base = results[0]
            func share(_ g: Double, _ full: Double) -> String { full > 0 ? String(format: "%.0f%%", 100 * g / full) : "n/a (full gains nothing)" }
            print("")
            print(String(format: "full-robust gains over the parent: target regions %+.2f / %+.2f points, every intent %+.2f / %+.2f (10%% / 20%% typos)",
                         100 * (robust.targetAcc10 - base.targetAcc10), 100 * (robust.targetAcc20 - base.targetAcc20),
                         100 * (robust.acc10 - base.acc10), 100 * (robust.acc20 - base.acc20)))
            for r in results where ["head", "lora", "top-layers"].contains(r.name) {
                print(String(format: "%@: target regions %@ / %@ of its gain, every intent %@ / %@, at %.1f%% of its training FLOPs", r.name as NSString,
                             share(r.targetAcc10 - base.targetAcc10, robust.targetAcc10 - base.targetAcc10) as NSString,
                             share(r.targetAcc20 - base.targetAcc20, robust.targetAcc20 - base.targetAcc20) as NSString,
                             share(r.acc10 - base.acc10, robust.acc10 - base.acc10) as NSString,
                             share(r.acc20 - base.acc20, robust.acc20 - base.acc20) as NSString, 100 * r.flops / robust.flops))
            }
        }
        if let full = results.first(where: { $0.name == "full" }) {
            let base = results[0]
            let fullDrop = base.target - full.target
            print("")
            for r in results where ["head", "lora", "top-layers"].contains(r.name) {
                let recovered = fullDrop > 0 ? (base.target - r.target) / fullDrop : .nan
                print(String(format: "%@: recovers %.0f%% of the full fine-tune's target-cost reduction at %.1f%% of its training FLOPs; global cost %+.4f vs the parent",
                             r.name as NSString, 100 * recovered, 100 * r.flops / full.flops, r.global - base.global))
            }
        }
    }

    /// Every intent a target: how far local fine-tuning on all the data goes, and what typo
    /// augmentation does for robustness.
    func runAllData(enc: SentenceEncoder, labels: [String], index: [String: Int], fullTrain: [(String, String)], test: [(String, String)],
                    embed: ([String], SentenceEncoder) -> [Float], predict: (ModelVersion, SentenceEncoder, [String]) -> [Int]) throws {
        let H = enc.hiddenSize
        let (train, validation) = stratifiedSplit(fullTrain, label: \.1, fraction: 0.1, seed: 42)
        let t0 = Date()
        let (parent, _) = HeadFitting.fit(id: 1, labels: labels, dimension: H, train: (embed(train.map(\.0), enc), train.map { index[$0.1]! }),
                                          validation: (embed(validation.map(\.0), enc), validation.map { index[$0.1]! }))
        print(String(format: "all data: parent = frozen encoder + logistic-regression head on 90%% of train (%d), %.0f s; validation (%d) for early stopping and the gate",
                     train.count, Date().timeIntervalSince(t0), validation.count))
        var evRng = SeededRandom(seed: seed &+ 300)
        let texts = test.map(\.0), y = test.map { index[$0.1]! }
        let typo10 = texts.map { typos($0, rate: 0.1, rng: &evRng) }, typo20 = texts.map { typos($0, rate: 0.2, rng: &evRng) }
        func acc(_ p: [Int]) -> Double { Double(zip(p, y).filter { $0 == $1 }.count) / Double(y.count) }
        func row(_ name: String, _ v: ModelVersion, _ e: SentenceEncoder, _ seconds: Double, _ flops: Double) {
            let a = acc(predict(v, e, texts)), a10 = acc(predict(v, e, typo10)), a20 = acc(predict(v, e, typo20))
            print(String(format: "%@  %7.2f%%  %7.2f%% (%+.2f)  %7.2f%% (%+.2f)  %7.0f  %9.1f", name.padding(toLength: 26, withPad: " ", startingAt: 0) as NSString,
                         100 * a, 100 * a10, 100 * (a10 - a), 100 * a20, 100 * (a20 - a), seconds, flops / 1e9))
        }
        print("method                      test acc  @10% typos (Δ)    @20% typos (Δ)    seconds  train GFLOP")
        row("parent (logistic regression)", parent, enc, 0, 0)
        let pool = train
        for m in methods.split(separator: ",").map(String.init) {
            var plan = LocalFineTune.Plan()
            plan.threads = 2
            plan.settings = try allDataSettings(m, layers: layers, epochs: allDataEpochs, encoderLayers: enc.config.layers)
            var opts = DataSelection.Options()
            opts.seed = seed
            opts.typoRate = typoRate
            opts.replayRatio = 0
            let sel = DataSelection.select(labels: labels, targets: Set(labels), train: pool, heldOut: validation, failures: [], options: opts)
            plan.train = sel.train; plan.earlyStopping = sel.earlyStopping
            plan.targetHeldOut = sel.targetHeldOut; plan.globalHeldOut = sel.globalHeldOut
            plan.outOfScopeTrain = []  // accuracy only: the out-of-scope refit is not needed here
            let t = Date()
            let cand = try LocalFineTune.run(encoder: enc, parent: parent, plan: plan, cost: { _, _ in 1 }, fullDataCount: pool.count,
                                             events: { e in
                                                 if case .step(let s, let n, _, let loss, _) = e, s % 200 == 0 {
                                                     FileHandle.standardError.write(Data("  \(m) step \(s)/\(n) loss \(String(format: "%.4f", loss))\n".utf8))
                                                 }
                                             })
            let e2 = enc.replacingLayers(cand.layers.mapValues(\.serving))
            FileHandle.standardError.write(Data("  \(m): \(cand.report.steps) steps (\(cand.report.stoppedBy), best step \(cand.report.bestStep ?? -1))\n".utf8))
            row("\(m)\(m == "head" ? "" : " (\(plan.settings.layers) layers)")", cand.version, e2, Date().timeIntervalSince(t), cand.report.trainingFlops)
        }
        print("typo augmentation: one copy of every training example at \(typoRate) word typos; evaluation typos from another generator")
    }

}

/// The settings of an all-data fine-tune by method name, as the all-data benchmarks run them:
/// "full" trains every layer and the head at 5e-5; the local methods train `layers` layers at
/// the rates measured for them (batch 32).
func allDataSettings(_ m: String, layers: Int, epochs: Int, encoderLayers: Int) throws -> FineTuner.Settings {
    var s = FineTuner.Settings()
    s.epochs = epochs
    s.batchSize = 32
    if m == "full" {
        s.method = .topLayers
        s.layers = encoderLayers
        s.learningRate = 5e-5; s.headLearningRate = 5e-5
        return s
    }
    guard let method = FineTuner.Method(rawValue: m) else { throw ValidationError("unknown method \(m)") }
    s.method = method
    s.layers = layers
    switch method {
    case .head: s.headLearningRate = 1e-3
    case .lora: s.learningRate = 1e-3; s.headLearningRate = 3e-5
    case .topLayers: s.learningRate = 3e-5; s.headLearningRate = 3e-5
    }
    return s
}
