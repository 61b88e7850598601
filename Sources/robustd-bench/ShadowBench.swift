import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// What shadowing costs the traffic: score latency with no rollout and with a LoRA candidate in
/// shadow (it scores every request after the reply, at background priority), rounds
/// alternating, through the real daemon.
struct ShadowBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadow",
        abstract: "Score latency with and without a candidate in shadow, rounds alternating, through the real daemon; target p99 with shadow ≤ 1.3× without.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seconds of each round.")
    var seconds: Double = 15

    @Option(help: "Rounds of each kind (alternating: none, shadow, none, shadow, …).")
    var rounds: Int = 3

    @Option(help: "Clients, each sending single-text requests with an exponential pause between them.")
    var clients: Int = 4

    @Option(help: "Mean pause of each client between requests (ms); 0: back to back.")
    var thinkMs: Double = 50

    func run() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let train = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let d = try ModelDaemon(binary: binary, model: paths.model, tag: "shadow")
        defer { d.stop() }
        try RiskBench().importRecords(d, "train", train)
        _ = try d.call(ModelFit.self, .init(dataset: "train"))
        // A LoRA candidate on the top two layers: the shadow runs the whole encoder again with them.
        let job = try d.call(FineTuneStart.self, .init(regions: .all, method: .lora, layers: 2, epochs: 1, maxSeconds: 30, autoPromote: false))
        var finished = job
        while finished.state != .succeeded {
            finished = try d.call(FineTuneStatus.self, .init(job: job.id))
            if [.failed, .cancelled, .interrupted].contains(finished.state) {
                throw ClientError("the candidate's job ended \(finished.state.rawValue): \(finished.error ?? "")")
            }
            usleep(200_000)
        }
        guard let candidate = finished.version else { throw ClientError("the candidate's job wrote no version") }
        let socket = d.dir + "/robustd.sock"
        print("robustd-bench shadow: model \(paths.model); candidate version \(candidate) (lora, 2 layers); \(clients) clients, single-text requests, mean pause \(thinkMs) ms; \(Int(seconds)) s rounds")

        /// What the client threads share, behind a lock.
        final class Shared: @unchecked Sendable {
            let lock = NSLock()
            var counter = 0
            var all: [UInt64] = []
            var failure: Error?
        }
        let shared = Shared()
        let texts = test.map(\.0)
        let (clients, thinkMs) = (self.clients, self.thinkMs)
        func measure() throws -> [UInt64] {
            shared.all = []
            let end = Date().addingTimeInterval(seconds)
            let group = DispatchGroup()
            for k in 0..<clients {
                group.enter()
                Thread {
                    defer { group.leave() }
                    do {
                        let c = try RPCClient(path: socket)
                        var rng = SystemRandomNumberGenerator()
                        var mine: [UInt64] = []
                        while Date() < end {
                            shared.lock.lock(); shared.counter += 1; let n = shared.counter; shared.lock.unlock()
                            // A text not seen before, so the score cache never answers.
                            let text = texts[n % texts.count] + " \(n)"
                            let t0 = nowNs()
                            _ = try c.call(Score.self, .init(inputs: [.init(text: text)], routingKey: "c\(k)")).get()
                            mine.append(nowNs() - t0)
                            if thinkMs > 0 {
                                let u = Double(rng.next() >> 11) / Double(1 << 53)
                                usleep(UInt32(min(2_000_000, -log(max(1e-9, u)) * thinkMs * 1000)))
                            }
                        }
                        shared.lock.lock(); shared.all += mine; shared.lock.unlock()
                    } catch { shared.lock.lock(); shared.failure = error; shared.lock.unlock() }
                }.start()
            }
            group.wait()
            if let failure = shared.failure { throw failure }
            return shared.all.sorted()
        }
        var none: [[UInt64]] = [], shadow: [[UInt64]] = []
        for round in 0..<rounds {
            none.append(try measure())
            let r = try d.call(RolloutStart.self, .init(candidate: candidate,
                                                        settings: ["shadow": ["maxRequests": 100_000_000, "maxLabels": 100_000_000, "minLabels": 100_000_000]],
                                                        force: true))
            shadow.append(try measure())
            let st = try d.call(RolloutStatus.self, .init())
            let m = try d.call(MetricsGet.self, .init(metrics: ["rollout"]))
            _ = try d.call(RolloutAbort.self, .init(reason: "benchmark round \(round + 1) over"))
            FileHandle.standardError.write(Data("round \(round + 1): rollout \(r.id) shadowed \(st.evidence.shadowRequests) inputs, dropped \(m.values["rollout.shadowDropped"] ?? 0)\n".utf8))
        }
        print("round  kind     requests   p50 ms   p99 ms   p99 ratio (shadow / none)")
        var ratios: [Double] = []
        for i in 0..<rounds {
            let a = none[i], b = shadow[i]
            let ratio = percentile(b, 99) / percentile(a, 99)
            ratios.append(ratio)
            print(String(format: "%5d  none     %8d  %7.2f  %7.2f", i + 1, a.count, percentile(a, 50) / 1000, percentile(a, 99) / 1000))
            print(String(format: "%5d  shadow   %8d  %7.2f  %7.2f   %.2f×", i + 1, b.count, percentile(b, 50) / 1000, percentile(b, 99) / 1000, ratio))
        }
        let median = ratios.sorted()[ratios.count / 2]
        print(String(format: "median p99 ratio %.2f× (target ≤ 1.3×: %@)", median, median <= 1.3 ? "met" : "NOT met"))
    }
}
