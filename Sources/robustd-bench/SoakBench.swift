import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Scoring

/// Load and soak (docs/reliability.md): many concurrent clients mixing scoring, feedback,
/// metrics (requests and subscriptions), status and LSP sessions against the release daemon
/// with the reference model; errors, latency per method, and the daemon's RSS over the run.
struct SoakBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "Concurrent clients mixing score, feedback, metrics subscriptions and requests, status and LSP sessions: errors (target 0), p50/p99 per method, RSS growth after warm-up (target ≤ 10%).")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Concurrent clients, each on its own connection.")
    var clients: Int = 1000

    @Option(help: "Requests in all.")
    var requests: Int = 1_000_000

    @Option(help: "Training examples per intent for the version that serves.")
    var perIntent: Int = 30

    @Option(help: "Share of the requests counted as warm-up (RSS growth is measured from its end).")
    var warmup: Double = 0.1

    func run() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let train = try paths.rows("train.csv", perIntent: perIntent)
        let test = try paths.rows("test.csv")
        let d = try ModelDaemon(binary: binary, model: paths.model, tag: "soak", extra: ["--max-in-flight", "64"])
        defer { d.stop() }
        try RiskBench().importRecords(d, "train", train)
        _ = try d.call(ModelFit.self, .init(dataset: "train", lambdas: [0.01]))
        let intents = Array(Set(train.map(\.1))).sorted()
        print("robustd-bench soak: \(clients) clients, \(requests) requests; model \(paths.model); version on \(train.count) examples; traffic: Banking77 test (\(test.count) texts); \(ProcessInfo.processInfo.activeProcessorCount) cores")

        let shared = SoakShared(total: requests)
        let socket = d.socket
        let texts = test.map(\.0)
        let started = Date()
        let group = DispatchGroup()
        for n in 0..<clients {
            group.enter()
            let t = Thread {
                defer { group.leave() }
                do { try SoakClient(number: n, socket: socket, texts: texts, intents: intents, shared: shared).run() } catch {
                    shared.error("client \(n): \(error)")
                }
            }
            t.stackSize = 256 << 10
            t.start()
        }
        // RSS every second; the warm-up's end is when its share of the requests is done.
        var samples: [(Int, Int)] = []
        var warmRSS: Int?
        while group.wait(timeout: .now() + 1) == .timedOut {
            let done = shared.done
            let rss = rssKiB(d.process.processIdentifier)
            samples.append((done, rss))
            if warmRSS == nil && Double(done) >= warmup * Double(requests) { warmRSS = rss }
        }
        let seconds = Date().timeIntervalSince(started)
        let finalRSS = rssKiB(d.process.processIdentifier)
        let status = try d.call(DaemonStatus.self)
        print(String(format: "%d requests in %.0f s (%.0f/s); errors %d; notifications received %d", shared.done, seconds, Double(shared.done) / seconds, shared.errors.count, shared.notifications))
        for e in shared.errors.prefix(5) { print("  error: \(e)") }
        print("method                  count     p50 ms    p99 ms")
        for (m, lat) in shared.latencies.sorted(by: { $0.key < $1.key }) {
            let s = lat.sorted()
            print(m.padding(toLength: 22, withPad: " ", startingAt: 0) + String(format: "  %7d  %8.2f  %8.2f", s.count, percentile(s, 50) / 1000, percentile(s, 99) / 1000))
        }
        let peak = samples.map(\.1).max() ?? finalRSS
        let warm = warmRSS ?? finalRSS
        print(String(format: "RSS: %.1f MB after warm-up (%.0f%% of the requests), %.1f MB at the end, peak %.1f MB: growth after warm-up %.1f%%",
                     Double(warm) / 1024, warmup * 100, Double(finalRSS) / 1024, Double(peak) / 1024, 100 * Double(finalRSS - warm) / Double(warm)))
        print("daemon/status after: connections open \(status.connections.open), in flight \(status.requests.inFlight), failed \(status.requests.failed)")
        if !shared.errors.isEmpty { throw ExitCode(1) }
    }
}

func rssKiB(_ pid: Int32) -> Int {
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
    }
    return 0
}

