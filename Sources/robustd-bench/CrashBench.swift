import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdClient
import Scoring

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
        var train: [(String, String)] = []
        var perLabel: [String: Int] = [:]
        for (t, l) in try paths.rows("train.csv") where perLabel[l, default: 0] < perIntent {
            perLabel[l, default: 0] += 1
            train.append((t, l))
        }
        print("robustd-bench crash: \(trials) trials of each of \(kinds.map(\.rawValue).joined(separator: ", ")); store \(store.map { "PostgreSQL " + PostgresURL.redacted($0) } ?? "SQLite"); model \(paths.model); base: \(train.count) Banking77 training examples, versions 1 and 2 (1 active); \(ProcessInfo.processInfo.activeProcessorCount) cores")
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

/// The base state (a dataset, versions 1 and 2, 1 active), copied for every trial, and the
/// daemon processes of a trial.
final class CrashEnvironment: Sendable {
    let binary: URL
    let model: String
    let work: String
    let base: String
    let importFile: String
    let importRows: Int
    let texts: [(String, String)]
    /// PostgreSQL: the URL the bench administers databases through, and the base's name.
    let store: String?
    let baseDatabase: String

    init(binary: URL, model: String, work: String, train: [(String, String)], store: String?) throws {
        self.binary = binary
        self.model = model
        self.work = work
        self.texts = train
        self.store = store
        baseDatabase = "robustd_crash_\(getpid())_base"
        base = work + "/base"
        importFile = work + "/import.jsonl"
        var text = ""
        for (t, l) in train { text += JSONWriter.string(["text": .string(t), "label": .string(l)]) + "\n" }
        try text.write(toFile: importFile, atomically: true, encoding: .utf8)
        importRows = train.count
        if store != nil { try psql("CREATE DATABASE \(baseDatabase)") }
        let d = try CrashDaemon(env: self, binary: binary, model: model, state: base)
        _ = try d.call("dataset/import", ["name": "train", "path": .string(importFile)])
        _ = try d.call("model/fit", ["dataset": "train", "lambdas": [0.01]])
        _ = try d.call("model/fit", ["dataset": "train", "lambdas": [0.1], "activate": false])
        d.stop()
    }

    /// The database of a state folder (PostgreSQL): the base's, or a trial's named after its folder.
    func database(for state: String) -> String {
        state == base ? baseDatabase : "robustd_crash_\(getpid())_" + (state as NSString).lastPathComponent.replacingOccurrences(of: "-", with: "_")
    }

    /// The `--store` options of a state folder's daemon.
    func storeArguments(_ state: String) -> [String] {
        guard let store else { return [] }
        return ["--store", PostgresURL.replacingDatabase(in: store, with: database(for: state)), "--replica", "crash"]
    }

    /// A copy of the base state for a trial: its folder, and with PostgreSQL its database.
    func copyBase(to dir: String) throws {
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.copyItem(atPath: base, toPath: dir)
        guard store != nil else { return }
        try? psql("DROP DATABASE IF EXISTS \(database(for: dir))")
        // The base's last sessions may take a moment to end after its daemon stopped.
        var lastError: Error?
        for _ in 0..<50 {
            do { try psql("CREATE DATABASE \(database(for: dir)) TEMPLATE \(baseDatabase)"); return } catch { lastError = error; usleep(100_000) }
        }
        throw lastError!
    }

    func removeCopy(_ dir: String) {
        try? FileManager.default.removeItem(atPath: dir)
        if store != nil { try? psql("DROP DATABASE IF EXISTS \(database(for: dir)) WITH (FORCE)") }
    }

    func dropDatabases() {
        guard store != nil else { return }
        try? psql("DROP DATABASE IF EXISTS \(baseDatabase) WITH (FORCE)")
    }

