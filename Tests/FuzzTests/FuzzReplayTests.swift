import Foundation
import FuzzTargets
import JSON
import JSONRPC
import RobustdAPI
import Scoring
import Testing

/// The fuzz targets outside libFuzzer (docs/reliability.md): every committed seed and every
/// kept regression replays through its target, then a fixed number of seeded mutations of the
/// seeds (byte flips, inserts, deletions, splices) — a small, reproducible fuzz in the tests;
/// the coverage-guided runs are scripts/fuzz's.
@Suite("fuzz targets")
struct FuzzReplayTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static func files(_ dir: String) -> [[UInt8]] {
        let path = "\(root)/\(dir)"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
        return names.compactMap { FileManager.default.contents(atPath: "\(path)/\($0)").map { [UInt8]($0) } }
    }

    @Test("every target has a seed corpus, and seeds and regressions replay without a crash", arguments: FuzzTargets.all.keys.sorted())
    func replay(_ target: String) {
        let seeds = Self.files("Fuzz/corpus/\(target)")
        #expect(seeds.count >= 3, "Fuzz/corpus/\(target) holds \(seeds.count) seeds")
        let run = FuzzTargets.all[target]!
        for input in seeds + Self.files("Fuzz/regressions/\(target)") { run(input) }
    }

    @Test("seeded mutations of the seeds run through each target", arguments: FuzzTargets.all.keys.sorted())
    func mutations(_ target: String) {
        let seeds = Self.files("Fuzz/corpus/\(target)")
        guard !seeds.isEmpty else { Issue.record("no seeds for \(target)"); return }
        let run = FuzzTargets.all[target]!
        var rng = SeededRandom(seed: 0x5EED ^ UInt64(target.utf8.reduce(0) { $0 &* 31 &+ Int($1) }.magnitude))
        for _ in 0..<400 {
            var b = seeds[Int(rng.next() % UInt64(seeds.count))]
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = b.isEmpty ? 0 : Int(rng.next() % UInt64(b.count))
                switch rng.next() % 5 {
                case 0 where !b.isEmpty: b[at] ^= UInt8(1 << (rng.next() % 8))
                case 1: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                case 2 where !b.isEmpty: b.removeSubrange(at..<min(b.count, at + 1 + Int(rng.next() % 8)))
                case 3:
                    let other = seeds[Int(rng.next() % UInt64(seeds.count))]
                    b.insert(contentsOf: other.prefix(Int(rng.next() % 64)), at: at)
                default: b.insert(contentsOf: [0x22, 0x5C, 0x7B, 0x5B, 0x30, 0x0A, 0x0D, 0x00, 0xFF].shuffled(using: &rng).prefix(2), at: at)
                }
            }
            run(b)
        }
    }

    @Test("daemon/status's own JSON writer gives what its Encodable form gives, optionals present or not")
    func directStatus() throws {
        for (socket, since, error) in [(String?.none, Double?.none, String?.none), ("/run/a \"b\"\n.sock", 1.5e9, "connection refused\t(é)")] {
            let r = DaemonStatus.Result(version: "0.1", pid: 42, uptimeSeconds: 12.25, socketPath: socket,
                                        connections: .init(open: 3, stdio: 1, socket: 2, accepted: 9, refused: 1, dropped: 0),
                                        requests: .init(served: 1_000_000_000_000, inFlight: 1, failed: -1, cancelled: 7),
                                        queues: .init(computePending: 0, computeRunning: 2, outputBytes: 65536, embedPending: 5),
                                        computeThreads: 2, shuttingDown: false,
                                        store: StoreStatus(backend: .postgresql, location: "postgresql://u:***@db/x", replica: "r-1", healthy: error == nil,
                                                           unhealthySince: since, lastError: error))
            let direct = try JSONParser.parse(try JSONBytesEncoder().bytes(r))
            let tree = try JSONValueEncoder().encode(r)
            #expect(FuzzTargets.same(direct, tree), "direct \(JSONWriter.string(direct)) vs Codable \(JSONWriter.string(tree))")
        }
    }

    @Test("the method index and schemas/openrpc.json name the same methods")
    func methodIndex() throws {
        let doc = try OpenRPCSchema.document()
        let inSchema = Set((doc["methods"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue })
        let requests = Set(MethodIndex.requests.map { $0.name })
        let notifications = Set(MethodIndex.notifications.map { $0.name })
        #expect(inSchema.count >= 40)
        #expect(inSchema.subtracting(requests).subtracting(notifications).isEmpty, "in the schema, not in MethodIndex: \(inSchema.subtracting(requests).subtracting(notifications).sorted())")
        #expect(requests.subtracting(inSchema).isEmpty, "in MethodIndex, not in the schema: \(requests.subtracting(inSchema).sorted())")
    }
}

