import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// Options every subcommand shares.
struct Connection: ParsableArguments {
    @Option(help: ArgumentHelp("The daemon's socket (default: $XDG_RUNTIME_DIR/robustd.sock, or /tmp/robustd-$UID/robustd.sock).", valueName: "PATH"))
    var socket: String?

    @Flag(help: "Print the raw JSON result (for scripts).")
    var json = false

    var socketPath: String {
        if let socket { return socket }
        let env = ProcessInfo.processInfo.environment
        if let dir = env["XDG_RUNTIME_DIR"], dir.hasPrefix("/") { return dir + "/robustd.sock" }
        return "/tmp/robustd-\(getuid())/robustd.sock"
    }

    /// Calls a method, prints its result (pretty, or compact with --json), and maps a
    /// JSON-RPC error to a non-zero exit with the daemon's message.
    func call(_ method: String, _ params: JSONValue?, human: ((JSONValue) -> String)? = nil) throws {
        let client: RPCClient
        do { client = try RPCClient(path: socketPath) } catch { fail("\(error)", code: 2) }
        client.onNotification = { m, p in
            guard m == "$/progress", let v = p?["value"] else { return }
            let pct = v["percentage"]?.intValue.map { " \($0)%" } ?? ""
            let msg = v["message"]?.stringValue ?? v["title"]?.stringValue ?? ""
            FileHandle.standardError.write(Data("[\(v["kind"]?.stringValue ?? "")]\(pct) \(msg)\n".utf8))
        }
        let result: Result<JSONValue, RPCError>
        do { result = try client.call(method, params) } catch { fail("\(error)", code: 2) }
        switch result {
        case .success(let value):
            if json { print(JSONWriter.string(value)) }
            else if let human { print(human(value)) }
            else { print(JSONWriter.pretty(value)) }
        case .failure(let e):
            if json {
                FileHandle.standardError.write(Data((JSONWriter.string(e.json) + "\n").utf8))
            } else {
                var text = "error \(e.code): \(e.message)"
                if let data = e.data { text += "\n" + JSONWriter.pretty(data) }
                FileHandle.standardError.write(Data((text + "\n").utf8))
            }
            throw ExitCode(1)
        }
    }
}

extension Connection {
    /// Calls a typed method: `--json` prints the daemon's JSON as it came; otherwise the
    /// result is decoded into `M.Result` for `human`.
    func call<M: RPCRequest>(_ method: M.Type, _ params: M.Params, human: @escaping (M.Result) -> String) throws {
        let encoded: JSONValue
        do { encoded = try JSONValueEncoder().encode(params) } catch { fail("cannot encode the params: \(error)", code: 2) }
        try call(M.name, encoded) { value in
            do { return human(try JSONValueDecoder().decode(M.Result.self, from: value)) } catch {
                fail("the daemon's answer to \(M.name) does not decode (is it a different robustd version?): \(error)", code: 2)
            }
        }
    }
}

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("robustctl: \(message)\n".utf8))
    exit(code)
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call any method: robustctl call METHOD [PARAMS-JSON]; params may also come on stdin ('-').")

    @Argument(help: "The method, e.g. daemon/status.")
    var method: String

    @Argument(help: "Params as JSON (an object or an array); '-' reads them from stdin.")
    var params: String?

    @OptionGroup var connection: Connection

    func run() throws {
        var text = params
        if text == "-" || (text == nil && isatty(0) == 0) {
            let data = FileHandle.standardInput.readDataToEndOfFile()
            let s = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            text = s.isEmpty ? nil : s
        }
        var value: JSONValue? = nil
        if let text {
            do { value = try JSONParser.parse(text) } catch { fail("params are not valid JSON: \(error)", code: 2) }
        }
        try connection.call(method, value)
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the daemon's status.")
    @OptionGroup var connection: Connection

    func run() throws {
        try connection.call(DaemonStatus.self, EmptyParams()) { s in
            let c = s.connections, r = s.requests, q = s.queues
            return """
                robustd \(s.version)  pid \(s.pid)  up \(String(format: "%.1f", s.uptimeSeconds)) s\(s.shuttingDown ? "  (stopping)" : "")
                socket       \(s.socketPath ?? "-")
                connections  \(c.open) open (\(c.socket) socket, \(c.stdio) stdio); \(c.accepted) accepted, \(c.refused) refused, \(c.dropped) dropped
                requests     \(r.served) served, \(r.inFlight) in flight, \(r.failed) failed, \(r.cancelled) cancelled
                queues       compute \(q.computeRunning) running / \(q.computePending) pending on \(s.computeThreads) threads; \(q.outputBytes) output bytes queued
                store        \(storeLine(s.store))
                """
        }
    }
}

