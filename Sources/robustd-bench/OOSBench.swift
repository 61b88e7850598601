import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor
import Training

/// Out-of-scope detection with real unseen intents: Banking77 (Casanueva et al. 2020, CC BY
/// 4.0) with a seeded quarter of the intents held out; a version is fitted on the other
/// three quarters as model/fit fits it (stratified 10% validation), and every candidate score
/// is measured on test: the held-out intents' sentences are the out-of-scope ones. In process,
/// one embedding of the data for every seed (the encoder is frozen).
struct OOSBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oos",
        abstract: "Out-of-scope scores on Banking77 with a quarter of the intents held out, several seeds: AUROC, and retention / recall at a target in-scope retention.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seeds (one held-out quarter of intents each).")
    var seeds: Int = 5

    @Option(help: "Share of in-scope validation inputs the threshold keeps in scope.")
    var retention: Double = 0.95

    @Option(help: "Held-out share of the intents.")
    var heldOut: Double = 0.25

    @Option(help: "Also fine-tune per seed on the known intents (head, lora, top-layers or full; 2 layers for lora and top-layers), refit the version on the fine-tuned encoder as model/fit does, and measure the scores there too.")
    var fineTune: String? = nil

    @Option(help: "Epochs of --fine-tune.")
    var fineTuneEpochs: Int = 2

    /// Each score's figures over the seeds.
    struct Table {
        var aurocs = [[Double]](repeating: [], count: OOSScores.names.count)
        var retained = [[Double]](repeating: [], count: OOSScores.names.count), recall = [[Double]](repeating: [], count: OOSScores.names.count)
        var keptAccuracy = [[Double]](repeating: [], count: OOSScores.names.count)
        var accuracy: [Double] = []
        var seconds: [Double] = []

        func print(_ title: String) {
            func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(max(1, x.count)) }
            func spread(_ x: [Double]) -> String { String(format: "%.3f–%.3f", x.min() ?? .nan, x.max() ?? .nan) }
            Swift.print("")
            Swift.print(title)
            Swift.print(String(format: "in-scope accuracy of the head (all in-scope test sentences): %.2f%%", 100 * mean(accuracy)))
            Swift.print("score                          AUROC (min–max)         in-scope kept   OOS recall   accuracy of the kept")
            for (k, name) in OOSScores.names.enumerated() {
                Swift.print(String(format: "%@  %.4f (%@)   %6.2f%%        %6.2f%%      %6.2f%%", name.padding(toLength: 29, withPad: " ", startingAt: 0) as NSString,
                                   mean(aurocs[k]), spread(aurocs[k]), 100 * mean(retained[k]), 100 * mean(recall[k]), 100 * mean(keptAccuracy[k])))
            }
        }
    }

    func run() throws {
        let enc = try SentenceEncoder.load(folder: paths.model)
        let engine = BatchEngine(encoder: enc)
        let fullTrain = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let allLabels = Array(Set(fullTrain.map(\.1))).sorted()
        let t0 = Date()
        let trainX = WeakenedIntents.embed(fullTrain.map(\.0), engine: engine, with: enc)
        let testX = WeakenedIntents.embed(test.map(\.0), engine: engine, with: enc)
        print(String(format: "embedded %d + %d sentences in %.0f s; %d seeds, %.0f%% of the intents held out, threshold keeping %.0f%% of in-scope validation",
                     fullTrain.count, test.count, Date().timeIntervalSince(t0), seeds, 100 * heldOut, 100 * retention))
        var frozen = Table(), tuned = Table()
        for seed in 1...seeds {
            var rng = SeededRandom(seed: UInt64(seed) &* 7919)
            let unseen = Set(allLabels.shuffled(using: &rng).prefix(Int((Double(allLabels.count) * heldOut).rounded())))
            let labels = allLabels.filter { !unseen.contains($0) }
            let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
            let known = fullTrain.indices.filter { index[fullTrain[$0].1] != nil }
            let (tr, va) = stratifiedSplit(known, label: { fullTrain[$0].1 }, fraction: 0.1, seed: 42)
            let isOOS = test.map { unseen.contains($0.1) }
            let version = measure(trainX: trainX, testX: testX, labels: labels, index: index, fullTrain: fullTrain, test: test, tr: tr, va: va,
                                  isOOS: isOOS, into: &frozen)
            guard let m = fineTune else { continue }
            // The version fine-tuned on the known intents' train split (early stopping on the
            // validation split), then refitted on its own encoder's vectors.
            let t = Date()
            var plan = LocalFineTune.Plan()
            plan.threads = 2
            plan.settings = try allDataSettings(m, layers: 2, epochs: fineTuneEpochs, encoderLayers: enc.config.layers)
            var opts = DataSelection.Options()
            opts.seed = UInt64(seed)
            opts.typoRate = 0
            opts.replayRatio = 0
            let sel = DataSelection.select(labels: labels, targets: Set(labels), train: tr.map { fullTrain[$0] }, heldOut: va.map { fullTrain[$0] },
                                           failures: [], options: opts)
            plan.train = sel.train; plan.earlyStopping = sel.earlyStopping
            plan.targetHeldOut = sel.targetHeldOut; plan.globalHeldOut = sel.globalHeldOut
            plan.outOfScopeTrain = []
            let cand = try LocalFineTune.run(encoder: enc, parent: version, plan: plan, cost: { _, _ in 1 }, fullDataCount: tr.count, events: { _ in })
            let e2 = enc.replacingLayers(cand.layers.mapValues(\.serving))
            let trainX2 = WeakenedIntents.embed(fullTrain.map(\.0), engine: engine, with: e2)
            let testX2 = WeakenedIntents.embed(test.map(\.0), engine: engine, with: e2)
            _ = measure(trainX: trainX2, testX: testX2, labels: labels, index: index, fullTrain: fullTrain, test: test, tr: tr, va: va,
                        isOOS: isOOS, into: &tuned)
            tuned.seconds.append(Date().timeIntervalSince(t))
            FileHandle.standardError.write(Data(String(format: "seed %d: %@ fine-tune %d steps (%@), %.0f s with re-embedding\n", seed, m, cand.report.steps,
                                                       "\(cand.report.stoppedBy)", Date().timeIntervalSince(t)).utf8))
        }
        frozen.print("frozen encoder (model/fit's version):")
        if let m = fineTune {
            tuned.print(String(format: "fine-tuned (%@, %d epochs on the known intents; %.0f s a seed with re-embedding), version refitted on it:",
                               m, fineTuneEpochs, tuned.seconds.reduce(0, +) / Double(max(1, tuned.seconds.count))))
        }
    }

    /// One seed's version fitted as model/fit fits it on `trainX` (rows `tr`, validation `va`),
    /// every score measured on `testX`; returns the version.
    func measure(trainX: [Float], testX: [Float], labels: [String], index: [String: Int], fullTrain: [(String, String)], test: [(String, String)],
                 tr: [Int], va: [Int], isOOS: [Bool], into table: inout Table) -> ModelVersion {
        let D = trainX.count / fullTrain.count
        func rows(_ x: [Float], _ idx: [Int]) -> [Float] { idx.flatMap { x[($0 * D)..<(($0 + 1) * D)] } }
        let (version, _) = HeadFitting.fit(id: 1, labels: labels, dimension: D, train: (rows(trainX, tr), tr.map { index[fullTrain[$0].1]! }),
                                           validation: (rows(trainX, va), va.map { index[fullTrain[$0].1]! }))
        // The background Gaussian for the relative Mahalanobis distance (Ren et al. 2021):
        // one class holding all in-scope training vectors; and neighbour banks of other k.
        let trX = rows(trainX, tr)
        let extra = OOSScores.Extra(background: OutOfScopeModel.fit(trX, labels: [Int](repeating: 0, count: tr.count), classes: 1, dimension: D),
                                    k1: OutOfScopeModel.fit(trX, labels: tr.map { index[fullTrain[$0].1]! }, classes: labels.count, dimension: D, k: 1),
                                    k10: OutOfScopeModel.fit(trX, labels: tr.map { index[fullTrain[$0].1]! }, classes: labels.count, dimension: D, k: 10))
        let val = OOSScores.compute(version, rows(trainX, va), count: va.count, extra: extra)
        let te = OOSScores.compute(version, testX, count: test.count, extra: extra)
        let predicted = te.predicted
        let inScope = test.indices.filter { !isOOS[$0] }, oos = test.indices.filter { isOOS[$0] }
        table.accuracy.append(Double(inScope.filter { labels[predicted[$0]] == test[$0].1 }.count) / Double(inScope.count))
        let combined = OOSScores.standardise(val, te)
        for k in OOSScores.names.indices {
            let s = combined[k]
            table.aurocs[k].append(auroc(positives: oos.map { Float(s.test[$0]) }, negatives: inScope.map { Float(s.test[$0]) }))
            let threshold = thresholdKeeping(recall: retention, inScopeScores: s.validation.map(Float.init))
            let kept = inScope.filter { Float(s.test[$0]) <= threshold }
            table.retained[k].append(Double(kept.count) / Double(inScope.count))
            table.recall[k].append(Double(oos.filter { Float(s.test[$0]) > threshold }.count) / Double(max(1, oos.count)))
            table.keptAccuracy[k].append(Double(kept.filter { labels[predicted[$0]] == test[$0].1 }.count) / Double(max(1, kept.count)))
        }
        return version
    }
}

