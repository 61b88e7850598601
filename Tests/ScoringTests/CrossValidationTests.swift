import Foundation
import Testing
@testable import Scoring

@Suite("Cross-validated λ for model/fit's refit")
struct CrossValidationTests {
    @Test("stratified folds hold every item once, every class spread evenly, the same for the same seed")
    func folds() {
        // Three classes of 23, 7 and 2 items: uneven on purpose.
        let items = (0..<23).map { ("a", $0) } + (0..<7).map { ("b", $0) } + (0..<2).map { ("c", $0) }
        let folds = stratifiedFolds(items, label: \.0, folds: 5, seed: 9)
        #expect(folds.count == 5)
        let all = folds.flatMap { $0 }.map { "\($0.0)\($0.1)" }
        #expect(all.count == items.count && Set(all).count == items.count)
        for l in ["a", "b", "c"] {
            let counts = folds.map { $0.filter { $0.0 == l }.count }
            #expect(counts.max()! - counts.min()! <= 1, "class \(l): \(counts)")
        }
        // Fold sizes stay within one of each other, the small classes included.
        let sizes = folds.map(\.count)
        #expect(sizes.max()! - sizes.min()! <= 1, "\(sizes)")
        let again = stratifiedFolds(items, label: \.0, folds: 5, seed: 9)
        #expect(again.map { $0.map(\.1) } == folds.map { $0.map(\.1) })
        let other = stratifiedFolds(items, label: \.0, folds: 5, seed: 10)
        #expect(other.map { $0.map(\.1) } != folds.map { $0.map(\.1) })
    }

    @Test("cross-validation scores every λ on held-out folds and picks the best; a λ that flattens the head loses")
    func lambdaChoice() {
        let data = Blobs(classes: 4, dimension: 8, perClass: 60, spread: 1.5, seed: 3)
        let lambdas = [30.0, 1e-2, 1e-3]
        let cv = HeadFitting.crossValidatedLambda(data.x, labels: data.y, classes: 4, dimension: 8,
                                                  lambdas: lambdas, folds: 4, seed: 1)
        #expect(cv.accuracy.count == 3 && cv.logLoss.count == 3)
        #expect(cv.accuracy.allSatisfy { $0 > 0 && $0 <= 1 })
        // λ = 30 pulls every weight to nearly zero: its log-loss is close to log 4 and above the others'.
        #expect(cv.logLoss[0] > cv.logLoss[1] && cv.logLoss[0] > 1.2)
        #expect(cv.lambda != 30)
        let best = cv.accuracy.indices.max { cv.accuracy[$0] < cv.accuracy[$1] }!
        #expect(cv.accuracy[lambdas.firstIndex(of: cv.lambda)!] == cv.accuracy[best])
    }

    @Test("fewer examples than folds: the empty folds are skipped and the means stay accuracies")
    func emptyFolds() {
        // 4 examples, 5 folds: 4 folds of one example each. A mean over the 4 is a multiple of
        // 1/4; over 5 (the empty one counted) it would be a multiple of 1/5 below 1.
        let data = Blobs(classes: 2, dimension: 4, perClass: 2, spread: 12, seed: 6)
        let cv = HeadFitting.crossValidatedLambda(data.x, labels: data.y, classes: 2, dimension: 4,
                                                  lambdas: [1, 1e-2], folds: 5, seed: 1)
        #expect(cv.accuracy.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(cv.accuracy)")
        for a in cv.accuracy where a > 0 { #expect((a * 4).rounded() == a * 4, "not a mean over the 4 folds: \(cv.accuracy)") }
        #expect(cv.accuracy.contains { $0 > 0 })
        #expect(cv.logLoss.allSatisfy { $0.isFinite && $0 > 0 }, "\(cv.logLoss)")
    }

    @Test("model/fit with refit takes λ from folds over all the data; folds without refit run over train; by default, the validation slice chooses")
    func refitUsesFolds() {
        let train = Blobs(classes: 4, dimension: 8, perClass: 50, spread: 1.5, seed: 4)
        let validation = Blobs(classes: 4, dimension: 8, perClass: 8, spread: 1.5, seed: 5)
        let labels = ["a", "b", "c", "d"]
        let lambdas = [30.0, 1e-1, 1e-2, 1e-3]
        let (_, plain) = HeadFitting.fit(id: 1, labels: labels, dimension: 8, train: (train.x, train.y),
                                         validation: (validation.x, validation.y), lambdas: lambdas)
        #expect(plain.crossValidationFolds == nil && plain.crossValidationAccuracyByLambda == nil)
        let slice = plain.validationAccuracyByLambda
        #expect(plain.lambda == lambdas[slice.indices.max { slice[$0] < slice[$1] || (slice[$0] == slice[$1] && $0 > $1) }!])

        let (refitted, report) = HeadFitting.fit(id: 1, labels: labels, dimension: 8, train: (train.x, train.y),
                                                 validation: (validation.x, validation.y), lambdas: lambdas, refit: true)
        #expect(report.refitted == true && report.refitExamples == 232)
        #expect(report.crossValidationFolds == HeadFitting.defaultFolds)
        let cv = try! #require(report.crossValidationAccuracyByLambda)
        #expect(cv.count == lambdas.count)
        // The same folds computed directly choose the same λ.
        let direct = HeadFitting.crossValidatedLambda(train.x + validation.x, labels: train.y + validation.y, classes: 4,
                                                      dimension: 8, lambdas: lambdas, folds: HeadFitting.defaultFolds, seed: 42)
        #expect(report.lambda == direct.lambda && cv == direct.accuracy)
        #expect(refitted.head.weight.count == 4 * 8)

        // Folds without a refit run over train alone; the head stays fitted on train.
        let (_, trainOnly) = HeadFitting.fit(id: 1, labels: labels, dimension: 8, train: (train.x, train.y),
                                             validation: (validation.x, validation.y), lambdas: lambdas, folds: 4)
        let overTrain = HeadFitting.crossValidatedLambda(train.x, labels: train.y, classes: 4, dimension: 8,
                                                         lambdas: lambdas, folds: 4, seed: 42)
        #expect(trainOnly.refitted == false && trainOnly.crossValidationFolds == 4)
        #expect(trainOnly.lambda == overTrain.lambda && trainOnly.crossValidationAccuracyByLambda == overTrain.accuracy)

        // One fold is no cross-validation: the refit keeps the slice's λ.
        let (_, oneFold) = HeadFitting.fit(id: 1, labels: labels, dimension: 8, train: (train.x, train.y),
                                           validation: (validation.x, validation.y), lambdas: lambdas, refit: true, folds: 1)
        #expect(oneFold.crossValidationFolds == nil && oneFold.lambda == plain.lambda)
    }
}
