import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Scoring
import Testing

/// A small file system of its own (tmpfs), mounted by the test; needs root (CI runs as root).
final class SmallFileSystem {
    let path: String
    private(set) var mounted = false

    init?(megabytes: Int) {
        path = "/tmp/rbd-fs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        guard getuid() == 0, Self.run(["/bin/mount", "-t", "tmpfs", "-o", "size=\(megabytes)m,mode=0700", "tmpfs", path]) else {
            try? FileManager.default.removeItem(atPath: path)
            return nil
        }
        mounted = true
    }

    /// Fills what is left with one file; returns its path.
    func fill() -> String {
        let filler = path + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        let chunk = [UInt8](repeating: 0x55, count: 64 << 10)
        var size = chunk.count
        while size >= 1 {
            if chunk.withUnsafeBytes({ write(fd, $0.baseAddress, size) }) < 0 { size /= 2 }
        }
        close(fd)
        return filler
    }

    static func run(_ argv: [String]) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    deinit {
        if mounted { _ = Self.run(["/bin/umount", "-l", path]) }
        try? FileManager.default.removeItem(atPath: path)
    }
}

@Suite("Resource exhaustion")
struct ResourceTests {
    static let canMount = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/mount")

    @Test("the state folder on a full file system: writes answer a clear error, nothing acknowledged is lost, scoring goes on, and writes work again once space returns",
          .enabled(if: canMount, "needs root to mount a small tmpfs"))
    func fullDisk() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        guard let fs = SmallFileSystem(megabytes: 8) else { Issue.record("mount failed"); return }
        let state = fs.path + "/state"
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state])
        defer { d.terminate() }
        let c = try d.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        for i in 0..<5 {
            _ = try c.call(FeedbackReport.self, .init(text: "my card is late", kind: .complaint, correctLabel: "card_what", idempotencyKey: "before-\(i)")).get()
        }

        let filler = fs.fill()
        // A report: refused with the reason, not stored, and the daemon stays up.
        var refused: RPCError?
        for i in 0..<50 {
            if case .failure(let e) = try c.call(FeedbackReport.self, .init(text: "a b c", kind: .complaint, correctLabel: "abc", idempotencyKey: "full-\(i)")) {
                refused = e
                break
            }
        }
        let e = try #require(refused, "reports on a full file system were all accepted")
        #expect(e.code == RPCErrorCode(-32041), "\(e.code) \(e.message)")
        #expect(e.message.contains("full") || e.message.contains("space"), "\(e.message)")
        // Scoring does not need the disk.
        for _ in 0..<20 { #expect((try? c.call(Score.self, .init(inputs: [.init(text: "my card is late")])).get()) != nil) }
        // A fit on a full disk fails and leaves no version listed as usable.
        switch try c.call(ModelFit.self, .init(dataset: "tiny", lambdas: [0.1], activate: false), timeout: 60) {
        case .success(let v): Issue.record("a fit on a full file system succeeded: version \(v.version)")
        case .failure(let e): #expect(e.message.contains("full") || e.message.contains("space"), "\(e.code) \(e.message)")
        }
        let store = try c.call(DaemonStatus.self).get().store
        #expect(!store.healthy, "\(store.lastError ?? "")")

        // Space returns: writes work again, and everything acknowledged is there once.
        try FileManager.default.removeItem(atPath: filler)
        var recovered = false
        for i in 0..<100 where !recovered {
            if case .success = try c.call(FeedbackReport.self, .init(text: "a b c", kind: .complaint, correctLabel: "abc", idempotencyKey: "after-\(i)")) {
                recovered = true
            } else { usleep(50_000) }
        }
        #expect(recovered)
        let keys = try c.call(FeedbackList.self, .init(limit: 1000)).get().feedback.compactMap(\.idempotencyKey)
        #expect((0..<5).allSatisfy { i in keys.filter { $0 == "before-\(i)" }.count == 1 })
        for v in try c.call(ModelVersions.self, .init()).get().versions where v.id != 1 {
            #expect(v.status == .failed, "a version written on a full disk: \(v.id) \(v.status.rawValue)")
        }
        #expect(try c.call(DaemonStatus.self).get().store.healthy)
        _ = try c.call(ModelFit.self, .init(dataset: "tiny", lambdas: [0.1], activate: false), timeout: 60).get()
    }

    /// A daemon with the tiny model and version 1, stopped; returns the state folder's path.
    static func fittedState(_ state: TempDir, _ model: TempFolder) throws {
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        let c = try d.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        #expect(d.terminate() == 0)
    }

    @Test("a damaged database page is found at start and named; the daemon does not serve from it")
    func damagedDatabase() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        try Self.fittedState(state, model)
        let db = state.path + "/robustd.sqlite"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: db)[.size] as? Int)
        #expect(size >= 8 * 4096, "the database is \(size) bytes")
        // Overwrite one page in the middle (the examples' table) with noise.
        let fd = open(db, O_WRONLY)
        var rng = SeededRandom(seed: 7)
        let noise = (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        _ = noise.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t((size / 4096 / 2) * 4096)) }
        close(fd)
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path], waitReady: false)
        let status = d.wait(timeout: 20)
        #expect(status != 0, "a daemon on a damaged database kept running")
        #expect(d.stderr.contains("damaged") || d.stderr.contains("malformed"), "\(d.stderr.suffix(600))")
        #expect(d.stderr.contains("robustd.sqlite"))
    }

    @Test("a truncated, altered or missing version file at start is refused with a clear message, never served", arguments: ["truncated", "altered", "missing"])
    func damagedVersionFile(_ damage: String) throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        try Self.fittedState(state, model)
        let weights = state.path + "/versions/1/weights.safetensors"
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: weights)))
        switch damage {
        case "truncated": bytes.removeLast(10)
        case "altered": bytes[bytes.count - 3] ^= 0x40
        default: break
        }
        if damage == "missing" { try FileManager.default.removeItem(atPath: weights) } else { try Data(bytes).write(to: URL(fileURLWithPath: weights)) }
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        defer { d.terminate() }
        let c = try d.client()
        guard case .failure(let e) = try c.call(Score.self, .init(inputs: [.init(text: "my card is late")])) else {
            Issue.record("a damaged version served")
            return
        }
        #expect(e.message.contains("The active version 1 cannot be served") && e.message.contains("weights.safetensors"), "\(e.message)")
        if damage == "altered" { #expect(e.message.contains("sha256"), "\(e.message)") }
        if damage == "missing" { #expect(e.message.contains("missing"), "\(e.message)") }
        #expect(d.stderr.contains("could not be loaded"))
        // A new version serves again.
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        #expect((try? c.call(Score.self, .init(inputs: [.init(text: "my card is late")])).get()) != nil)
    }
}

