import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Store

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
        _ = try d.call(DatasetImportMethod.self, .init(name: "train", path: importFile))
        _ = try d.call(ModelFit.self, .init(dataset: "train", lambdas: [0.01]))
        _ = try d.call(ModelFit.self, .init(dataset: "train", lambdas: [0.1], activate: false))
        d.stop()
    }

    /// The database of a state folder (PostgreSQL): the base's, or a trial's named after its folder.
    func database(for state: String) -> String {
        state == base ? baseDatabase : "robustd_crash_\(getpid())_" + (state as NSString).lastPathComponent.replacingOccurrences(of: "-", with: "_")
    }

    /// The `--store` options of a state folder's daemon.
    func storeArguments(_ state: String) -> [String] {
        guard let store else { return [] }
        return ["--store", PostgresConnection.replacingDatabase(in: store, with: database(for: state)), "--replica", "crash"]
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

    func call<M: RPCRequest>(_ method: M.Type, _ params: M.Params) throws -> M.Result {
        switch try client.call(method, params, timeout: 600) {
        case .success(let v): return v
        case .failure(let e): throw ClientError("\(M.name): \(e.message) \(e.data.map { JSONWriter.string($0) } ?? "")")
        }
    }

    func call<M: RPCRequest>(_ method: M.Type) throws -> M.Result where M.Params == EmptyParams { try call(method, EmptyParams()) }

    /// Until a `score` is answered.
    func waitServing(deadline seconds: Double) throws {
        let end = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < end {
            switch try client.call(Score.self, .init(inputs: [.init(text: "where is my card")]), timeout: seconds) {
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
