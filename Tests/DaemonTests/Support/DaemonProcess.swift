import Foundation
import JSON
import JSONRPC
import RobustdClient
import Testing

/// Where the built executables are: `ROBUSTD_BIN_DIR`, or the package's `.build/debug`.
enum Binaries {
    static var dir: URL {
        if let d = ProcessInfo.processInfo.environment["ROBUSTD_BIN_DIR"] { return URL(fileURLWithPath: d) }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug")
    }
    static var robustd: URL { dir.appendingPathComponent("robustd") }
    static var robustctl: URL { dir.appendingPathComponent("robustctl") }
    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }
}

/// A private temporary folder, removed on deinit.
final class TempDir {
    let url: URL
    init() {
        url = URL(fileURLWithPath: "/tmp").appendingPathComponent("rbd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    }
    var path: String { url.path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// A real `robustd --socket` process for a test.
final class DaemonProcess {
    let process = Process()
    let dir = TempDir()
    let socketPath: String
    let stderrPath: String

    /// - Parameter waitReady: wait until it answers `daemon/ping` (else return once it runs).
    init(extraArgs: [String] = [], debugMethods: Bool = true, socketPath: String? = nil, waitReady: Bool = true) throws {
        self.socketPath = socketPath ?? dir.path + "/robustd.sock"
        stderrPath = dir.path + "/stderr.log"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = Binaries.robustd
        let stateArgs = extraArgs.contains("--state-dir") ? [] : ["--state-dir", dir.path + "/state"]
        process.arguments = ["--socket", self.socketPath, "--log-level", "debug"] + stateArgs + (debugMethods ? ["--enable-debug-methods"] : []) + extraArgs
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        guard waitReady else { return }
        let deadline = Date().addingTimeInterval(10)
        // Ready once it answers (a stale file from an earlier daemon may already be there).
        while (try? RPCClient(path: self.socketPath).call("daemon/ping", timeout: 5)) == nil {
            guard process.isRunning, Date() < deadline else { throw ClientError("robustd did not start: \(stderr)") }
            usleep(10_000)
        }
    }

    var pid: Int32 { process.processIdentifier }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// A client whose every result is validated against its schema in schemas/openrpc.json.
    func client() throws -> RPCClient { try RPCClient.validating(path: socketPath) }

    /// Resident set size of the daemon, in KiB.
    func rssKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
        }
        return 0
    }

    /// Sends SIGTERM and waits; returns the exit status.
    @discardableResult
    func terminate(timeout: Double = 15) -> Int32 {
        if process.isRunning { kill(pid, SIGTERM) }
        return wait(timeout: timeout)
    }

    func wait(timeout: Double = 15) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit(); return -9 }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(pid, SIGKILL); process.waitUntilExit() } }
}

/// A real `robustd --stdio` process, spoken to with Content-Length framing as an editor would.
final class StdioDaemon {
    let process = Process()
    let stdin = Foundation.Pipe()
    let stdout = Foundation.Pipe()
    let dir = TempDir()
    private var decoder = FrameDecoder(style: .contentLength)
    /// Every byte the daemon wrote to stdout, to check that it was protocol only.
    private(set) var stdoutBytes: [UInt8] = []

    init(extraArgs: [String] = []) throws {
        process.executableURL = Binaries.robustd
        process.arguments = ["--stdio", "--enable-debug-methods", "--log-level", "debug", "--state-dir", dir.path + "/state"] + extraArgs
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    func send(_ message: Message) { sendRaw(FramingStyle.contentLength.frame(message.bytes)) }
    func sendRaw(_ bytes: [UInt8]) { stdin.fileHandleForWriting.write(Data(bytes)) }
    func closeInput() { try? stdin.fileHandleForWriting.close() }

    /// Sends a request and returns the whole response; a result is validated against its schema.
    func request(_ id: Int64, _ method: String, _ params: JSONValue? = nil) -> JSONValue? {
        send(.request(id: .int(id), method: method, params: params))
        while let m = receive() {
            if m["id"] == .int(id) {
                if let r = m["result"] { SchemaValidator.shared.expectValid(r, method: method) }
                return m
            }
        }
        return nil
    }

    /// The next message, or nil at EOF or after `timeout` seconds.
    func receive(timeout: Double = 10) -> JSONValue? {
        let fd = stdout.fileHandleForReading.fileDescriptor
        while true {
            if let f = decoder.next() {
                guard case .message(let body) = f, let v = try? JSONParser.parse(body) else { return nil }
                return v
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(timeout * 1000)) > 0 else { return nil }
            var buf = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &buf, buf.count)
            if n <= 0 { return nil }
            stdoutBytes += buf[0..<n]
            decoder.feed(Array(buf[0..<n]))
        }
    }

    func wait(timeout: Double = 10) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        return process.isRunning ? nil : process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
}

extension RPCClient {
    static func validating(path: String) throws -> RPCClient {
        let c = try RPCClient(path: path)
        c.onResult = { method, value in SchemaValidator.shared.expectValid(value, method: method) }
        return c
    }
}

/// Runs a command and returns (status, stdout, stderr).
func run(_ exe: URL, _ args: [String], stdin: String? = nil, env: [String: String]? = nil) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = exe
    p.arguments = args
    if let env { p.environment = env }
    let out = Foundation.Pipe(), err = Foundation.Pipe(), inp = Foundation.Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = inp
    try p.run()
    if let stdin { inp.fileHandleForWriting.write(Data(stdin.utf8)) }
    try? inp.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}