func storeLine(_ s: StoreStatus) -> String {
    var line = "\(s.backend.rawValue) \(s.location)  replica \(s.replica)  " + (s.healthy ? "healthy" : "UNAVAILABLE")
    if !s.healthy {
        if let t = s.unhealthySince { line += " for \(Int(Date().timeIntervalSince1970 - t)) s" }
        if let e = s.lastError { line += " (\(e)); scoring goes on, writes are refused until it is back" }
    }
    return line
}

struct Fleet: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The replicas sharing this daemon's store: heartbeats and the versions they serve.",
        discussion: "With the embedded SQLite store there is one replica, this one. docs/fleet.md explains a fleet on PostgreSQL.")
    @OptionGroup var connection: Connection

    func run() throws {
        try connection.call(DaemonFleet.self, EmptyParams()) { f in
            let now = Date().timeIntervalSince1970
            var lines = ["store   \(storeLine(f.store))",
                         "active  \(f.activeVersion.map { "version \($0)" } ?? "none") (the fleet's pointer); lease \(Int(f.leaseSeconds)) s", ""]
            lines.append("replica".padding(toLength: 20, withPad: " ", startingAt: 0) + "host".padding(toLength: 16, withPad: " ", startingAt: 0)
                         + "pid      serves    last seen")
            for r in f.replicas {
                let seen = r.this ? "now (this one)" : "\(String(format: "%.1f", now - r.seenAt)) s ago" + (r.alive ? "" : "  (lease expired)")
                lines.append(r.name.padding(toLength: 20, withPad: " ", startingAt: 0) + r.host.padding(toLength: 16, withPad: " ", startingAt: 0)
                             + String(r.pid).padding(toLength: 9, withPad: " ", startingAt: 0)
                             + (r.activeVersion.map { "v\($0)" } ?? "-").padding(toLength: 10, withPad: " ", startingAt: 0) + seen)
            }
            let behind = f.replicas.filter { $0.alive && $0.activeVersion != f.activeVersion }.map(\.name)
            if !behind.isEmpty { lines += ["", "not yet on the fleet's version: \(behind.joined(separator: ", "))"] }
            return lines.joined(separator: "\n")
        }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the daemon gracefully.")
    @OptionGroup var connection: Connection
    func run() throws { try connection.call(RobustdAPI.Stop.self, EmptyParams()) { _ in "robustd is stopping" } }
}

struct Methods: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the daemon's methods (from rpc.discover).")
    @OptionGroup var connection: Connection
    func run() throws {
        try connection.call(Discover.self, EmptyParams()) { doc in
            (doc["methods"]?.arrayValue ?? []).map { m in
                let name = m["name"]?.stringValue ?? "?"
                return name.padding(toLength: 22, withPad: " ", startingAt: 0) + " " + (m["summary"]?.stringValue ?? "")
            }.joined(separator: "\n")
        }
    }
}