/// The candidate out-of-scope scores of a version (higher: more likely out of scope).
enum OOSScores {
    static let names = ["nearest-neighbour distance (k 5)", "Mahalanobis distance", "max-softmax (1 − p)", "energy (−T·logsumexp)",
                        "neighbour + max-softmax", "neighbour + energy", "neighbour + Mahalanobis", "all four",
                        "nearest-neighbour (k 1)", "nearest-neighbour (k 10)", "relative Mahalanobis", "neighbour + max-softmax + relative M."]

    struct Extra {
        var background: OutOfScopeModel
        var k1: OutOfScopeModel
        var k10: OutOfScopeModel
    }

    struct Raw {
        var neighbour: [Double], mahalanobis: [Double], msp: [Double], energy: [Double]
        var k1: [Double], k10: [Double], relative: [Double]
        var predicted: [Int]
    }

    static func compute(_ v: ModelVersion, _ x: [Float], count n: Int, extra: Extra) -> Raw {
        let s = v.outOfScope.scores(x, count: n)
        let bg = extra.background.scores(x, count: n).mahalanobis
        let relative = (0..<n).map { Double(s.mahalanobis[$0]) - Double(bg[$0]) }
        let logits = v.head.logits(x, count: n)
        let C = v.labels.count, T = v.temperature
        var msp: [Double] = [], energy: [Double] = [], predicted: [Int] = []
        for i in 0..<n {
            let row = (0..<C).map { Double(logits[i * C + $0]) / T }
            let m = row.max()!
            let lse = m + log(row.reduce(0) { $0 + exp($1 - m) })
            msp.append(1 - exp(m - lse))
            energy.append(-T * lse)
            predicted.append(row.indices.max { row[$0] < row[$1] }!)
        }
        return Raw(neighbour: s.neighbour.map(Double.init), mahalanobis: s.mahalanobis.map(Double.init), msp: msp, energy: energy,
                   k1: extra.k1.scores(x, count: n).neighbour.map(Double.init), k10: extra.k10.scores(x, count: n).neighbour.map(Double.init),
                   relative: relative, predicted: predicted)
    }

