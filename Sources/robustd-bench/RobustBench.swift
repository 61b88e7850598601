import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor
import Training

/// Robustness on Banking77 test (Casanueva et al. 2020, CC BY 4.0): clean accuracy, accuracy
/// under word typos, and the success rate of a greedy one-edit character attack, for the
/// parent and for what robust training adds (docs/robustness.md).
struct RobustBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robust",
        abstract: "Robustness table on Banking77 test: clean, 10%/20% word typos, one-edit attack success rate, seconds, FLOPs.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seed of the typos and of the attack's sample.")
    var seed: UInt64 = 1

    @Option(help: "Correctly classified test sentences attacked (0: no attack column).")
    var attackSentences: Int = 300

    @Option(help: "Candidate edits tried per attacked sentence at most (a seeded sample when there are more).")
    var attackCandidates: Int = 48

    @Flag(help: "Do not protect the tokenizer's whole words from correction.")
    var unprotected = false

    @Option(help: "The normaliser's cost weight (log-frequency units per unit of edit cost).")
    var costWeight: Double = 4

    @Option(help: "Fine-tune rows, each 'method:objective' (methods head, lora, top-layers, full; objectives augment, consistency, adversarial (consistency + adversarial typos), embedding (consistency + embedding-space adversarial), all); empty: none.")
    var rows: String = "head:augment,head:consistency,lora:augment,lora:consistency,lora:adversarial,top-layers:augment,top-layers:consistency,top-layers:adversarial,full:consistency"

    @Option(help: "Epochs of every fine-tune.")
    var epochs: Int = 2

    @Option(help: "λ of the consistency term.")
    var consistency: Float = 1

    @Option(help: "Noisy copies per example with the consistency and adversarial objectives.")
    var noisyCopies: Int = 2

    @Option(help: "Riskiest training examples given an adversarial typo (adversarial objective).")
    var adversarialExamples: Int = 1000

    @Option(help: "ε of embedding-space adversarial training (embedding objective).")
    var epsilon: Float = 0.05

    @Flag(help: "Only measure what the normaliser adds to single-query latency, and stop.")
    var latency = false

    @Flag(help: "Also print what the normaliser changed on a few test sentences.")
    var showCorrections = false

    func run() throws {
        let enc = try SentenceEncoder.load(folder: paths.model)
        let engine = BatchEngine(encoder: enc)
        let fullTrain = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let labels = Array(Set(fullTrain.map(\.1))).sorted()
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        let H = enc.hiddenSize
        func embed(_ texts: [String]) -> [Float] { WeakenedIntents.embed(texts, engine: engine, with: enc) }
        let texts = test.map(\.0), y = test.map { index[$0.1]! }
        var evRng = SeededRandom(seed: seed &+ 300)
        let typo10 = texts.map { typos($0, rate: 0.1, rng: &evRng) }, typo20 = texts.map { typos($0, rate: 0.2, rng: &evRng) }

        // Parent as model/fit makes it: λ chosen on a stratified 10% of train.
        var t0 = Date()
        let (train, validation) = stratifiedSplit(fullTrain, label: \.1, fraction: 0.1, seed: 42)
        let trainX = embed(train.map(\.0)), valX = embed(validation.map(\.0))
        let trainY = train.map { index[$0.1]! }, valY = validation.map { index[$0.1]! }
        let (parent, report) = HeadFitting.fit(id: 1, labels: labels, dimension: H, train: (trainX, trainY), validation: (valX, valY))
        let parentSeconds = Date().timeIntervalSince(t0)
        t0 = Date()
        var nset = Normaliser.Settings()
        nset.costWeight = costWeight
        let normaliser = Normaliser.build(texts: fullTrain.map(\.0), protected: unprotected ? [] : try paths.protectedWords(), settings: nset)
        let normaliserSeconds = Date().timeIntervalSince(t0)
        print(String(format: "parent: frozen encoder + logistic-regression head, λ %g chosen on 10%% of train (%d), %.0f s with embedding; normaliser: %d words from %d training texts in %.2f s",
                     report.lambda, validation.count, parentSeconds, normaliser.counts.count, fullTrain.count, normaliserSeconds))
        if latency {
            // Side by side in one run: a single query's embedding (tokenizer, encoder, pooling)
            // and the normaliser's pass over the same text, clean and with typos.
            func median(_ xs: [UInt64]) -> Double { Double(xs.sorted()[xs.count / 2]) / 1000 }
            func p99(_ xs: [UInt64]) -> Double { Double(xs.sorted()[min(xs.count - 1, xs.count * 99 / 100)]) / 1000 }
            let sampleTexts = Array(texts.prefix(500))
            var embedNs: [UInt64] = []
            for t in sampleTexts { let s = nowNs(); _ = embed([t]); embedNs.append(nowNs() - s) }
            print("")
            print(String(format: "single-query embedding: median %.0f µs, p99 %.0f µs (%d test sentences, one at a time)", median(embedNs), p99(embedNs), sampleTexts.count))
            for (name, set) in [("clean", texts), ("10% typos", typo10), ("20% typos", typo20)] {
                var ns: [UInt64] = []
                for t in set { let s = nowNs(); _ = normaliser.normalise(t); ns.append(nowNs() - s) }
                print(String(format: "normaliser on %@: median %.1f µs, p99 %.1f µs: %.2f%% / %.2f%% of the embedding's median", name as NSString,
                             median(ns), p99(ns), 100 * median(ns) / median(embedNs), 100 * p99(ns) / median(embedNs)))
            }
            return
        }

        func embed(_ texts: [String], _ e: SentenceEncoder) -> [Float] { WeakenedIntents.embed(texts, engine: engine, with: e) }
        func predict(_ v: ModelVersion, _ xs: [String], normalise: Bool, encoder e: SentenceEncoder? = nil) -> [Int] {
            let input = normalise ? xs.map { normaliser.normalise($0).text } : xs
            let logits = v.head.logits(embed(input, e ?? enc), count: input.count)
            let C = labels.count
            return (0..<input.count).map { n in (0..<C).max { logits[n * C + $0] < logits[n * C + $1] }! }
        }
        func acc(_ p: [Int]) -> Double { Double(zip(p, y).filter { $0 == $1 }.count) / Double(y.count) }

        // The attack's sample: seeded, from the whole test set; each row attacks the sample's
        // sentences it classifies correctly.
        var sampleRng = SeededRandom(seed: seed &+ 400)
        let sample = Array(test.indices.shuffled(using: &sampleRng).prefix(attackSentences))

        print("")
        print("row                              clean    @10% typos (Δ)     @20% typos (Δ)     attack success   seconds")
        struct Measured { var clean, typo10, typo20: Double; var attack: Double? }
        @discardableResult
        func row(_ name: String, _ v: ModelVersion, normalise: Bool, seconds: Double, encoder e: SentenceEncoder? = nil,
                 flops: Double? = nil, fullFlops: Double? = nil) -> Measured {
            let a = acc(predict(v, texts, normalise: normalise, encoder: e))
            let a10 = acc(predict(v, typo10, normalise: normalise, encoder: e)), a20 = acc(predict(v, typo20, normalise: normalise, encoder: e))
            var attack = "—"
            var rate: Double? = nil
            if attackSentences > 0 {
                let r = CharacterAttack.run(sentences: sample.map { (texts[$0], y[$0]) }, maxCandidates: attackCandidates, seed: seed) { xs in
                    let input = normalise ? xs.map { normaliser.normalise($0).text } : xs
                    return v.head.logits(embed(input, e ?? enc), count: input.count)
                }
                attack = String(format: "%5.1f%% of %d", 100 * r.successRate, r.attacked)
                rate = r.successRate
            }
            var f = ""
            if let flops { f = String(format: "  %9.0f", flops / 1e9) + (fullFlops.map { String(format: "  %5.1f%%", 100 * flops / $0) } ?? "") }
            print(String(format: "%@  %6.2f%%  %6.2f%% (%+5.2f)   %6.2f%% (%+5.2f)   %@  %7.1f%@", name.padding(toLength: 31, withPad: " ", startingAt: 0) as NSString,
                         100 * a, 100 * a10, 100 * (a10 - a), 100 * a20, 100 * (a20 - a), attack.padding(toLength: 15, withPad: " ", startingAt: 0) as NSString, seconds, f))
            return Measured(clean: a, typo10: a10, typo20: a20, attack: rate)
        }
        row("parent", parent, normalise: false, seconds: parentSeconds)
        let base = row("parent + normaliser", parent, normalise: true, seconds: parentSeconds + normaliserSeconds)

        // The head refitted on all of train at the chosen λ (model/fit's refit).
        t0 = Date()
        let allX = trainX + valX, allY = trainY + valY
        let std = LogisticRegression.standardization(allX, count: allY.count, dimension: H)
        let refit = LogisticRegression.fit(allX, labels: allY, classes: labels.count, dimension: H, lambda: report.lambda, standardization: std, start: parent.head)
        let refitVersion = ModelVersion(id: 2, labels: labels, head: refit.head, temperature: parent.temperature, outOfScope: parent.outOfScope, oosThreshold: parent.oosThreshold)
        let refitSeconds = parentSeconds + Date().timeIntervalSince(t0)
        row("parent refitted on all train", refitVersion, normalise: false, seconds: refitSeconds)
        row("refitted + normaliser", refitVersion, normalise: true, seconds: refitSeconds + normaliserSeconds)

        // Fine-tunes from the parent with its normaliser, on 90% of train (every intent a
        // target), early stopping and gate on the other 10%, as robustd-bench finetune --all-data.
        let parentN = parent.withNormaliser(normaliser)
        var results: [(name: String, m: Measured, flops: Double)] = []
        let specs = rows.split(separator: ",").map { $0.split(separator: ":").map(String.init) }
        if !specs.isEmpty {
            print("")
            print("fine-tunes (with the normaliser; epochs \(epochs); training FLOPs and their share of the full fine-tune's measured in the same run):")
            print("row                              clean    @10% typos (Δ)     @20% typos (Δ)     attack success   seconds  train GFLOP  share")
        }
        var fullFlops: Double? = nil
        // The full fine-tune first when asked, so the others can quote their share of its FLOPs.
        let ordered = specs.filter { $0.first == "full" } + specs.filter { $0.first != "full" }
        for spec in ordered {
            guard spec.count == 2, ["augment", "consistency", "adversarial", "embedding", "all"].contains(spec[1]) else {
                throw ValidationError("row '\(spec.joined(separator: ":"))': method:objective")
            }
            let (m, objective) = (spec[0], spec[1])
            var plan = LocalFineTune.Plan()
            plan.threads = 2
            plan.settings = try allDataSettings(m, layers: 2, epochs: epochs, encoderLayers: enc.config.layers)
            var opts = DataSelection.Options()
            opts.seed = seed
            opts.typoRate = 0.1
            opts.replayRatio = 0
            if objective != "augment" {
                opts.typoCopies = noisyCopies
                plan.settings.consistency = consistency
            }
            if objective == "adversarial" || objective == "all" { plan.adversarialExamples = adversarialExamples }
            if objective == "embedding" || objective == "all" { plan.settings.adversarialEpsilon = epsilon }
            let sel = DataSelection.select(labels: labels, targets: Set(labels), train: train, heldOut: validation, failures: [], options: opts)
            plan.train = sel.train; plan.earlyStopping = sel.earlyStopping
            plan.targetHeldOut = sel.targetHeldOut; plan.globalHeldOut = sel.globalHeldOut
            plan.outOfScopeTrain = []
            let t = Date()
            let cand = try LocalFineTune.run(encoder: enc, parent: parentN, plan: plan, cost: { _, _ in 1 }, fullDataCount: train.count,
                                             events: { e in
                                                 if case .step(let s, let n, _, let loss, _) = e, s % 400 == 0 {
                                                     FileHandle.standardError.write(Data("  \(m) \(objective) step \(s)/\(n) loss \(String(format: "%.4f", loss))\n".utf8))
                                                 }
                                             })
            let seconds = Date().timeIntervalSince(t)
            let e2 = enc.replacingLayers(cand.layers.mapValues(\.serving))
            let r = cand.report
            FileHandle.standardError.write(Data("  \(m) \(objective): \(r.steps) steps (\(r.stoppedBy), best step \(r.bestStep ?? -1)), adversarial \(r.adversarialExamples ?? 0) for \(String(format: "%.0f", (r.adversarialFlops ?? 0) / 1e9)) GFLOP\n".utf8))
            if m == "full" { fullFlops = r.trainingFlops }
            let measured = row("\(m) \(objective)", cand.version, normalise: true, seconds: seconds, encoder: e2, flops: r.trainingFlops, fullFlops: fullFlops)
            results.append(("\(m) \(objective)", measured, r.trainingFlops))
        }
        if let full = results.first(where: { $0.name.hasPrefix("full ") }) {
            let gain10 = full.m.typo10 - base.typo10, gain20 = full.m.typo20 - base.typo20
            print("")
            print(String(format: "robustness gain of %@ over parent + normaliser: %+.2f points at 10%% typos, %+.2f at 20%%", full.name as NSString, 100 * gain10, 100 * gain20))
            for r in results where !r.name.hasPrefix("full ") {
                let g10 = r.m.typo10 - base.typo10, g20 = r.m.typo20 - base.typo20
                print(String(format: "  %@: %+.2f / %+.2f points (%.0f%% / %.0f%% of the full fine-tune's gain) at %.1f%% of its training FLOPs",
                             r.name.padding(toLength: 24, withPad: " ", startingAt: 0) as NSString, 100 * g10, 100 * g20,
                             gain10 > 0 ? 100 * g10 / gain10 : .nan, gain20 > 0 ? 100 * g20 / gain20 : .nan, 100 * r.flops / full.flops))
            }
        }

        if showCorrections {
            print("")
            for t in typo10.prefix(400) {
                let n = normaliser.normalise(t)
                if !n.corrections.isEmpty { print("  \(t)\n→ \(n.text)   \(n.corrections.map { "\($0.from)→\($0.to) (\(String(format: "%.1f", $0.cost)))" }.joined(separator: ", "))") }
            }
        }
        print("")
        print("typos: the benchmark's own generator (swap, drop, double a letter in 10% / 20% of the words of 3+ letters), not the fine-tune's; attack: every one-character edit (swap, drop, double, neighbouring key) of one word, up to \(attackCandidates) per sentence, success if any flips a correct prediction")
    }
}