/// One line for a fine-tune job.
func jobLine(_ j: FineTuneJob) -> String {
    let p = j.progress
    var line = "job \(j.id)  \(j.state.rawValue)  \(j.method)  \(p.phase)"
    if let pct = p.percentage, j.state == .running {
        let filled = pct * 20 / 100
        line += "  [" + String(repeating: "#", count: filled) + String(repeating: ".", count: 20 - filled) + "] \(pct)%"
    }
    if let s = p.step, let n = p.steps { line += "  step \(s)/\(n)" }
    if let l = p.loss { line += String(format: "  loss %.4f", l) }
    if let e = p.etaSeconds, j.state == .running { line += String(format: "  ETA %.0f s", e) }
    if let v = j.version { line += "  → version \(v)\(j.promoted == true ? " (promoted)" : "")" }
    if let e = j.error { line += "  (\(e))" }
    return line
}

/// The gate's verdict in two lines.
func gateLines(_ j: FineTuneJob) -> String {
    guard let g = j.result?.gate else { return "" }
    let t = g.target, gl = g.global
    var s = String(format: "gate %@: target cost %.4f → %.4f (%+.0f%%), global %.4f → %.4f (upper bound %+.4f, allowed %.4f)",
                   g.passed ? "passed" : "failed", t.parentCost, t.candidateCost, -100 * g.targetReduction, gl.parentCost, gl.candidateCost,
                   gl.upperBound, g.globalAllowance)
    s += String(format: "\n  held-out: %d global examples (worth %.0f equally weighted ones), %d in the target regions",
                  gl.examples, gl.effectiveExamples, t.examples)
    for r in g.reasons { s += "\n  " + r }
    return s
}

/// Follows a job until it ends; exit 0 if it succeeded.
func watchJob(_ connection: Connection, _ id: Int) throws {
    let client: RPCClient
    do { client = try RPCClient(path: connection.socketPath) } catch { fail("\(error)", code: 2) }
    var last = ""
    while true {
        let r: Result<FineTuneJob, RPCError>
        do { r = try client.call(FineTuneStatus.self, FineTuneStatus.Params(job: id)) } catch { fail("\(error)", code: 2) }
        guard case .success(let j) = r else {
            if case .failure(let e) = r { FileHandle.standardError.write(Data("error \(e.code): \(e.message)\n".utf8)) }
            throw ExitCode(1)
        }
        let line = jobLine(j)
        if line != last && !connection.json { FileHandle.standardOutput.write(Data((line + "\n").utf8)); last = line }
        if ![.scheduled, .queued, .running].contains(j.state) {
            // --json: only the finished job, for scripts.
            if connection.json { print(String(decoding: (try? JSONBytesEncoder().bytes(j)) ?? [], as: UTF8.self)) }
            else if j.state == .succeeded { print(gateLines(j)) }
            if j.state == .succeeded { return }
            throw ExitCode(1)
        }
        usleep(500_000)
    }
}

