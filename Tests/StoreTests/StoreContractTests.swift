import Datasets
import Foundation
import RobustdTestSupport
import Testing
@testable import Store

enum Backend: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case sqlite, postgresql
    var testDescription: String { rawValue }
}

/// A store of one backend in a fresh place, reopenable (a restart), removed at the end.
final class StoreUnderTest {
    let backend: Backend
    private let location: String
    private let cleanup: () -> Void

    init?(_ backend: Backend) throws {
        self.backend = backend
        switch backend {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            location = dir.appendingPathComponent("db.sqlite").path
            cleanup = { try? FileManager.default.removeItem(at: dir) }
        case .postgresql:
            guard TestPostgres.url != nil else {
                if TestPostgres.required { Issue.record("CI runs the PostgreSQL store tests: ROBUSTD_TEST_POSTGRES must be set") }
                return nil
            }
            let (url, drop) = try TestPostgres.freshDatabase()
            location = url
            cleanup = drop
        }
    }

    deinit { cleanup() }

    var url: String { location }

    func open(replica: String = "r1", lease: Double = 15) throws -> Store {
        switch backend {
        case .sqlite: return try SQLiteStore(path: location)
        case .postgresql: return try PostgresStore(url: location, replica: replica, leaseSeconds: lease)
        }
    }
}

func examplePlan(_ n: Int, labels: Int = 3, split: Split = .train, prefix: String = "text") -> ImportPlan {
    let records = (0..<n).map { RawRecord(line: $0 + 2, fields: ["text": "\(prefix) \($0)", "label": "l\($0 % labels)"]) }
    return try! DatasetImport.plan(records, options: ImportOptions(defaultSplit: split)).get()
}

func report(_ key: String?, text: String = "t", at: Double = 100, kind: String = "complaint", label: String = "a",
            vector: [Float] = []) -> FeedbackRecord {
    FeedbackRecord(idempotencyKey: key, inputID: nil, text: text, kind: kind, cost: 2.5, correctLabel: label, predictedLabel: "b",
                   version: 1, at: at, recordedAt: at + 1, vector: vector)
}

@Suite("The Store contract, on both backends")
struct StoreContractTests {
    @Test("datasets: import, list, read back; a taken name is a conflict unless replaced", arguments: Backend.allCases)
    func datasets(backend: Backend) throws {
        guard let place = try StoreUnderTest(backend) else { return }
        let store = try place.open()
        let info = try store.importDataset(name: "b77", plan: examplePlan(2500), source: "test", replace: false)
        #expect(info.rows == 2500 && info.labels == 3 && info.train == 2500 && info.validation == 0)
        #expect(try store.datasets().map(\.name) == ["b77"])
        let back = try store.examples(dataset: info.id, split: .train)
        #expect(back.count == 2500)
        #expect(back[0] == Example(text: "text 0", label: "l0", split: .train, line: 2))
        #expect(back[2499].line == 2501)
        #expect(try store.examples(dataset: info.id, split: .test).isEmpty)
        #expect(throws: StoreError.self) { try store.importDataset(name: "b77", plan: examplePlan(4), source: "t", replace: false) }
        #expect(try store.dataset(named: "b77")?.rows == 2500)
        let replaced = try store.importDataset(name: "b77", plan: examplePlan(4, split: .validation), source: "t", replace: true)
        #expect(replaced.rows == 4 && replaced.validation == 4)
        #expect(try store.examples(dataset: replaced.id, split: nil).count == 4)
        #expect(try store.dataset(named: "nope") == nil)
        // Text that needs care on the wire: quotes, backslashes, newlines, non-ASCII.
        let odd = try DatasetImport.plan([RawRecord(line: 2, fields: ["text": "it's \"odd\" \\ é\n€ 💳", "label": "x'y"])],
                                         options: ImportOptions()).get()
        let o = try store.importDataset(name: "odd", plan: odd, source: "s", replace: false)
        #expect(try store.examples(dataset: o.id, split: nil).first?.text == "it's \"odd\" \\ é\n€ 💳")
    }

    @Test("versions: a version left writing by a crash is failed at the next open and cannot be activated", arguments: Backend.allCases)
    func versions(backend: Backend) throws {
        guard let place = try StoreUnderTest(backend) else { return }
        do {
            let s = try place.open()
            #expect(try s.activeVersion() == nil)
            let a = try s.createVersion(parent: nil, method: "fit", dataset: "d")
            try s.finishVersion(id: a, status: .ready, report: "{\"x\":1}", activate: true)
            let b = try s.createVersion(parent: a, method: "lora", dataset: "d")
            #expect(b == a + 1)
            #expect(try s.versions().map(\.status) == [.ready, .writing])
        }
        let s = try place.open()
        let versions = try s.versions()
        #expect(versions.map(\.status) == [.ready, .failed])
        #expect(versions[1].parent == versions[0].id && versions[0].report == "{\"x\":1}" && versions[1].method == "lora")
        #expect(try s.activeVersion() == versions[0].id)
        #expect(throws: StoreError.self) { try s.setActive(versions[1].id) }
        #expect(throws: StoreError.self) { try s.setActive(99) }
        #expect(try s.activeVersion() == versions[0].id)
        let c = try s.createVersion(parent: 1, method: "head", dataset: nil)
        try s.finishVersion(id: c, status: .candidate, report: "{}", activate: false)
        try s.setActive(c)
        #expect(try s.activeVersion() == c)
    }