    /// Every score of `names`, for validation and test; combinations add the single scores
    /// standardised by their in-scope validation mean and deviation.
    static func standardise(_ val: Raw, _ test: Raw) -> [(validation: [Double], test: [Double])] {
        func z(_ v: [Double], _ t: [Double]) -> ([Double], [Double]) {
            let m = v.reduce(0, +) / Double(v.count)
            let sd = max(1e-12, (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count)).squareRoot())
            return (v.map { ($0 - m) / sd }, t.map { ($0 - m) / sd })
        }
        let nn = z(val.neighbour, test.neighbour), ma = z(val.mahalanobis, test.mahalanobis)
        let ms = z(val.msp, test.msp), en = z(val.energy, test.energy)
        func add(_ parts: [([Double], [Double])]) -> ([Double], [Double]) {
            (parts[0].0.indices.map { i in parts.reduce(0) { $0 + $1.0[i] } }, parts[0].1.indices.map { i in parts.reduce(0) { $0 + $1.1[i] } })
        }
        let rm = z(val.relative, test.relative)
        return [(val.neighbour, test.neighbour), (val.mahalanobis, test.mahalanobis), (val.msp, test.msp), (val.energy, test.energy),
                add([nn, ms]), add([nn, en]), add([nn, ma]), add([nn, ma, ms, en]),
                (val.k1, test.k1), (val.k10, test.k10), (val.relative, test.relative), add([nn, ms, rm])]
    }
}
