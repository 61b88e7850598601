import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor

/// The first version's head on the frozen encoder (Banking77 test): how λ is chosen and
/// whether the head is refitted on all the training data, each rule measured on the same
/// embeddings. Every choice is made on training data only (a held-out slice or k folds);
/// test is read once per rule, for the table.
struct HeadBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "head",
        abstract: "model/fit's head on the frozen encoder: λ by a held-out slice or by k-fold cross-validation, with and without a refit on all training data; Banking77 test accuracy of each rule.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Folds of the cross-validated rows.")
    var folds: Int = 5

    @Option(help: "A file to keep the embeddings in between runs (written when missing).")
    var cache: String?

    func run() throws {
        let train = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let labels = Array(Set(train.map(\.1))).sorted()
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        let (trainX, testX, D) = try embeddings(train.map(\.0), test.map(\.0))
        let trainY = train.map { index[$0.1]! }, testY = test.map { index[$0.1]! }
        let C = labels.count
        func rows(_ idx: [Int]) -> (x: [Float], y: [Int]) { (idx.flatMap { trainX[($0 * D)..<(($0 + 1) * D)] }, idx.map { trainY[$0] }) }
        func testAccuracy(_ head: LinearHead) -> Double { HeadFitting.accuracy(head, testX, testY) }

        print(String(format: "Banking77: %d train, %d test, %d intents; D = %d", train.count, test.count, C, D))
        print("rule                                                   λ        test acc   seconds")
        func row(_ name: String, _ lambda: Double, _ acc: Double, _ t0: Date) {
            print(name.padding(toLength: 54, withPad: " ", startingAt: 0) + String(format: " %-8.3g %6.2f%%   %6.1f", lambda, 100 * acc, Date().timeIntervalSince(t0)))
        }

        // 1. model/fit's four rules, on the default grid and on a wider one: λ on a stratified
        //    10% slice (the default); λ by cross-validation over the other 90% (folds: k);
        //    the slice's λ refitted on all (refit: true, folds: 1); λ by cross-validation over
        //    all, refitted (refit: true).
        let (rest, held) = stratifiedSplit(Array(train.indices), label: { train[$0].1 }, fraction: 0.1, seed: 42)
        let tr = rows(rest), va = rows(held)
        let wide: [Double] = [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4]
        for (grid, lambdas) in [("default grid", HeadFitting.defaultLambdas), ("wide grid", wide)] {
            for (rule, refit, k) in [("held-out 10%", false, 1), ("\(folds)-fold CV λ over 90%", false, folds),
                                     ("held-out 10%'s λ, refit", true, 1), ("\(folds)-fold CV λ, refit", true, folds)] {
                let t0 = Date()
                let (v, r) = HeadFitting.fit(id: 1, labels: labels, dimension: D, train: tr, validation: va,
                                             lambdas: lambdas, refit: refit, folds: k)
                row("model/fit: \(rule), \(grid)", r.lambda, testAccuracy(v.head), t0)
            }
        }
        // 2. The cross-validation alone on the wide grid (its accuracy per λ), then one fit on
        //    all the training data.
        let t0 = Date()
        let cv = HeadFitting.crossValidatedLambda(trainX, labels: trainY, classes: C, dimension: D, lambdas: wide, folds: folds, seed: 42)
        print("  cross-validation (\(folds) folds): " + zip(wide, cv.accuracy).map { String(format: "λ %.0e %.2f%%", $0, 100 * $1) }.joined(separator: ", "))
        let all = LogisticRegression.fit(trainX, labels: trainY, classes: C, dimension: D, lambda: cv.lambda)
        row("\(folds)-fold CV, wide grid, fit on all train", cv.lambda, testAccuracy(all.head), t0)
        // For reference only (chosen on test, not a rule): every λ fitted on all train.
        for lambda in wide {
            let f = LogisticRegression.fit(trainX, labels: trainY, classes: C, dimension: D, lambda: lambda)
            print(String(format: "  (reference, not a rule) all train at λ %.0e: test %.2f%%", lambda, 100 * testAccuracy(f.head)))
        }
    }

    /// Train and test vectors from the cache when it holds them, else from the encoder.
    func embeddings(_ train: [String], _ test: [String]) throws -> ([Float], [Float], Int) {
        if let cache, let data = FileManager.default.contents(atPath: cache) {
            let floats = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let D = Int(floats[0])
            if floats.count == 1 + (train.count + test.count) * D {
                return (Array(floats[1..<(1 + train.count * D)]), Array(floats[(1 + train.count * D)...]), D)
            }
        }
        let enc = try SentenceEncoder.load(folder: paths.model)
        let engine = BatchEngine(encoder: enc)
        let t0 = Date()
        let trainX = WeakenedIntents.embed(train, engine: engine, with: enc)
        let testX = WeakenedIntents.embed(test, engine: engine, with: enc)
        print(String(format: "embedded %d + %d sentences in %.0f s", train.count, test.count, Date().timeIntervalSince(t0)))
        if let cache {
            let floats = [Float(enc.hiddenSize)] + trainX + testX
            try floats.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: cache))
        }
        return (trainX, testX, enc.hiddenSize)
    }
}
