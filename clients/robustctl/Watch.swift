import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// A live terminal view of a metrics subscription.
struct WatchMetrics: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch", abstract: "A live terminal view of the daemon's metrics (Ctrl-C to stop).")

    @Option(help: "Milliseconds between updates.")
    var intervalMs: Int = 1000

    @Option(help: "Stop after this many updates (0: never).")
    var count: Int = 0

    @Flag(help: "Append lines instead of redrawing the screen (for logs and pipes).")
    var plain = false

    @OptionGroup var connection: Connection

    static let spark = Array("▁▂▃▄▅▆▇█")

    static func sparkline(_ xs: [Double]) -> String {
        guard let hi = xs.max(), let lo = xs.min() else { return "" }
        return String(xs.map { hi > lo ? spark[min(7, Int((($0 - lo) / (hi - lo)) * 7.99))] : spark[0] })
    }

    func run() throws {
        let c: RPCClient
        do { c = try RPCClient(path: connection.socketPath) } catch { fail("\(error)", code: 2) }
        guard case .success(let sub) = try c.call(MetricsSubscribe.self, .init(intervalMs: intervalMs)) else {
            fail("the daemon refused the subscription", code: 1)
        }
        var rate: [Double] = [], cost: [Double] = [], p99: [Double] = []
        var seen = 0
        let redraw = !plain && isatty(1) != 0
        while count == 0 || seen < count {
            let m = try c.receive(timeout: Double(intervalMs) / 1000 * 5 + 5)
            guard let p = RPCClient.notification(MetricsUpdate.self, in: m), p.subscription == sub.subscription else { continue }
            seen += 1
            func n(_ k: String) -> Double { p.values[k] ?? 0 }
            rate.append(n("requestRate.1m")); cost.append(n("expectedCostPer1000.1m")); p99.append(n("latencyP99Ms.1m"))
            if rate.count > 60 { rate.removeFirst(); cost.removeFirst(); p99.removeFirst() }
            var s = ""
            if redraw { s += "\u{1B}[H\u{1B}[2J" }
            let at = Date(timeIntervalSince1970: p.at)
            if redraw || seen == 1 { s += "robustd live metrics, every \(intervalMs) ms (Ctrl-C to stop)\n" }
            if redraw {
                s += String(format: "%@  active version %@  connections %d  fine-tune %@\n\n", "\(at)" as NSString,
                            (n("version.active") > 0 ? "\(Int(n("version.active")))" : "none") as NSString,
                            Int(n("connections.open")), (n("finetune.running") > 0 ? "running" : "idle") as NSString)
                s += "                       1 min      1 h       24 h\n"
                for (label, key, f) in [("requests/s", "requestRate", "%9.2f"), ("cost per 1,000", "expectedCostPer1000", "%9.2f"),
                                        ("flagged", "flaggedRate", "%9.3f"), ("out of scope", "outOfScopeRate", "%9.3f"),
                                        ("failure reports", "failures", "%9.0f"), ("p50 latency ms", "latencyP50Ms", "%9.2f"),
                                        ("p99 latency ms", "latencyP99Ms", "%9.2f"), ("batch p99 ms", "batchLatencyP99Ms", "%9.2f"),
                                        ("batch size", "meanBatchSize", "%9.1f")] {
                    s += label.padding(toLength: 18, withPad: " ", startingAt: 0)
                    for w in ["1m", "1h", "24h"] { s += String(format: f, n("\(key).\(w)")) + " " }
                    s += "\n"
                }
                s += "\nrequests/s     \(Self.sparkline(rate))\ncost/1,000     \(Self.sparkline(cost))\np99 ms         \(Self.sparkline(p99))\n"
                s += String(format: "queues: compute %d pending, %d texts waiting for a batch\n", Int(n("queue.computePending")), Int(n("queue.embedPending")))
            } else {
                s += String(format: "%.0f  requests/s %.2f  cost/1000 %.2f  flagged %.3f  p99 %.2f ms  failures(1h) %.0f  version %d\n",
                            p.at, n("requestRate.1m"), n("expectedCostPer1000.1m"), n("flaggedRate.1m"), n("latencyP99Ms.1m"),
                            n("failures.1h"), Int(n("version.active")))
            }
            FileHandle.standardOutput.write(Data(s.utf8))
        }
    }
}
