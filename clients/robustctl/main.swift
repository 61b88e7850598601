import ArgumentParser
import Foundation
import JSONRPC
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
        try connection.call("daemon/status", nil) { s in
            func i(_ path: String...) -> String {
                var v: JSONValue? = s
                for p in path { v = v?[p] }
                return v.map { JSONWriter.string($0) } ?? "-"
            }
            let up = s["uptimeSeconds"]?.doubleValue ?? 0
            return """
                robustd \(s["version"]?.stringValue ?? "?")  pid \(i("pid"))  up \(String(format: "%.1f", up)) s\(s["shuttingDown"] == .bool(true) ? "  (stopping)" : "")
                socket       \(s["socketPath"]?.stringValue ?? "-")
                connections  \(i("connections", "open")) open (\(i("connections", "socket")) socket, \(i("connections", "stdio")) stdio); \(i("connections", "accepted")) accepted, \(i("connections", "refused")) refused, \(i("connections", "dropped")) dropped
                requests     \(i("requests", "served")) served, \(i("requests", "inFlight")) in flight, \(i("requests", "failed")) failed, \(i("requests", "cancelled")) cancelled
                queues       compute \(i("queues", "computeRunning")) running / \(i("queues", "computePending")) pending on \(i("computeThreads")) threads; \(i("queues", "outputBytes")) output bytes queued
                """
        }
    }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Stop the daemon gracefully.")
    @OptionGroup var connection: Connection
    func run() throws { try connection.call("daemon/stop", nil) { _ in "robustd is stopping" } }
}

struct Methods: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the daemon's methods (from rpc.discover).")
    @OptionGroup var connection: Connection
    func run() throws {
        try connection.call("rpc.discover", nil) { doc in
            (doc["methods"]?.arrayValue ?? []).map { m in
                let name = m["name"]?.stringValue ?? "?"
                return name.padding(toLength: 22, withPad: " ", startingAt: 0) + " " + (m["summary"]?.stringValue ?? "")
            }.joined(separator: "\n")
        }
    }
}

struct Robustctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robustctl",
        abstract: "Talk to a running robustd over its Unix socket.",
        discussion: "Exit status: 0 on success, 1 when the daemon answers with a JSON-RPC error, 2 when it cannot be reached.",
        subcommands: [Call.self, Status.self, Methods.self, Stop.self])
}

/// `robustctl --socket PATH status` works as well as `robustctl status --socket PATH`: options
/// given before the subcommand are moved after it.
func normalisedArguments(_ args: [String]) -> [String] {
    var leading: [String] = []
    var i = 0
    while i < args.count, args[i].hasPrefix("--"), args[i] != "--help" {
        leading.append(args[i])
        if args[i] == "--socket", i + 1 < args.count { leading.append(args[i + 1]); i += 1 }
        i += 1
    }
    guard !leading.isEmpty, i < args.count else { return args }
    return [args[i]] + leading + Array(args[(i + 1)...])
}

Robustctl.main(normalisedArguments(Array(CommandLine.arguments.dropFirst())))