struct FineTune: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finetune", abstract: "Start, follow, list and cancel local fine-tunes.",
        subcommands: [Start.self, Watch.self, JobStatus.self, List.self, Cancel.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start a fine-tune job (then --watch follows it).")
        @Option(help: "auto, all, or region ids from risk/regions, comma-separated.") var regions = "auto"
        @Option(help: "head, lora or top-layers.") var method = "lora"
        @Option(help: "Layers trained or adapted, from the top.") var layers: Int?
        @Option(help: "Epochs.") var epochs: Int?
        @Option(help: "Regions 'auto' takes.") var top: Int?
        @Option(help: "Stop after this many seconds of training.") var maxSeconds: Double?
        @Flag(help: "Keep the version a candidate even if it passes its gate.") var noPromote = false
        @Flag(help: "Follow the job until it ends.") var watch = false
        @OptionGroup var connection: Connection

        func run() throws {
            var p: [String: JSONValue] = ["method": .string(method)]
            p["regions"] = regions == "auto" || regions == "all" ? .string(regions) : .array(regions.split(separator: ",").map { .string(String($0)) })
            if let layers { p["layers"] = .int(Int64(layers)) }
            if let epochs { p["epochs"] = .int(Int64(epochs)) }
            if let top { p["top"] = .int(Int64(top)) }
            if let maxSeconds { p["maxSeconds"] = .double(maxSeconds) }
            if noPromote { p["autoPromote"] = false }
            var id = 0
            let params: FineTuneStart.Params
            do { params = try JSONValueDecoder().decode(FineTuneStart.Params.self, from: .object(p)) } catch { fail("\(error)", code: 2) }
            try connection.call(FineTuneStart.self, params) { j in
                id = j.id
                return jobLine(j) + "\n  intents: " + j.intents.joined(separator: ", ")
            }
            if watch { try watchJob(connection, id) }
        }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Follow a job until it ends (exit 0 if it succeeded).")
        @Argument var job: Int
        @OptionGroup var connection: Connection
        func run() throws { try watchJob(connection, job) }
    }

    struct JobStatus: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "One job.")
        @Argument var job: Int
        @OptionGroup var connection: Connection
        func run() throws {
            try connection.call(FineTuneStatus.self, FineTuneStatus.Params(job: job)) { j in [jobLine(j), gateLines(j)].filter { !$0.isEmpty }.joined(separator: "\n") }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every job, newest first.")
        @OptionGroup var connection: Connection
        func run() throws {
            try connection.call(FineTuneList.self, FineTuneList.Params()) { r in
                r.jobs.isEmpty ? "no fine-tune jobs" : r.jobs.map(jobLine).joined(separator: "\n")
            }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Cancel a job (a running one stops within one step).")
        @Argument var job: Int
        @OptionGroup var connection: Connection
        func run() throws { try connection.call(FineTuneCancel.self, FineTuneCancel.Params(job: job)) { jobLine($0) } }
    }
}

struct Versions: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the versions: lineage, method, status, gate.")
    @OptionGroup var connection: Connection
    func run() throws {
        try connection.call(ModelVersions.self, ModelVersions.Params()) { r in
            r.versions.map { v in
                var line = String(format: "version %-3d parent %-4@ %-10@ %@", v.id, (v.parent.map { String($0) } ?? "-") as NSString,
                                  v.method as NSString, v.status.rawValue as NSString)
                if let g = v.report.fineTune?.gate {
                    line += String(format: "   gate %@ (target %+.0f%%, global %+.4f)", g.passed ? "passed" : "failed",
                                   -100 * g.targetReduction, g.global.difference)
                } else if let a = v.report.fit?.validationAccuracy {
                    line += String(format: "   validation accuracy %.2f%%", 100 * a)
                }
                return line
            }.joined(separator: "\n")
        }
    }
}

struct Activate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a version active now (a rollback, or a candidate by hand).")
    @Argument var version: Int
    @OptionGroup var connection: Connection
    func run() throws {
        try connection.call(ModelActivate.self, ModelActivate.Params(version: version)) { r in
            "version \(r.active) is active (was \(r.previous.map(String.init) ?? "none"))"
        }
    }
}

struct Robustctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robustctl",
        abstract: "Talk to a running robustd over its Unix socket.",
        discussion: "Exit status: 0 on success, 1 when the daemon answers with a JSON-RPC error, 2 when it cannot be reached.",
        subcommands: [Call.self, Status.self, Fleet.self, Methods.self, Stop.self, ScoreCommand.self, FlagCommand.self, FeedbackCommand.self, RegionsCommand.self,
                      FineTune.self, RolloutCommand.self, Versions.self, Activate.self, MetricsCommand.self, WatchMetrics.self, Report.self, Replay.self])
}

/// `robustctl --socket PATH status` works as well as `robustctl status --socket PATH`: options
/// given before the subcommand are moved to the end (after nested subcommands and arguments).
func normalisedArguments(_ args: [String]) -> [String] {
    var leading: [String] = []
    var i = 0
    while i < args.count, args[i].hasPrefix("--"), args[i] != "--help" {
        leading.append(args[i])
        if args[i] == "--socket", i + 1 < args.count { leading.append(args[i + 1]); i += 1 }
        i += 1
    }
    guard !leading.isEmpty, i < args.count else { return args }
    return Array(args[i...]) + leading
}

Robustctl.main(normalisedArguments(Array(CommandLine.arguments.dropFirst())))
