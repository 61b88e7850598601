import ArgumentParser
import Encoder
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Tensor

/// A raw newline-delimited JSON-RPC client: writes a request line, reads one reply line. The
/// same cheap client for robustd and the reference server, so that the figures compare servers.
final class LineClient {
    let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 1 << 20)
    private var pending: [UInt8] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            let b = Array(path.utf8)
            p.copyBytes(from: b.prefix(p.count - 1))
        }
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { close(fd); throw ClientError("connect \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// One round trip; returns the reply's length in bytes.
    @discardableResult
    func call(_ line: [UInt8]) throws -> Int {
        var off = 0
        while off < line.count {
            let n = line[off...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw ClientError("write failed") }
            off += n
        }
        while true {
            if let nl = pending.firstIndex(of: 0x0a) {
                let len = nl
                pending.removeSubrange(0...nl)
                return len
            }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw ClientError("the server closed the connection") }
            pending.append(contentsOf: buffer[0..<n])
        }
    }
}

struct ServicesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "services",
        abstract: "The RPC hot path side by side with a C libuv server that answers without parsing: ping and status with 1 and 16 clients, status with 1 vs 5,000 connections, embed over the socket (JSON, base64) vs in process.")

    @Option(help: "Seconds per round-trip row.")
    var seconds: Double = 3

    @Option(help: "The robustd binary (default: beside this one).")
    var robustd: String?

    @Option(help: "The model folder (embed rows; skipped when missing).")
    var model: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/robustd/models/all-MiniLM-L6-v2").path

    @Option(help: "Banking77 test.csv (default: shared/ beside the checkout).")
    var data: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/banking77/test.csv").path

    @Option(help: "Idle connections for the status-cost row.")
    var connections: Int = 5000

    @Option(help: "Extra arguments for robustd, space-separated (e.g. \"--compute-threads 1\").")
    var daemonArgs: String = ""

    @Option(help: "The encoder's products, fp32 or int8: the daemon's --precision and the in-process encoder's, for the embed rows.")
    var precision = "fp32"

    @Flag(help: "Only the embed rows.")
    var embedOnly = false

    @Flag(help: "Only the round-trip rows.")
    var roundTripsOnly = false

    func run() throws {
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let binary = robustd.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let hasModel = FileManager.default.fileExists(atPath: model + "/config.json")
        let dir = "/tmp/robustd-bench-services-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let daemonSocket = dir + "/robustd.sock", refSocket = dir + "/ref.sock"
        let daemon = Process()
        daemon.executableURL = binary
        daemon.arguments = ["--socket", daemonSocket, "--log-level", "warning", "--state-dir", dir + "/state"] + (hasModel ? ["--model", model] : [])
            + ["--precision", precision] + daemonArgs.split(separator: " ").map(String.init)
        guard Precision(rawValue: precision) != nil else { throw ValidationError("--precision must be fp32 or int8") }
        try daemon.run()
        defer { kill(daemon.processIdentifier, SIGTERM); daemon.waitUntilExit() }
        try waitFor(daemonSocket)
        let cpu = CPUInfo.read()
        print("robustd-bench services: \(binary.path) \(daemonArgs); \(cpu.model), \(cpu.cores) cores; \(seconds) s per round-trip row")
        if embedOnly {
            guard hasModel else { throw ClientError("no model at \(model)") }
            try embedRows(socket: daemonSocket)
            return
        }

        // The reference server answers with replies as long as robustd's, so the client's work is the same.
        let ping = Array(#"{"jsonrpc":"2.0","id":1,"method":"daemon/ping"}"#.utf8) + [0x0a]
        let status = Array(#"{"jsonrpc":"2.0","id":1,"method":"daemon/status"}"#.utf8) + [0x0a]
        let probe = try LineClient(path: daemonSocket)
        let statusLength = try probe.call(status), pingLength = try probe.call(ping)
        let reference = try compileReference(dir: dir)
        func startReference(replyLength: Int) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: reference)
            let head = #"{"jsonrpc":"2.0","id":1"#.utf8.count
            let pad = max(0, replyLength - head - #","result":{"x":""}}"#.utf8.count)
            p.arguments = [refSocket, #","result":{"x":""# + String(repeating: "a", count: pad) + #""}}"#]
            try p.run()
            try waitFor(refSocket)
            return p
        }

        print("")
        print("round trips                         clients    req/s      p50 µs   vs reference")
        for (name, request, length) in [("daemon/ping", ping, pingLength), ("daemon/status", status, statusLength)] {
            let ref = try startReference(replyLength: length)
            for clients in [1, 16] {
                let r = try roundTrips(path: refSocket, line: request, clients: clients)
                let d = try roundTrips(path: daemonSocket, line: request, clients: clients)
                print(String(format: "%-22@ reference      %3d  %9.0f  %7.1f", name as NSString, clients, r.rate, r.p50))
                print(String(format: "%-22@ robustd        %3d  %9.0f  %7.1f   %.2f×", name as NSString, clients, d.rate, d.p50, d.rate / r.rate))
            }
            kill(ref.processIdentifier, SIGTERM)
            ref.waitUntilExit()
        }

        if roundTripsOnly { return }
        // daemon/status with many idle connections: its cost must not grow with them.
        print("")
        let one = try statusCost(path: daemonSocket, calls: 5000)
        var idle: [LineClient] = []
        for _ in 1..<connections { idle.append(try LineClient(path: daemonSocket)) }
        _ = try LineClient(path: daemonSocket).call(ping)  // all accepted
        let many = try statusCost(path: daemonSocket, calls: 5000)
        print(String(format: "daemon/status, 1 connection:        %7.1f µs a call (median of 5 × 1,000)", one))
        print(String(format: "daemon/status, %5d connections:   %7.1f µs a call (%.2f×)", connections, many, many / one))
        idle.removeAll()

        guard hasModel else { print("\nembed rows skipped: no model at \(model) (scripts/fetch-model)"); return }
        try embedRows(socket: daemonSocket)
    }

    func waitFor(_ path: String) throws {
        let deadline = Date().addingTimeInterval(30)
        while (try? LineClient(path: path)) == nil {
            guard Date() < deadline else { throw ClientError("\(path) did not come up") }
            usleep(10_000)
        }
    }

    func compileReference(dir: String) throws -> String {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Benchmarks/uv-reference-server.c").path
        let out = dir + "/uv-reference-server"
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        cc.arguments = ["cc", "-O2", "-o", out, source, "-luv"]
        try cc.run()
        cc.waitUntilExit()
        guard cc.terminationStatus == 0 else { throw ClientError("cc could not build \(source)") }
        return out
    }

    struct Rate { var rate: Double; var p50: Double }

    func roundTrips(path: String, line: [UInt8], clients: Int) throws -> Rate {
        final class Results: @unchecked Sendable { let lock = NSLock(); var lat: [UInt64] = []; var count = 0; var error: Error? }
        let results = Results()
        let group = DispatchGroup()
        let secs = seconds
        for _ in 0..<clients {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let c = try LineClient(path: path)
                    for _ in 0..<200 { try c.call(line) }
                    var lat: [UInt64] = []
                    lat.reserveCapacity(100_000)
                    let end = nowNs() + UInt64(secs * 1e9)
                    var t = nowNs()
                    while t < end {
                        try c.call(line)
                        let t2 = nowNs()
                        lat.append(t2 - t)
                        t = t2
                    }
                    results.lock.lock(); results.lat += lat; results.count += lat.count; results.lock.unlock()
                } catch { results.lock.lock(); results.error = error; results.lock.unlock() }
            }.start()
        }
        group.wait()
        if let e = results.error { throw e }
        return Rate(rate: Double(results.count) / secs, p50: percentile(results.lat.sorted(), 50))
    }

    /// Median µs per daemon/status round trip over 5 runs of `calls / 5`.
    func statusCost(path: String, calls: Int) throws -> Double {
        let c = try LineClient(path: path)
        let status = Array(#"{"jsonrpc":"2.0","id":1,"method":"daemon/status"}"#.utf8) + [0x0a]
        for _ in 0..<200 { try c.call(status) }
        var runs: [Double] = []
        for _ in 0..<5 {
            let t = nowNs()
            for _ in 0..<(calls / 5) { try c.call(status) }
            runs.append(Double(nowNs() - t) / 1000 / Double(calls / 5))
        }
        return runs.sorted()[2]
    }

    func embedRows(socket: String) throws {
        let texts = parseCSV(try String(contentsOfFile: data, encoding: .utf8)).dropFirst().filter { $0.count >= 2 }.map { $0[0] }
        let enc = try SentenceEncoder.load(folder: model, precision: Precision(rawValue: precision) ?? .fp32)
        let engine = BatchEngine(encoder: enc)
        let lengths = enc.encode(texts).map(\.ids.count)
        let order = texts.indices.sorted { lengths[$0] < lengths[$1] }
        var batches: [[String]] = []
        var start = 0
        while start < order.count {
            batches.append(order[start..<min(start + 64, order.count)].map { texts[$0] })
            start += 64
        }
        let probe = EmbedProbe(engine: engine, encoder: enc, batches: batches, client: try RPCClient(path: socket), raw: try LineClient(path: socket))
        // Rounds of every row one after the other; each row's ratio to the in-process run of
        // its own round, so that the machine's drift between minutes cancels; medians of 5.
        _ = probe.inProcess()
        _ = try probe.overSocket(.float)
        var ip: [Double] = [], js: [Double] = [], b64: [Double] = [], jsRaw: [Double] = [], b64Raw: [Double] = []
        for _ in 0..<5 {
            let t = probe.inProcess()
            ip.append(t)
            js.append(t / (try probe.overSocket(.float)))
            b64.append(t / (try probe.overSocket(.base64)))
            jsRaw.append(t / (try probe.overSocketRaw("float")))
            b64Raw.append(t / (try probe.overSocketRaw("base64")))
        }
        var picks: [String] = []
        for k in 0..<200 { picks.append(texts[(k * 7919) % texts.count]) }
        // Single queries alternate in process / socket, query by query.
        let (singleIn, singleRaw, singleTyped) = try probe.singles(picks)
        let pIn = percentile(singleIn.sorted(), 50) / 1000, pRaw = percentile(singleRaw.sorted(), 50) / 1000
        let pTyped = percentile(singleTyped.sorted(), 50) / 1000
        let med = { (v: [Double]) in v.sorted()[v.count / 2] }
        let rate = Double(texts.count) / med(ip)
        print("")
        print("embed (\(precision)), Banking77 test (\(texts.count) sentences), batch 64, length-sorted; ratios to in process, median of 5 rounds")
        print(String(format: "  in process                                   %7.1f sentences/s", rate))
        print(String(format: "  socket, float (JSON), typed client decoding  %.3f×", med(js)))
        print(String(format: "  socket, base64, typed client decoding        %.3f×", med(b64)))
        print(String(format: "  socket, float (JSON), reply read as bytes    %.3f×", med(jsRaw)))
        print(String(format: "  socket, base64, reply read as bytes          %.3f×", med(b64Raw)))
        print(String(format: "single query p50, 200 texts, alternating with pauses: in process %.2f ms; socket, reply read as bytes %.2f ms (+%.2f ms); socket, typed client %.2f ms (+%.2f ms)",
                     pIn, pRaw, pRaw - pIn, pTyped, pTyped - pIn))
    }
}

