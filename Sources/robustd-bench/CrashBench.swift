import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Scoring
import Store

/// Crash consistency over every write path (docs/reliability.md): for each path, N trials of
/// kill -9 at a random moment of its workload, a restart, and checks of what the restarted
/// daemon holds against what the client was told before the kill.
struct CrashBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crash",
        abstract: "kill -9 at a random moment during each write path, N trials each; after every restart: each acknowledged write present exactly once, no half-written version listed or loaded, the active version the last acknowledged one, serving within 1 s.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Trials per write path.")
    var trials: Int = 100

    @Option(help: "Write paths, comma-separated: feedback, import, fit, finetune, activate, snapshots.")
    var only: String = "feedback,import,fit,finetune,activate,snapshots"

    @Option(help: "Training examples per intent in the base state (smaller: faster fits and fine-tunes).")
    var perIntent: Int = 10

    @Option(help: "Seed of the kill moments.")
    var seed: UInt64 = 1

    @Option(help: "Keep the state folder of a trial that breaks a check here (default: a folder in /tmp).")
    var keep: String?

    @Option(help: "Run on PostgreSQL: a URL whose user may create databases; each trial gets a fresh database copied from the base state's (CREATE DATABASE … TEMPLATE), dropped after it.")
    var store: String?

    func run() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let work = "/tmp/robustd-crash-\(getpid())"
        try? FileManager.default.removeItem(atPath: work)
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: work) }
        let kinds = try only.split(separator: ",").map { s throws -> CrashPath in
            guard let p = CrashPath(rawValue: String(s)) else { throw ValidationError("unknown write path '\(s)'") }
            return p
        }
        let train = try paths.rows("train.csv", perIntent: perIntent)
        print("robustd-bench crash: \(trials) trials of each of \(kinds.map(\.rawValue).joined(separator: ", ")); store \(store.map { "PostgreSQL " + PostgresConnection.redacted($0) } ?? "SQLite"); model \(paths.model); base: \(train.count) Banking77 training examples, versions 1 and 2 (1 active); \(ProcessInfo.processInfo.activeProcessorCount) cores")
        let env = try CrashEnvironment(binary: binary, model: paths.model, work: work, train: train, store: store)
        defer { env.dropDatabases() }
        var rng = SeededRandom(seed: seed)
        var failed = false
        print("path       trials  acked writes  lost  duplicated  half-written  wrong active  serve p50 ms  serve max ms  violations")
        for kind in kinds {
            let natural = try env.calibrate(kind)
            if natural > 0 { print(String(format: "  %@ takes %.1f s without a kill; kills drawn in [0, %.1f] s", kind.rawValue, natural, kind.killWindow(natural: natural))) }
            var row = CrashRow()
            for t in 0..<trials {
                let delay = kind.killWindow(natural: natural) * Double(rng.next() % 10_000) / 10_000
                let r = try env.trial(kind, number: t, killAfter: delay)
                row.add(r)
                if !r.violations.isEmpty {
                    failed = true
                    let kept = (keep ?? "/tmp") + "/robustd-crash-\(kind.rawValue)-\(t)-\(getpid())"
                    try? FileManager.default.moveItem(atPath: r.dir, toPath: kept)
                    print("  \(kind.rawValue) trial \(t) (killed after \(String(format: "%.3f", delay)) s): \(r.violations.joined(separator: "; ")); state kept in \(kept)")
                }
                env.removeCopy(r.dir)
            }
            print(row.line(kind))
        }
        if failed { throw ExitCode(1) }
    }
}

enum CrashPath: String {
    case feedback, `import`, fit, finetune, activate, snapshots

    /// The window the kill moment is drawn from: the workload's natural length for the
    /// bounded ones (a fit, a fine-tune), a few seconds of the endless streams.
    func killWindow(natural: Double) -> Double {
        switch self {
        case .fit, .finetune: return natural * 1.1
        case .snapshots: return 3
        default: return 2
        }
    }
}

/// What one trial saw.
struct CrashResult {
    var dir: String
    var acked = 0
    var lost = 0
    var duplicated = 0
    var halfWritten = 0
    var wrongActive = 0
    var serveMs = 0.0
    /// Where the kill fell, for the paths that have phases (a fine-tune's).
    var phase: String?
    var violations: [String] = []
}

struct CrashRow {
    var trials = 0, acked = 0, lost = 0, duplicated = 0, halfWritten = 0, wrongActive = 0, violations = 0
    var serve: [Double] = []
    var phases: [String: Int] = [:]
    mutating func add(_ r: CrashResult) {
        if let p = r.phase { phases[p, default: 0] += 1 }
        trials += 1; acked += r.acked; lost += r.lost; duplicated += r.duplicated; halfWritten += r.halfWritten
        wrongActive += r.wrongActive; violations += r.violations.isEmpty ? 0 : 1
        serve.append(r.serveMs)
    }
    func line(_ k: CrashPath) -> String {
        let s = serve.sorted()
        let name = k.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0)
        let line = name + String(format: "  %6d  %12d  %4d  %10d  %12d  %12d  %12.0f  %12.0f  %10d", trials, acked, lost, duplicated,
                                 halfWritten, wrongActive, s.isEmpty ? 0 : s[s.count / 2], s.last ?? 0, violations)
        guard !phases.isEmpty else { return line }
        return line + "\n           killed in: " + phases.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }
}

/// What the client was told before the kill, written by the workload's thread.
final class CrashLedger: @unchecked Sendable {
    private let lock = NSLock()
    private var _acked: [String] = []
    private var _inFlight: String?
    private var _last: [String: JSONValue] = [:]
    private var _errors: [String] = []

    var acked: [String] { lock.withLock { _acked } }
    var inFlight: String? { lock.withLock { _inFlight } }
    var errors: [String] { lock.withLock { _errors } }
    func last(_ k: String) -> JSONValue? { lock.withLock { _last[k] } }

    func sending(_ key: String) { lock.withLock { _inFlight = key } }
    func acknowledged(_ key: String) { lock.withLock { _acked.append(key); _inFlight = nil } }
    func set(_ k: String, _ v: JSONValue) { lock.withLock { _last[k] = v } }
    func error(_ e: String) { lock.withLock { _errors.append(e) } }
}
