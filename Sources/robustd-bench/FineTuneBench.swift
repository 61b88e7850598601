import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor
import Training

struct FineTuneBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune-core",
        abstract: "The training core on Banking77, in process (not yet the daemon's jobs): head only vs the top layers + head, test accuracy and seconds.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Trainable top layers.")
    var layers: Int = 2

    @Option(help: "Epochs.")
    var epochs: Int = 2

    @Option(help: "Learning rate of the layers.")
    var lr: Float = 1e-4

    @Option(help: "Learning rate of the head.")
    var headLr: Float = 1e-3

    func run() throws {
        let enc = try SentenceEncoder.load(folder: paths.model)
        let train = parseCSV(try String(contentsOfFile: paths.data + "/train.csv", encoding: .utf8)).dropFirst().filter { $0.count >= 2 }
        let test = parseCSV(try String(contentsOfFile: paths.data + "/test.csv", encoding: .utf8)).dropFirst().filter { $0.count >= 2 }
        let labels = Array(Set(train.map { $0[1] })).sorted()
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        let trainY = train.map { index[$0[1]]! }, testY = test.map { index[$0[1]]! }
        let engine = BatchEngine(encoder: enc)
        let H = enc.hiddenSize, C = labels.count
        var t = Date()
        func embed(_ texts: [String]) -> [Float] {
            var out: [Float] = []
            let buf = Tensor(shape: [64, H])
            var i = 0
            while i < texts.count {
                let ids = enc.encode(Array(texts[i..<min(i + 64, texts.count)])).map(\.ids)
                engine.embed(ids, into: buf)
                out += Array(UnsafeBufferPointer(start: buf.data, count: ids.count * H))
                i += 64
            }
            return out
        }
        let trainX = embed(train.map { $0[0] }), testX = embed(test.map { $0[0] })
        let fit = LogisticRegression.fit(trainX, labels: trainY, classes: C, dimension: H, lambda: 0.01)
        let headSeconds = Date().timeIntervalSince(t)
        let headAcc = HeadFitting.accuracy(fit.head, testX, testY)
        print(String(format: "head only (logistic regression, λ 0.01, all of train): test accuracy %.2f%%, %.0f s (embedding included)", 100 * headAcc, headSeconds))

        var settings = FineTuner.Settings()
        settings.method = .topLayers
        settings.layers = layers
        settings.epochs = epochs
        settings.learningRate = lr
        settings.headLearningRate = headLr
        let tuner = FineTuner(encoder: enc, settings: settings)
        t = Date()
        let cachedTrain = tuner.cacheFrozen(train.map { $0[0] }), cachedTest = tuner.cacheFrozen(test.map { $0[0] })
        let cacheSeconds = Date().timeIntervalSince(t)
        let stack = tuner.makeStack(headWeight: fit.head.weight, headBias: fit.head.bias, mean: fit.head.mean, scale: fit.head.scale)
        let before = tuner.accuracy(stack, cached: cachedTest, labels: testY)
        t = Date()
        var last: Float = 0
        let steps = tuner.train(stack, cached: cachedTrain, labels: trainY, progress: { p in
            last = p.loss
            if p.step % 100 == 0 { FileHandle.standardError.write(Data("  step \(p.step)/\(p.steps) loss \(String(format: "%.4f", p.loss))\n".utf8)) }
        })
        .steps
        let trainSeconds = Date().timeIntervalSince(t)
        let after = tuner.accuracy(stack, cached: cachedTest, labels: testY)
        print(String(format: "top %d layers + head, %d epochs, lr %.0e, head lr \(headLr) (from the fitted head): test accuracy %.2f%% → %.2f%%; frozen layers cached in %.0f s, %d steps in %.0f s, last loss %.4f",
                     layers, epochs, Double(lr), 100 * before, 100 * after, cacheSeconds, steps, trainSeconds, last))
    }
}
