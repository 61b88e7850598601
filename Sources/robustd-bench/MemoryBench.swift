import ArgumentParser
import Foundation
import RobustdAPI
import RobustdClient

/// Resident memory of the daemon with the model loaded, per precision: idle after start, and
/// after traffic (Banking77's test sentences in batches, then single queries). Read from
/// /proc/PID/status, split into anonymous memory (copies the daemon made) and file pages
/// (the mapped model.safetensors, shared with the page cache).
struct MemoryBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "memory",
        abstract: "The daemon's resident memory with the model loaded, idle and after traffic, for fp32 and int8.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "The robustd binary (default: beside this one).")
    var robustd: String?

    @Option(help: "Precisions to measure, comma-separated.")
    var precisions = "fp32,int8"

    @Option(help: "Single queries after the batches.")
    var queries = 50

    func run() throws {
        let binary = robustd.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let texts = try paths.rows("test.csv").map(\.0)
        let model = paths.model
        let cpu = CPUInfo.read()
        print("robustd-bench memory: \(binary.path); \(cpu.model); \(texts.count) sentences in batches of 64, then \(queries) single queries")
        print("precision  when                            VmRSS MB   anonymous MB   file MB   packed+quantised MB")
        for p in precisions.split(separator: ",").map(String.init) {
            let dir = "/tmp/robustd-bench-memory-\(getpid())"
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let socket = dir + "/robustd.sock"
            let daemon = Process()
            daemon.executableURL = binary
            daemon.arguments = ["--socket", socket, "--log-level", "warning", "--state-dir", dir + "/state", "--model", model, "--precision", p]
            try daemon.run()
            defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
            let deadline = Date().addingTimeInterval(60)
            var client: RPCClient?
            while client == nil {
                guard Date() < deadline, daemon.isRunning else { throw ClientError("robustd --precision \(p) did not start") }
                client = try? RPCClient(path: socket)
                if client == nil { usleep(20_000) }
            }
            let c = client!
            // The model is loaded once model/info answers.
            _ = try c.call(ModelInfo.self).get()
            Thread.sleep(forTimeInterval: 0.5)
            let info = try c.call(ModelInfo.self).get()
            func row(_ when: String) {
                let s = Self.status(pid: daemon.processIdentifier)
                func pad(_ t: String, _ n: Int) -> String { t.count >= n ? t : t + String(repeating: " ", count: n - t.count) }
                print(pad(p, 9) + "  " + pad(when, 30) + String(format: "%8.1f   %12.1f   %7.1f   %8.1f",
                                                                    s.rss, s.anon, s.file, Double(info.memory.packedWeightBytes) / 1e6))
            }
            row("idle after start")
            for start in stride(from: 0, to: texts.count, by: 64) {
                _ = try c.call(Embed.self, .init(texts: Array(texts[start..<min(texts.count, start + 64)]), encoding: .base64)).get()
            }
            row("after \(texts.count) in batches")
            for q in texts.prefix(queries) { _ = try c.call(Embed.self, .init(texts: [q], encoding: .base64)).get() }
            row("after \(queries) single queries")
        }
    }

    /// VmRSS, RssAnon and RssFile of a process, in MB.
    static func status(pid: Int32) -> (rss: Double, anon: Double, file: Double) {
        guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return (.nan, .nan, .nan) }
        func kb(_ key: String) -> Double {
            guard let line = s.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return .nan }
            return Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") .map { $0 * 1024 / 1e6 } ?? .nan
        }
        return (kb("VmRSS"), kb("RssAnon"), kb("RssFile"))
    }
}
