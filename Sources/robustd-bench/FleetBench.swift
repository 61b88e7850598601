import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Store

/// `robustd-bench fleet`: the fleet on PostgreSQL against one machine on SQLite, side by side
/// in one run (docs/fleet.md): feedback/report throughput and latency on each store, how fast
/// an activation reaches every replica, and score throughput of one replica against three.
struct FleetBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Replicas on PostgreSQL vs one daemon on SQLite: feedback/report throughput and p99, swap propagation across three replicas, score throughput of one vs three replicas.",
        discussion: "Needs a PostgreSQL server whose role may create databases: scripts/pg-cluster start /tmp/robustd-pg prints a URL for one.")

    @Option(help: "A PostgreSQL URL (a role that may CREATE DATABASE); each scenario gets a fresh database.") var store: String
    @Option(help: "The model folder.") var model = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/robustd/models/all-MiniLM-L6-v2").path
    @Option(help: "Banking77's test.csv (the dataset the versions are fitted on).") var data = "../shared/data/banking77/test.csv"
    @Option(help: "Client threads sending feedback reports.") var clients = 4
    @Option(help: "Reports per client thread.") var reports = 500
    @Option(help: "Activations timed across the three replicas.") var swaps = 12
    @Option(help: "Seconds of score traffic per replica setting.") var scoreSeconds = 8.0

    func run() throws {
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let admin = try PostgresConnection(url: store)
        print("fleet benchmark: PostgreSQL \(admin.serverVersion / 10000).\(admin.serverVersion % 10000) at \(PostgresConnection.redacted(store)); \(ProcessInfo.processInfo.activeProcessorCount) cores")

        // 1. feedback/report on each store.
        print("\nfeedback/report: \(clients) clients × \(reports) reports each (by text, with an idempotency key; answered after the commit)")
        print("store        reports/s   p50 ms   p99 ms   max ms")
        for backend in ["sqlite", "postgresql"] {
            let db = backend == "postgresql" ? try freshDatabase(admin) : nil
            let r = try Self.replica(bin, model: model, store: db?.url, name: "fb", tag: "fb-\(backend)")
            defer { r.stop(); db?.drop() }
            try fit(r)
            let socket = r.socket
            let reports = self.reports
            let (seconds, lat) = try concurrently(clients) { i -> [UInt64] in
                let c = try RPCClient(path: socket)
                var out: [UInt64] = []
                for k in 0..<reports {
                    let t = nowNs()
                    let res = try c.call(FeedbackReport.self, .init(text: "my card has not arrived yet \(i) \(k)", kind: .complaint,
                                                                    correctLabel: "card_arrival", idempotencyKey: "b-\(i)-\(k)"))
                    guard case .success = res else { throw ClientError("feedback/report failed: \(res)") }
                    out.append(nowNs() - t)
                }
                return out
            }
            let s = lat.sorted()
            print(String(format: "%-11@  %9.0f  %7.2f  %7.2f  %7.2f", backend as NSString, Double(s.count) / seconds,
                         percentile(s, 50) / 1000, percentile(s, 99) / 1000, Double(s.last ?? 0) / 1e6))
        }

        // 2. Swap propagation across three replicas.
        let db = try freshDatabase(admin)
        defer { db.drop() }
        let replicas = try (0..<3).map { try Self.replica(bin, model: model, store: db.url, name: "s\($0)", tag: "swap\($0)") }
        defer { for r in replicas { r.stop() } }
        try fit(replicas[0])
        _ = try replicas[0].call(ModelFit.self, .init(dataset: "b77", lambdas: [0.1], activate: false))
        let probes = try replicas.map { try RPCClient(path: $0.socket) }
        func served(_ i: Int) throws -> Int? {
            guard case .success(let r) = try probes[i].call(Score.self, .init(inputs: [.init(text: "card")])) else { return nil }
            return r.version
        }
        for i in 1...2 { while try served(i) != 1 { usleep(10_000) } }
        var propagation: [[Double]] = [[], [], []]
        var activateMs: [Double] = []
        for k in 0..<swaps {
            let target = k % 2 == 0 ? 2 : 1
            let t0 = nowNs()
            _ = try replicas[0].call(ModelActivate.self, .init(version: target))
            activateMs.append(Double(nowNs() - t0) / 1e6)
            var pending: Set<Int> = [1, 2]
            let deadline = nowNs() + 30_000_000_000
            while !pending.isEmpty && nowNs() < deadline {
                for i in pending where try served(i) == target {
                    propagation[i].append(Double(nowNs() - t0) / 1e6)
                    pending.remove(i)
                }
                usleep(2000)
            }
            guard pending.isEmpty else { throw ClientError("replicas \(pending) did not serve version \(target) within 30 s") }
            usleep(200_000)
        }
        let all = (propagation[1] + propagation[2]).sorted()
        func med(_ v: [Double]) -> Double { let s = v.sorted(); return s.isEmpty ? .nan : s[s.count / 2] }
        print("\nswap propagation: \(swaps) activations through replica s0, time until each other replica answers score with the new version")
        print(String(format: "  model/activate on s0: median %.1f ms", med(activateMs)))
        for i in 1...2 {
            print(String(format: "  s%d: median %.0f ms, max %.0f ms", i, med(propagation[i]), propagation[i].max() ?? .nan))
        }
        print(String(format: "  all: median %.0f ms, max %.0f ms (target: every replica within 2,000 ms)", med(all), all.last ?? .nan))

        // 3. score throughput: one replica against three, the same client threads.
        print("\nscore (one text a request), \(clients) client threads for \(scoreSeconds) s each")
        print("replicas   requests/s   p50 ms   p99 ms")
        let sockets = replicas.map(\.socket)
        let runSeconds = scoreSeconds
        for n in [1, 3] {
            let (seconds, lat) = try concurrently(clients) { i -> [UInt64] in
                let c = try RPCClient(path: sockets[i % n])
                var out: [UInt64] = []
                let end = nowNs() + UInt64(runSeconds * 1e9)
                var k = 0
                while nowNs() < end {
                    let t = nowNs()
                    guard case .success = try c.call(Score.self, .init(inputs: [.init(text: "where is my new card \(i) \(k)")])) else {
                        throw ClientError("score failed")
                    }
                    out.append(nowNs() - t)
                    k += 1
                }
                return out
            }
            let s = lat.sorted()
            print(String(format: "%8d   %10.0f  %7.2f  %7.2f", n, Double(s.count) / seconds, percentile(s, 50) / 1000, percentile(s, 99) / 1000))
        }
        print("(this machine has \(ProcessInfo.processInfo.activeProcessorCount) cores: three replicas share them, so the encoder, not the store, bounds the total)")
    }

    func fit(_ r: ModelDaemon) throws {
        let path = URL(fileURLWithPath: data).standardizedFileURL.path
        var p = DatasetImportMethod.Params(name: "b77", path: path)
        p.labelField = "category"
        _ = try r.call(DatasetImportMethod.self, p)
        _ = try r.call(ModelFit.self, .init(dataset: "b77", lambdas: [0.01]))
    }

    func freshDatabase(_ admin: PostgresConnection) throws -> (url: String, drop: () -> Void) {
        let name = "robustd_bench_\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        try admin.query("CREATE DATABASE \(name)")
        var url = store
        if let scheme = url.range(of: "://") {
            let rest = url[scheme.upperBound...]
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let query = rest[slash...].firstIndex(of: "?") ?? rest.endIndex
            url = String(url[..<slash]) + "/" + name + String(url[query...])
        }
        return (url, { _ = try? admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)") })
    }

    /// Runs `body(i)` on `n` threads; the wall time and everything they returned.
    func concurrently(_ n: Int, _ body: @escaping @Sendable (Int) throws -> [UInt64]) throws -> (Double, [UInt64]) {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var all: [UInt64] = []
            var error: Error?
        }
        let results = Results()
        let group = DispatchGroup()
        let t0 = nowNs()
        for i in 0..<n {
            group.enter()
            Thread {
                do {
                    let r = try body(i)
                    results.lock.lock(); results.all += r; results.lock.unlock()
                } catch {
                    results.lock.lock(); results.error = error; results.lock.unlock()
                }
                group.leave()
            }.start()
        }
        group.wait()
        if let e = results.error { throw e }
        return (Double(nowNs() - t0) / 1e9, results.all)
    }

    /// One robustd with the model, on SQLite (store nil) or the given PostgreSQL database.
    static func replica(_ bin: URL, model: String, store: String?, name: String, tag: String) throws -> ModelDaemon {
        try ModelDaemon(binary: bin, model: model, tag: tag, extra: ["--replica", name] + (store.map { ["--store", $0] } ?? []))
    }
}