/// What the clients share: the request budget, latencies per method, errors.
final class SoakShared: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int
    private var issued = 0
    private var _done = 0
    private var _latencies: [String: [UInt64]] = [:]
    private var _errors: [String] = []
    private var _notifications = 0
    init(total: Int) { self.total = total }

    /// Takes one request from the budget; false when it is spent.
    func take() -> Bool {
        lock.withLock {
            guard issued < total else { return false }
            issued += 1
            return true
        }
    }
    func record(_ method: String, _ ns: UInt64) { lock.withLock { _latencies[method, default: []].append(ns); _done += 1 } }
    func error(_ e: String) { lock.withLock { _errors.append(e); _done += 1 } }
    func notified() { lock.withLock { _notifications += 1 } }
    var done: Int { lock.withLock { _done } }
    var latencies: [String: [UInt64]] { lock.withLock { _latencies } }
    var errors: [String] { lock.withLock { _errors } }
    var notifications: Int { lock.withLock { _notifications } }
}

/// One client: a kind picked by its number (1 in 10 an editor with an open utterance file,
/// 1 in 20 a dashboard holding a metrics subscription, the rest services), then requests
/// back to back from its budget.
struct SoakClient {
    let number: Int
    let socket: String
    let texts: [String]
    let intents: [String]
    let shared: SoakShared

    func run() throws {
        let c = try RPCClient(path: socket)
        var rng = SeededRandom(seed: UInt64(number) &+ 77)
        c.onNotification = { _, _ in shared.notified() }
        @discardableResult
        func call<M: RPCRequest>(_ method: M.Type, _ params: M.Params) throws -> M.Result? {
            let t0 = nowNs()
            switch try c.call(method, params, timeout: 120) {
            case .success(let v): shared.record(M.name, nowNs() - t0); return v
            case .failure(let e): shared.error("\(M.name): \(e.code) \(e.message)"); return nil
            }
        }
        func text() -> String { texts[Int(rng.next() % UInt64(texts.count))] }
        let editor = number % 10 == 0, dashboard = number % 20 == 5
        let uri = "file:///soak/\(number).utterances"
        var lines = (0..<8).map { _ in text() }
        if editor {
            try c.notify(DidOpenTextDocument.self, .init(textDocument: .init(uri: uri, languageId: "utterances", version: 1, text: lines.joined(separator: "\n"))))
        }
        let subscription = dashboard ? try call(MetricsSubscribe.self, .init(intervalMs: 1000))?.subscription : nil
        var version = 1
        var i = 0
        while shared.take() {
            i += 1
            let r = rng.next() % 100
            if editor && r < 40 {
                if r < 10 {
                    version += 1
                    let line = Int(rng.next() % UInt64(lines.count))
                    lines[line] = text()
                    try c.notify(DidChangeTextDocument.self, .init(textDocument: .init(uri: uri, version: version),
                                                                   contentChanges: [.init(text: lines.joined(separator: "\n"))]))
                    shared.record(DidChangeTextDocument.name, 0)
                } else {
                    try call(Hover.self, .init(textDocument: .init(uri: uri), position: .init(line: Int(rng.next() % 8), character: 2)))
                }
                continue
            }
            switch r {
            case 0..<40: try call(Score.self, .init(inputs: [.init(text: text())]))
            case 40..<45: try call(Score.self, .init(inputs: (0..<8).map { _ in Score.Input(text: text()) }))
            case 45..<48:
                try call(FeedbackReport.self, .init(text: text(), kind: .complaint, correctLabel: intents[Int(rng.next() % UInt64(intents.count))],
                                                    idempotencyKey: "soak-\(number)-\(i)"))
            case 48..<53: try call(RiskFlag.self, .init(inputs: [.init(text: text())]))
            case 53..<70: try call(MetricsGet.self, .init())
            case 70..<80: try call(DaemonStatus.self, EmptyParams())
            default: try call(Ping.self, EmptyParams())
            }
        }
        if let subscription { try call(MetricsUnsubscribe.self, .init(subscription: subscription)) }
        if editor { try c.notify(DidCloseTextDocument.self, .init(textDocument: .init(uri: uri))) }
    }
}
