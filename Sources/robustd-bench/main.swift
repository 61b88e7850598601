import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// Monotonic nanoseconds.
func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let i = min(sorted.count - 1, Int((p / 100) * Double(sorted.count - 1) + 0.5))
    return Double(sorted[i]) / 1000  // µs
}

struct Row {
    var transport: String
    var clients: Int
    var requests: Int
    var seconds: Double
    var latenciesNs: [UInt64]
    var perSecond: Double { Double(requests) / seconds }
}

func printTable(_ rows: [Row]) {
    print("transport  clients   requests   req/s      p50 µs   p99 µs   p99.9 µs")
    for r in rows {
        let s = r.latenciesNs.sorted()
        print(String(format: "%-9@  %7d  %9d  %9.0f  %7.1f  %7.1f  %9.1f", r.transport as NSString, r.clients, r.requests,
                     r.perSecond, percentile(s, 50), percentile(s, 99), percentile(s, 99.9)))
    }
}

/// A daemon process for the benchmark.
final class Daemon {
    let process = Process()
    let dir: String
    let socket: String

    init(binary: URL) throws {
        dir = "/tmp/robustd-bench-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        socket = dir + "/robustd.sock"
        process.executableURL = binary
        process.arguments = ["--socket", socket, "--log-level", "warning", "--state-dir", dir + "/state"]
        process.standardError = FileHandle.standardError
        try process.run()
        let deadline = Date().addingTimeInterval(10)
        while (try? RPCClient(path: socket)) == nil {
            guard Date() < deadline else { throw ClientError("robustd did not start") }
            usleep(10_000)
        }
    }

    func stop() {
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Sequential round trips of `daemon/ping` on one connection for `seconds`.
func pingLoop(path: String, seconds: Double, warmup: Int = 200) throws -> [UInt64] {
    let c = try RPCClient(path: path)
    for _ in 0..<warmup { _ = try c.call(Ping.self) }
    var lat: [UInt64] = []
    lat.reserveCapacity(200_000)
    let end = nowNs() + UInt64(seconds * 1e9)
    var t = nowNs()
    while t < end {
        guard case .success = try c.call(Ping.self) else { throw ClientError("ping failed") }
        let t2 = nowNs()
        lat.append(t2 - t)
        t = t2
    }
    return lat
}

struct RPCBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc",
        abstract: "Round trips of a trivial method (daemon/ping) over the socket with 1 and 16 clients, and over stdio.")

    @Option(help: "Seconds per scenario.")
    var seconds: Double = 5

    @Option(help: "The robustd binary (default: beside this one).")
    var robustd: String?

    @Option(help: "Client counts to run on the socket, comma-separated.")
    var clients: String = "1,16"

    func run() throws {
        let binary = robustd.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        print("robustd-bench rpc: \(binary.path), \(seconds) s per row, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        var rows: [Row] = []
        let daemon = try Daemon(binary: binary)
        for n in clients.split(separator: ",").compactMap({ Int($0) }) {
            final class Results: @unchecked Sendable { let lock = NSLock(); var all: [[UInt64]] = []; var error: Error? }
            let results = Results()
            let group = DispatchGroup()
            let path = daemon.socket
            let secs = seconds
            for _ in 0..<n {
                group.enter()
                let t = Thread {
                    defer { group.leave() }
                    do {
                        let lat = try pingLoop(path: path, seconds: secs)
                        results.lock.lock(); results.all.append(lat); results.lock.unlock()
                    } catch {
                        results.lock.lock(); results.error = error; results.lock.unlock()
                    }
                }
                t.stackSize = 1 << 20
                t.start()
            }
            group.wait()
            if let e = results.error { throw e }
            let lat = results.all.flatMap { $0 }
            rows.append(Row(transport: "socket", clients: n, requests: lat.count, seconds: seconds, latenciesNs: lat))
        }
        daemon.stop()
        rows.append(try stdioRow())
        printTable(rows)
    }

    func stdioRow() throws -> Row {
        let binary = robustd.map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let p = Process()
        p.executableURL = binary
        p.arguments = ["--stdio", "--log-level", "warning", "--state-dir", "/tmp/robustd-bench-stdio-\(getpid())"]
        let inp = Foundation.Pipe(), out = Foundation.Pipe()
        p.standardInput = inp
        p.standardOutput = out
        try p.run()
        let wfd = inp.fileHandleForWriting.fileDescriptor
        let rfd = out.fileHandleForReading.fileDescriptor
        var decoder = FrameDecoder(style: .contentLength)
        var buf = [UInt8](repeating: 0, count: 65536)
        var id: Int64 = 0
        func roundTrip(_ method: String) throws {
            id += 1
            let frame = FramingStyle.contentLength.frame(Message.request(id: .int(id), method: method, params: nil).bytes)
            _ = frame.withUnsafeBytes { write(wfd, $0.baseAddress, $0.count) }
            while true {
                if case .message? = decoder.next() { return }
                let n = read(rfd, &buf, buf.count)
                guard n > 0 else { throw ClientError("stdio closed") }
                decoder.feed(Array(buf[0..<n]))
            }
        }
        try roundTrip("initialize")
        for _ in 0..<200 { try roundTrip("daemon/ping") }
        var lat: [UInt64] = []
        let end = nowNs() + UInt64(seconds * 1e9)
        var t = nowNs()
        while t < end {
            try roundTrip("daemon/ping")
            let t2 = nowNs()
            lat.append(t2 - t)
            t = t2
        }
        try roundTrip("shutdown")
        try? inp.fileHandleForWriting.close()
        p.waitUntilExit()
        try? FileManager.default.removeItem(atPath: "/tmp/robustd-bench-stdio-\(getpid())")
        return Row(transport: "stdio", clients: 1, requests: lat.count, seconds: seconds, latenciesNs: lat)
    }
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robustd-bench",
        abstract: "Benchmarks of robustd's real paths. Build with -c release.",
        subcommands: [RPCBench.self, CrashBench.self, SoakBench.self, LimitsBench.self, ServicesBench.self, EncoderBench.self, GEMMBench.self, RiskBench.self, LocalFineTuneBench.self, ServingDuringFineTuneBench.self, SubscribersBench.self, FineTuneBench.self, RolloutBench.self, ShadowBench.self, RobustBench.self, OOSBench.self, FleetBench.self, MemoryBench.self, TrainBench.self, HeadBench.self])
}

Bench.main()