/// Sentences per second from the seconds of three runs (their median).
func median3(_ seconds: [Double], _ sentences: Double) -> Double {
    sentences / seconds.sorted()[seconds.count / 2]
}

/// The embed rows' work: in process, and through the socket (typed client, or raw bytes).
final class EmbedProbe {
    let engine: BatchEngine
    let encoder: SentenceEncoder
    let batches: [[String]]
    let client: RPCClient
    let raw: LineClient
    let out: Tensor
    let one: Tensor

    init(engine: BatchEngine, encoder: SentenceEncoder, batches: [[String]], client: RPCClient, raw: LineClient) {
        self.engine = engine
        self.encoder = encoder
        self.batches = batches
        self.client = client
        self.raw = raw
        out = Tensor(shape: [64, encoder.hiddenSize])
        one = Tensor(shape: [1, encoder.hiddenSize])
    }

    /// Seconds for every batch, in process.
    func inProcess() -> Double {
        let t = nowNs()
        for b in batches { engine.embed(encoder.encode(b).map(\.ids), into: out) }
        return Double(nowNs() - t) / 1e9
    }

    /// Seconds for every batch over the socket, decoded by the typed client.
    func overSocket(_ encoding: Embed.Encoding) throws -> Double {
        let t = nowNs()
        for b in batches {
            let r = try client.call(Embed.self, Embed.Params(texts: b, encoding: encoding), timeout: 60).get()
            guard r.vectors.floats?.count == b.count else { throw ClientError("embed answered the wrong number of vectors") }
        }
        return Double(nowNs() - t) / 1e9
    }