    /// One SQL statement through psql on the administering URL.
    func psql(_ sql: String) throws {
        guard let store else { return }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/psql")
        p.arguments = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", store, "-c", sql]
        let err = work + "/psql.err"
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: err)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ClientError("psql \(sql): \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")") }
    }

    /// How long the bounded workloads take without a kill (the kill window's length).
    func calibrate(_ kind: CrashPath) throws -> Double {
        guard kind == .fit || kind == .finetune else { return 0 }
        let dir = work + "/calibrate"
        try copyBase(to: dir)
        defer { removeCopy(dir) }
        let d = try CrashDaemon(env: self, binary: binary, model: model, state: dir)
        defer { d.stop() }
        let ledger = CrashLedger()
        let t0 = Date()
        try Self.workload(kind, d.socket, ledger, env: self)
        return Date().timeIntervalSince(t0)
    }

    /// The workload of a write path, on its own connection, until it ends or the daemon dies.
    static func workload(_ kind: CrashPath, _ socket: String, _ ledger: CrashLedger, env: CrashEnvironment) throws {
        let c = try RPCClient(path: socket)
        func call(_ m: String, _ p: JSONValue) throws -> JSONValue? {
            switch try c.call(m, p, timeout: 120) {
            case .success(let v): return v
            case .failure(let e): ledger.error("\(m): \(e.code) \(e.message)"); return nil
            }
        }
        switch kind {
        case .feedback:
            for i in 0... {
                let (t, l) = env.texts[i % env.texts.count]
                let key = "k\(i)"
                ledger.sending(key)
                guard try call("feedback/report", ["text": .string(t), "kind": "complaint", "correctLabel": .string(l), "idempotencyKey": .string(key)]) != nil else { return }
                ledger.acknowledged(key)
            }
        case .import:
            for i in 0... {
                let name = "imp\(i)"
                ledger.sending(name)
                guard try call("dataset/import", ["name": .string(name), "path": .string(env.importFile)]) != nil else { return }
                ledger.acknowledged(name)
            }
        case .fit:
            ledger.sending("fit")
            guard let r = try call("model/fit", ["dataset": "train", "lambdas": [0.03], "seed": 7, "activate": true]) else { return }
            ledger.set("version", r["version"] ?? .null)
            ledger.set("active", r["active"] ?? .null)
            ledger.acknowledged("fit")
        case .finetune:
            ledger.sending("job")
            guard let job = try call("finetune/start", ["regions": "all", "method": "lora", "layers": 2, "epochs": 1, "maxSeconds": 60, "autoPromote": false]),
                  let id = job["id"] else { return }
            ledger.set("job", id)
            ledger.acknowledged("job")
            while true {
                guard let s = try call("finetune/status", ["job": id]) else { return }
                ledger.set("state", s["state"] ?? .null)
                let phase = s["state"]?.stringValue == "running" ? s["progress"]?["phase"]?.stringValue ?? "running" : s["state"]?.stringValue ?? "?"
                ledger.set("phase", .string(phase))
                if let v = s["version"], !v.isNull { ledger.set("version", v) }
                if s["state"]?.stringValue.map({ ["succeeded", "failed", "cancelled", "interrupted"].contains($0) }) == true { return }
                usleep(20_000)
            }
        case .activate:
            for i in 0... {
                let v = i % 2 == 0 ? 2 : 1
                ledger.sending("\(v)")
                guard try call("model/activate", ["version": .int(Int64(v))]) != nil else { return }
                ledger.acknowledged("\(v)")
            }
        case .snapshots:
            for i in 0... {
                let (t, _) = env.texts[i % env.texts.count]
                _ = try call("score", ["inputs": [["text": .string(t)]]])
                if i % 5 == 0, let h = try call("metrics/history", ["metric": "requests.1m", "since": 0]) {
                    ledger.set("points", .int(Int64(h["points"]?.arrayValue?.count ?? 0)))
                    ledger.set("lastAt", h["points"]?.arrayValue?.last?["at"] ?? .null)
                }
            }
        }
    }

    /// One trial: start on a copy of the base state, run the workload, kill -9 after `delay`,
    /// restart, check.
    func trial(_ kind: CrashPath, number: Int, killAfter delay: Double) throws -> CrashResult {
        let dir = work + "/\(kind.rawValue)-\(number)"
        try copyBase(to: dir)
        var r = CrashResult(dir: dir)
        let d = try CrashDaemon(env: self, binary: binary, model: model, state: dir, snapshots: kind == .snapshots)
        let ledger = CrashLedger()
        let done = DispatchSemaphore(value: 0)
        let socket = d.socket
        let t = Thread { [self] in
            do { try Self.workload(kind, socket, ledger, env: self) } catch {}
            done.signal()
        }
        t.stackSize = 1 << 20
        t.start()
        usleep(UInt32(delay * 1e6))
        d.kill9()
        done.wait()
        // Errors before the kill are violations (the workload is valid); after it, the
        // connection's end is expected.
        if !ledger.errors.isEmpty { r.violations.append("errors before the kill: \(ledger.errors.prefix(3))") }

        let t0 = Date()
        let again = try CrashDaemon(env: self, binary: binary, model: model, state: dir, snapshots: kind == .snapshots)
        defer {
            again.stop()
            if r.violations.isEmpty { removeCopy(dir) }
        }
        try again.waitServing(deadline: 30)
        r.serveMs = Date().timeIntervalSince(t0) * 1000
        if r.serveMs > 1000 { r.violations.append(String(format: "served after %.0f ms", r.serveMs)) }
        try check(kind, again, ledger, &r)
        return r
    }

    func check(_ kind: CrashPath, _ d: CrashDaemon, _ ledger: CrashLedger, _ r: inout CrashResult) throws {
        let acked = ledger.acked, inFlight = ledger.inFlight
        r.acked = acked.count
        let versions = try d.call("model/versions", ["limit": 1000])
        let active = versions["active"]?.intValue.map(Int.init)
        var allowedActive: Set<Int> = [1]
        switch kind {
        case .feedback:
            var counts: [String: Int] = [:]
            var cursor: JSONValue = .null
            repeat {
                var p: [String: JSONValue] = ["limit": 1000]
                if !cursor.isNull { p["cursor"] = cursor }
                let page = try d.call("feedback/list", .object(p))
                for e in page["feedback"]?.arrayValue ?? [] { counts[e["idempotencyKey"]?.stringValue ?? "?", default: 0] += 1 }
                cursor = page["nextCursor"] ?? .null
            } while !cursor.isNull
            for k in acked where counts[k, default: 0] == 0 { r.lost += 1 }
            r.duplicated = counts.values.filter { $0 > 1 }.count
            let unknown = counts.keys.filter { !acked.contains($0) && $0 != inFlight }
            if !unknown.isEmpty { r.violations.append("reports never sent: \(unknown.prefix(3))") }
        case .import:
            let list = try d.call("dataset/list", .object([:]))
            var seen: [String: Int] = [:]
            for ds in list["datasets"]?.arrayValue ?? [] {
                guard let name = ds["name"]?.stringValue, name.hasPrefix("imp") else { continue }
                seen[name] = Int(ds["rows"]?.intValue ?? -1)
            }
            for k in acked where seen[k] == nil { r.lost += 1 }
            for (name, rows) in seen {
                if rows != importRows { r.halfWritten += 1; r.violations.append("dataset \(name) holds \(rows) of \(importRows) rows") }
                if !acked.contains(name) && name != inFlight { r.violations.append("dataset \(name) never sent") }
            }
        case .fit:
            // A fit activates its version only when asked (or when nothing is active): the
            // answer says which. Unanswered, it may have committed just before the kill.
            if acked.contains("fit"), let v = ledger.last("version")?.intValue {
                if ledger.last("active")?.boolValue == true { allowedActive = [Int(v)] }
            } else {
                allowedActive.formUnion(newVersions(versions).map(\.0))
            }
            if acked.contains("fit"), let v = ledger.last("version")?.intValue, !newVersions(versions).contains(where: { $0.0 == Int(v) && $0.1 != "failed" }) {
                r.lost += 1
            }
        case .finetune:
            if let id = ledger.last("job") {
                let s = try d.call("finetune/status", ["job": id])
                let state = s["state"]?.stringValue ?? "?"
                if ledger.last("state")?.stringValue == "running" && state == "running" {
                    r.violations.append("the job killed while running is still shown running")
                }
                if state == "succeeded", s["version"]?.isNull != false { r.violations.append("a succeeded job without its version") }
            } else if acked.contains("job") { r.lost += 1 }
            r.phase = ledger.last("phase")?.stringValue ?? (acked.contains("job") ? "queued" : "before the answer")
        case .activate:
            let last = acked.last.flatMap { Int($0) } ?? 1
            allowedActive = [last]
            if let f = inFlight.flatMap({ Int($0) }) { allowedActive.insert(f) }
        case .snapshots:
            let h = try d.call("metrics/history", ["metric": "requests.1m", "since": 0])
            let points = h["points"]?.arrayValue ?? []
            let seen = Int(ledger.last("points")?.intValue ?? 0)
            r.acked = seen
            if points.count < seen { r.lost += seen - points.count }
            let times = points.compactMap { $0["at"]?.doubleValue }
            if zip(times, times.dropFirst()).contains(where: { $0 >= $1 }) { r.violations.append("snapshot times not increasing") }
        }
        if let a = active, !allowedActive.contains(a) {
            r.wrongActive += 1
            r.violations.append("active version \(a), expected one of \(allowedActive.sorted())")
        } else if active == nil {
            r.wrongActive += 1
            r.violations.append("no active version")
        }
        // Every version a trial made that is not marked failed must load and serve.
        for (id, status) in newVersions(versions) where status != "failed" {
            if status == "writing" { r.halfWritten += 1; r.violations.append("version \(id) still writing after the restart"); continue }
            guard case .success = try d.client.call("model/activate", ["version": .int(Int64(id))], timeout: 60) else {
                r.halfWritten += 1
                r.violations.append("version \(id) is listed \(status) but does not activate")
                continue
            }
            guard case .success = try d.client.call("score", ["inputs": [["text": "where is my card"]]], timeout: 60) else {
                r.halfWritten += 1
                r.violations.append("version \(id) activated but does not score")
                continue
            }
        }
        if r.lost > 0 { r.violations.append("\(r.lost) acknowledged writes lost") }
        if r.duplicated > 0 { r.violations.append("\(r.duplicated) writes stored twice") }
    }

    func newVersions(_ versions: JSONValue) -> [(Int, String)] {
        (versions["versions"]?.arrayValue ?? []).compactMap { v in
            guard let id = v["id"]?.intValue, id > 2 else { return nil }
            return (Int(id), v["status"]?.stringValue ?? "?")
        }
    }
}

