import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// Score latency with and without 100 metric subscribers at 100 ms.
struct SubscribersBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics-subscribers",
        abstract: "Single-text score latency alone and with N metric subscribers (every 100 ms, all metrics), through the real daemon; target: p50 +5% at most.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Subscribers.")
    var subscribers: Int = 100

    @Option(help: "Seconds of each measurement.")
    var seconds: Double = 15

    final class Reader: @unchecked Sendable {
        let fd: Int32
        var bytes = 0
        init(fd: Int32) { self.fd = fd }
    }

    func run() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let train = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let d = try ModelDaemon(binary: binary, model: paths.model, tag: "subs")
        defer { d.stop() }
        try RiskBench().importRecords(d, "train", train)
        _ = try d.call(ModelFit.self, .init(dataset: "train"))
        var counter = 0
        func measure() throws -> [UInt64] {
            var lat: [UInt64] = []
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                let text = test[counter % test.count].0 + " \(counter)"
                counter += 1
                let t0 = nowNs()
                _ = try d.call(Score.self, .init(inputs: [.init(text: text)]))
                lat.append(nowNs() - t0)
            }
            return lat.sorted()
        }
        let alone = try measure()
        // Subscribers that read (and drop) every update, each on its own thread.
        var clients: [RPCClient] = []
        var readers: [Reader] = []
        for _ in 0..<subscribers {
            let c = try RPCClient(path: d.dir + "/robustd.sock")
            guard case .success = try c.call(MetricsSubscribe.self, .init(intervalMs: 100)) else { throw ClientError("subscribe failed") }
            clients.append(c)
            let r = Reader(fd: c.fd)
            readers.append(r)
            Thread.detachNewThread {
                var buf = [UInt8](repeating: 0, count: 65536)
                while true {
                    let n = read(r.fd, &buf, buf.count)
                    if n <= 0 { return }
                    r.bytes += n
                }
            }
        }
        usleep(500_000)
        let before = readers.reduce(0) { $0 + $1.bytes }
        let with = try measure()
        let received = readers.reduce(0) { $0 + $1.bytes } - before
        let status = try d.call(MetricsGet.self, .init(metrics: ["subscriptions"]))
        func row(_ name: String, _ l: [UInt64]) {
            print(String(format: "%@ %6d requests  p50 %6.2f ms  p99 %6.2f ms", name.padding(toLength: 30, withPad: " ", startingAt: 0) as NSString,
                         l.count, percentile(l, 50) / 1000, percentile(l, 99) / 1000))
        }
        print("robustd-bench metrics-subscribers: one client, single-text score requests back to back, \(Int(seconds)) s each")
        row("alone", alone)
        row("with \(subscribers) subscribers", with)
        let ratio = percentile(with, 50) / percentile(alone, 50)
        print(String(format: "p50 with / alone = %.3f (%+.1f%%; target ≤ +5%%: %@); p99 ratio %.2f; the subscribers (%d live) received %.1f MB of updates, %.0f updates/s",
                     ratio, 100 * (ratio - 1), ratio <= 1.05 ? "met" : "NOT met", percentile(with, 99) / percentile(alone, 99),
                     Int(status.values["subscriptions"] ?? 0), Double(received) / 1e6, Double(subscribers) * 10))
        withExtendedLifetime(clients) {}
    }
}