    @Test("feedback: stored once per idempotency key, filtered, paged newest first, vectors kept", arguments: Backend.allCases)
    func feedback(backend: Backend) throws {
        guard let place = try StoreUnderTest(backend) else { return }
        let s = try place.open()
        let (first, dup1) = try s.recordFeedback(report("k1", text: "one", at: 10, vector: [0.5, -1.25, 3]))
        #expect(!dup1 && first.id > 0)
        let (again, dup2) = try s.recordFeedback(report("k1", text: "other text", at: 11))
        #expect(dup2 && again.id == first.id && again.text == "one")
        for i in 0..<5 { _ = try s.recordFeedback(report(nil, text: "n\(i)", at: 20 + Double(i), kind: i % 2 == 0 ? "correction" : "complaint")) }
        let all = try s.feedback(FeedbackFilter(limit: 100, withVectors: true))
        #expect(all.count == 6)
        #expect(all.map(\.at) == [24, 23, 22, 21, 20, 10])
        #expect(all.last?.vector == [0.5, -1.25, 3])
        #expect(try s.feedback(FeedbackFilter()).last?.vector == [])
        #expect(try s.feedback(FeedbackFilter(kind: "correction")).count == 3)
        #expect(try s.feedback(FeedbackFilter(since: 21, until: 24)).map(\.at) == [23, 22, 21])
        let page1 = try s.feedback(FeedbackFilter(limit: 4))
        let page2 = try s.feedback(FeedbackFilter(limit: 4, after: (page1.last!.at, page1.last!.id)))
        #expect(page1.count == 4 && page2.count == 2 && Set(page1.map(\.id)).isDisjoint(with: page2.map(\.id)))
        #expect(try s.feedback(FeedbackFilter(label: "a")).count == 6)
        #expect(try s.feedback(FeedbackFilter(idempotencyKey: "k1")).first?.cost == 2.5)
    }

    @Test("traffic counters add up; jobs are stored and interrupted by a restart", arguments: Backend.allCases)
    func trafficAndJobs(backend: Backend) throws {
        guard let place = try StoreUnderTest(backend) else { return }
        do {
            let s = try place.open()
            try s.addTraffic([TrafficCount(hour: 10, version: 1, label: "a", count: 3, expectedErrors: 0.5),
                              TrafficCount(hour: 10, version: 1, label: "b", count: 1, expectedErrors: 0.25)])
            try s.addTraffic([TrafficCount(hour: 10, version: 1, label: "a", count: 2, expectedErrors: 0.25),
                              TrafficCount(hour: 12, version: 2, label: "a", count: 5, expectedErrors: 1)])
            let t = try s.traffic(since: nil)
            #expect(t["a"] == TrafficTotal(count: 10, expectedErrors: 1.75) && t["b"]?.count == 1)
            #expect(try s.traffic(since: 11 * 3600)["a"]?.count == 5)
            let j = try s.createJob(params: "{\"method\":\"lora\"}", state: .queued)
            try s.updateJob(JobRecord(id: j, createdAt: 0, startedAt: 4, state: .running, params: "{}"))
            let done = try s.createJob(params: "{}", state: .queued)
            try s.updateJob(JobRecord(id: done, createdAt: 0, startedAt: 5, finishedAt: 6, state: .succeeded, params: "{}",
                                      progress: "{\"step\":3}", result: "{\"ok\":true}", version: nil))
            #expect(throws: StoreError.self) { try s.updateJob(JobRecord(id: 999, createdAt: 0, state: .running, params: "{}")) }
            let jobs = try s.jobs()
            #expect(jobs.map(\.id) == [j, done] && jobs[0].state == .running && jobs[1].progress == "{\"step\":3}" && jobs[1].startedAt == 5)
        }
        let s = try place.open()
        let jobs = try s.jobs()
        #expect(jobs.map(\.state) == [.interrupted, .succeeded])
        #expect(jobs[0].error?.contains("stopped") == true)
    }

    @Test("metric history: snapshots kept for their window, by name", arguments: Backend.allCases)
    func metricHistory(backend: Backend) throws {
        guard let place = try StoreUnderTest(backend) else { return }
        let s = try place.open()
        try s.addMetricSnapshot(at: 100, values: ["a": 1, "b": 2, "nan": .nan], keepSeconds: 50)
        try s.addMetricSnapshot(at: 120, values: ["a": 3], keepSeconds: 50)
        try s.addMetricSnapshot(at: 160, values: ["a": 4], keepSeconds: 50)
        #expect(try s.metricHistory(name: "a", since: 0, until: 1000).map(\.value) == [3, 4])
        #expect(try s.metricNames() == ["a"])
    }