    /// Seconds for every batch over the socket, the replies read as bytes (not parsed).
    func overSocketRaw(_ encoding: String) throws -> Double {
        var lines: [[UInt8]] = []
        for b in batches {
            var texts: [JSONValue] = []
            for x in b { texts.append(.string(x)) }
            var params: [String: JSONValue] = [:]
            params["texts"] = .array(texts)
            params["encoding"] = .string(encoding)
            var message: [String: JSONValue] = [:]
            message["jsonrpc"] = .string("2.0")
            message["id"] = .int(1)
            message["method"] = .string("embed")
            message["params"] = .object(params)
            lines.append(JSONWriter.bytes(.object(message)) + [0x0a])
        }
        let t = nowNs()
        for line in lines { try raw.call(line) }
        return Double(nowNs() - t) / 1e9
    }

    /// Single queries: each text in process, then over the socket read as bytes, then typed.
    func singles(_ picks: [String]) throws -> ([UInt64], [UInt64], [UInt64]) {
        var a: [UInt64] = [], b: [UInt64] = [], c: [UInt64] = []
        for text in picks {
            var t = nowNs()
            engine.embed(encoder.encode([text]).map(\.ids), into: one)
            a.append(nowNs() - t)
            // OpenBLAS's threads spin for a while after a product: let them sleep before the
            // other process computes (and after it, before this one does).
            usleep(150_000)
            var params: [String: JSONValue] = [:]
            params["texts"] = .array([.string(text)])
            var message: [String: JSONValue] = [:]
            message["jsonrpc"] = .string("2.0")
            message["id"] = .int(1)
            message["method"] = .string("embed")
            message["params"] = .object(params)
            let line = JSONWriter.bytes(.object(message)) + [0x0a]
            t = nowNs()
            try raw.call(line)
            b.append(nowNs() - t)
            t = nowNs()
            _ = try client.call(Embed.self, Embed.Params(texts: [text]), timeout: 60).get()
            c.append(nowNs() - t)
            usleep(150_000)
        }
        return (a, b, c)
    }
}
