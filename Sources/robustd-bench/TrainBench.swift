import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor
import Training

/// Training speed of the local fine-tune's step: forward and backward of the trainable top
/// layers and the head, and the AdamW updates, in examples per second, on Banking77 train
/// sentences (the frozen lower layers' outputs cached first, as a fine-tune does). The same
/// work in PyTorch: Benchmarks/torch-train.py, given the lengths this writes.
struct TrainBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Examples per second of the fine-tune's training step (top layers or LoRA, batch 32), for a side-by-side with PyTorch.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Training examples (spread evenly over train.csv).")
    var examples = 2048

    @Option(help: "Methods, comma-separated: top-layers, lora.")
    var methods = "top-layers,lora"

    @Option(help: "Thread counts, comma-separated (OpenBLAS threads; the daemon's fine-tunes use 1).")
    var threads = "1,2"

    @Option(help: "Write the examples' token counts here (one a line), for Benchmarks/torch-train.py.")
    var lengthsOut: String?

    func run() throws {
        let enc = try SentenceEncoder.load(folder: paths.model)
        // Spread over the file (it is grouped by intent), so that every intent is in.
        let all = try paths.rows("train.csv")
        let rows = (0..<min(examples, all.count)).map { all[$0 * all.count / min(examples, all.count)] }
        let labels = Array(Set(rows.map(\.1))).sorted()
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        let y = rows.map { index[$0.1]! }
        let cpu = CPUInfo.read()
        print("robustd-bench train: \(rows.count) Banking77 train sentences, \(labels.count) intents, batch 32, 1 epoch; \(cpu.model); kernels \(Kernels.active)")
        var rng = SeededRandom(seed: 7)
        let H = enc.hiddenSize, C = labels.count
        let headWeight = (0..<(C * H)).map { _ in Float(Double(rng.next() % 2000) / 1000 - 1) * 0.05 }
        print("method       layers  threads   examples/s   step ms (mean)   cache s")
        for m in methods.split(separator: ",").map(String.init) {
            guard let method = FineTuner.Method(rawValue: m), method != .head else { throw ValidationError("--methods: top-layers or lora") }
            var settings = FineTuner.Settings(method: method)
            settings.epochs = 1
            settings.batchSize = 32
            for t in threads.split(separator: ",").compactMap({ Int($0) }) {
                BLASThreads.count = t
                let tuner = FineTuner(encoder: enc, settings: settings)
                let c0 = Date()
                let cached = tuner.cacheFrozen(rows.map(\.0), threads: t)
                let cacheSeconds = Date().timeIntervalSince(c0)
                if let lengthsOut {
                    try cached.map { "\($0.count / H)" }.joined(separator: "\n").write(toFile: lengthsOut, atomically: true, encoding: .utf8)
                }
                let stack = tuner.makeStack(headWeight: headWeight, headBias: [Float](repeating: 0, count: C),
                                            mean: [Float](repeating: 0, count: H), scale: [Float](repeating: 1, count: H))
                // One short warm-up run, then the timed epoch.
                _ = FineTuner(encoder: enc, settings: settings).train(stack, cached: Array(cached.prefix(64)), labels: Array(y.prefix(64)))
                let t0 = Date()
                let outcome = tuner.train(stack, cached: cached, labels: y)
                let s = Date().timeIntervalSince(t0)
                print(String(format: "%@  %6d  %7d   %10.1f   %14.2f   %7.2f", (m.padding(toLength: 11, withPad: " ", startingAt: 0)) as NSString, enc.config.layers - tuner.firstTrainable, t,
                             Double(rows.count) / s, s / Double(outcome.steps) * 1000, cacheSeconds))
            }
        }
    }
}