    @Test("rollouts: one runs at a time; reviews and disagreements", arguments: Backend.allCases)
    func rollouts(backend: Backend) throws {
        guard let place = try StoreUnderTest(backend) else { return }
        let s = try place.open()
        let v1 = try s.createVersion(parent: nil, method: "fit", dataset: nil)
        try s.finishVersion(id: v1, status: .ready, report: "{}", activate: true)
        let v2 = try s.createVersion(parent: v1, method: "lora", dataset: nil)
        try s.finishVersion(id: v2, status: .candidate, report: "{}", activate: false)
        let r = try s.createRollout(candidate: v2, control: v1, stage: "shadow", state: { "{\"id\":\($0)}" }, at: 5)
        #expect(r.state == "{\"id\":\(r.id)}" && r.isRunning)
        #expect(throws: StoreError.self) { try s.createRollout(candidate: v2, control: v1, stage: "shadow", state: { _ in "{}" }, at: 6) }
        try s.addDisagreements([
            DisagreementRecord(rollout: r.id, text: "x", controlLabel: "a", candidateLabel: "b", controlConfidence: 0.6,
                               candidateConfidence: 0.7, expectedCost: 3, requested: 1, at: 7),
            DisagreementRecord(rollout: r.id, text: "y", controlLabel: "a", candidateLabel: "c", controlConfidence: 0.6,
                               candidateConfidence: 0.7, expectedCost: 5, at: 7),
        ])
        try s.addDisagreements([DisagreementRecord(rollout: r.id, text: "x", controlLabel: "a", candidateLabel: "b", controlConfidence: 0.6,
                                                   candidateConfidence: 0.7, expectedCost: 3, requested: 2, at: 8)])
        let d = try s.disagreements(rollout: r.id, labelled: nil, since: nil, requestedOnly: false, limit: 10, after: nil)
        #expect(d.map(\.text) == ["y", "x"] && d[1].seen == 2 && d[1].requested == 3)
        #expect(try s.disagreements(rollout: r.id, labelled: nil, since: nil, requestedOnly: true, limit: 10, after: nil).map(\.text) == ["x"])
        #expect(try s.disagreements(rollout: r.id, labelled: nil, since: nil, requestedOnly: false, limit: 10, after: (5, d[0].id)).map(\.text) == ["x"])
        #expect(try s.labelDisagreements(rollout: r.id, text: "y", label: "c", source: "feedback", at: 9) == 1)
        #expect(try s.disagreement(id: d[0].id)?.labelSource == "feedback")
        try s.updateRollout(id: r.id, stage: "canary", state: "{\"s\":2}", at: 10, review: (d[1].id, "b", 3))
        let x = try s.disagreement(id: d[1].id)
        #expect(x?.label == "b" && x?.labelSource == "review" && x?.counted == 3 && x?.requested == 0)
        #expect(throws: StoreError.self) { try s.updateRollout(id: r.id, stage: "canary", state: "{}", at: 11, review: (d[1].id, "b", 1)) }
        #expect(try s.rollouts().first?.stage == "canary")
        #expect(try s.disagreements(rollout: r.id, labelled: true, since: nil, requestedOnly: false, limit: 10, after: nil).map(\.text) == ["x"])
        try s.updateRollout(id: r.id, stage: "promoted", state: "{}", at: 12, review: nil)
        let r2 = try s.createRollout(candidate: v2, control: v1, stage: "shadow", state: { _ in "{}" }, at: 13)
        #expect(r2.id == r.id + 1)
        #expect(throws: StoreError.self) { try s.updateRollout(id: 99, stage: "canary", state: "{}", at: 14, review: nil) }
    }
}

@Suite("SQLite specifics")
struct SQLiteSpecificTests {
    @Test("a file store is in WAL mode; the schema version is recorded; a newer one is refused, not altered")
    func walAndSchema() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("db.sqlite").path
        do {
            let s = try SQLiteStore(path: path)
            #expect(try s.db.pragma("journal_mode") == "wal")
            #expect(try s.db.pragma("user_version") == "\(SQLiteStore.schemaVersion)")
            try s.db.exec("PRAGMA user_version = 99")
        }
        #expect(throws: StoreError.self) { try SQLiteStore(path: path) }
        #expect(try SQLiteDatabase(path: path).pragma("user_version") == "99")
    }
}

@Suite("SHA-256")
struct SHA256Tests {
    @Test("the standard's vectors, block boundaries, and sha256sum on a random megabyte")
    func vectors() throws {
        #expect(SHA256.hex([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for n in [55, 56, 63, 64, 65, 1 << 20] {
            var rng = SystemRandomNumberGenerator()
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let path = dir.appendingPathComponent("f\(n)").path
            FileManager.default.createFile(atPath: path, contents: Data(bytes))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
            p.arguments = [path]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            p.waitUntilExit()
            let line = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(line.hasPrefix(SHA256.hex(bytes) + " "), "length \(n)")
        }
    }
}