/// A daemon of a trial, its log beside its state.
final class CrashDaemon {
    let process = Process()
    let socket: String
    let client: RPCClient

    init(env: CrashEnvironment, binary: URL, model: String, state: String, snapshots: Bool = false) throws {
        socket = state + ".sock"
        try? FileManager.default.removeItem(atPath: socket)
        process.executableURL = binary
        process.arguments = ["--socket", socket, "--model", model, "--state-dir", state, "--log-level", "warning"]
            + (snapshots ? ["--metrics-snapshot-seconds", "0.2"] : []) + env.storeArguments(state)
        _ = FileManager.default.createFile(atPath: state + ".log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: state + ".log")
        try process.run()
        var c: RPCClient? = nil
        let deadline = Date().addingTimeInterval(30)
        while c == nil {
            c = try? RPCClient(path: socket)
            if c == nil { guard Date() < deadline, process.isRunning else { throw ClientError("robustd did not start; see \(state).log") }; usleep(2_000) }
        }
        client = c!
    }

    func call(_ method: String, _ params: JSONValue?) throws -> JSONValue {
        switch try client.call(method, params, timeout: 600) {
        case .success(let v): return v
        case .failure(let e): throw ClientError("\(method): \(e.message) \(e.data.map { JSONWriter.string($0) } ?? "")")
        }
    }

    /// Until a `score` is answered.
    func waitServing(deadline seconds: Double) throws {
        let end = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < end {
            switch try client.call("score", ["inputs": [["text": "where is my card"]]], timeout: seconds) {
            case .success: return
            case .failure(let e): last = "\(e.code) \(e.message)"
            }
            usleep(2_000)
        }
        throw ClientError("the restarted daemon did not serve within \(seconds) s: \(last)")
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
    }
}

/// PostgreSQL URLs for the bench: the password hidden, another database named.
enum PostgresURL {
    static func redacted(_ url: String) -> String {
        guard let scheme = url.range(of: "://"), let at = url[scheme.upperBound...].lastIndex(of: "@"),
              let colon = url[scheme.upperBound..<at].firstIndex(of: ":") else { return url }
        return String(url[..<url.index(after: colon)]) + "***" + String(url[at...])
    }

    static func replacingDatabase(in url: String, with name: String) -> String {
        guard let scheme = url.range(of: "://") else { return url + " dbname=\(name)" }
        let rest = url[scheme.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let query = rest[slash...].firstIndex(of: "?") ?? rest.endIndex
        return String(url[..<slash]) + "/" + name + String(url[query...])
    }
}
