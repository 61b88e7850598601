import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// Scoring latency through the real daemon, idle and while a fine-tune job runs.
struct ServingDuringFineTuneBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune-serving",
        abstract: "Single-text score latency (one client, back to back) idle and during a fine-tune job, through the real daemon; target p99 during ≤ 2× idle.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seconds of each measurement.")
    var seconds: Double = 20

    @Option(help: "Fine-tune method of the job.")
    var method: String = "top-layers"

    func run() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let train = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let d = try ModelDaemon(binary: binary, model: paths.model, tag: "serving")
        defer { d.stop() }
        try RiskBench().importRecords(d, "train", train)
        guard let fineTuneMethod = FineTuneMethod(rawValue: method) else { throw ValidationError("--method must be head, top-layers or lora") }
        _ = try d.call(ModelFit.self, .init(dataset: "train"))
        // Traffic and feedback so that risk/regions has something to rank.
        var errors: [(String, String)] = []
        for start in stride(from: 0, to: 1000, by: 50) {
            let chunk = Array(test[start..<(start + 50)])
            let r = try d.call(Score.self, .init(inputs: chunk.enumerated().map { Score.Input(id: "s\(start + $0)", text: $1.0) }))
            for (j, s) in r.results.enumerated() where s.label != chunk[j].1 { errors.append(("s\(start + j)", chunk[j].1)) }
        }
        for e in errors { _ = try d.call(FeedbackReport.self, .init(inputId: e.0, kind: .correction, correctLabel: e.1)) }
        print("robustd-bench finetune-serving: model \(paths.model); \(errors.count) failures reported")

        var counter = 0
        func measure(_ label: String) throws -> [UInt64] {
            var lat: [UInt64] = []
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                // A text not seen before, so the score cache never answers.
                let (text, _) = test[counter % test.count]
                counter += 1
                let t0 = nowNs()
                _ = try d.call(Score.self, .init(inputs: [.init(text: text + " \(counter)")]))
                lat.append(nowNs() - t0)
            }
            return lat.sorted()
        }
        let idle = try measure("idle")
        let job = try d.call(FineTuneStart.self, .init(regions: .all, method: fineTuneMethod, epochs: 50, maxSeconds: seconds + 60))
        // Wait for the training phase (after the frozen layers are cached) and measure during it.
        var phase = ""
        while phase != "training" {
            let s = try d.call(FineTuneStatus.self, .init(job: job.id))
            phase = s.progress.phase
            if s.state != .running && s.state != .queued { throw ClientError("the job ended early: \(s.state.rawValue) \(s.error ?? "")") }
            usleep(100_000)
        }
        let during = try measure("training")
        let status = try d.call(FineTuneStatus.self, .init(job: job.id))
        _ = try d.call(FineTuneCancel.self, .init(job: job.id))
        func row(_ name: String, _ l: [UInt64]) {
            print(String(format: "%-22@ %6d requests  p50 %6.2f ms  p99 %6.2f ms", name as NSString, l.count, percentile(l, 50) / 1000, percentile(l, 99) / 1000))
        }
        print("one client, single-text score requests back to back, \(Int(seconds)) s each")
        row("idle", idle)
        row("during a \(method) job", during)
        let ratio = percentile(during, 99) / percentile(idle, 99)
        print(String(format: "p99 during / idle = %.2f× (target ≤ 2×: %@); p50 ratio %.2f×; the job reached step %d in that time", ratio,
                     ratio <= 2 ? "met" : "NOT met", percentile(during, 50) / percentile(idle, 50), status.progress.step ?? 0))
    }
}
