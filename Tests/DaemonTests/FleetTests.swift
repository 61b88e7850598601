import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Store
import Testing

/// Real robustd replicas on a real PostgreSQL (docs/fleet.md).
@Suite("Fleet: replicas on one PostgreSQL store", .serialized)
struct FleetTests {
    /// Skips (or, under CI, fails) when no test server is configured.
    static func database() throws -> (url: String, drop: () -> Void)? {
        guard TestPostgres.url != nil else {
            if TestPostgres.required { Issue.record("CI runs the fleet tests: ROBUSTD_TEST_POSTGRES must be set") }
            return nil
        }
        return try TestPostgres.freshDatabase()
    }

    static func replica(_ name: String, store: String, model: String, extra: [String] = []) throws -> DaemonProcess {
        try DaemonProcess(extraArgs: ["--model", model, "--store", store, "--replica", name] + extra)
    }

    /// Polls `body` until it is true or `seconds` pass; returns the seconds it took (nil: never).
    static func within(_ seconds: Double, _ body: () throws -> Bool) rethrows -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if try body() { return Date().timeIntervalSince(start) }
            usleep(20_000)
        }
        return nil
    }

    static func servedVersion(_ c: RPCClient, _ text: String = "my card is late") throws -> Int? {
        guard case .success(let r) = try c.call(Score.self, .init(inputs: [.init(text: text)])) else { return nil }
        return r.version
    }

    @Test("three replicas: a version fitted on one is served by all; feedback through one is seen by the others; activation on any moves all; daemon/fleet lists them; a name in use is refused; a replica killed and restarted catches up")
    func threeReplicas() throws {
        guard let db = try Self.database() else { return }
        defer { db.drop() }
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        var replicas = try (0..<3).map { try Self.replica("r\($0)", store: db.url, model: model.path) }
        var clients = try replicas.map { try $0.client() }

        // No version yet anywhere.
        #expect(try clients[1].call(Score.self, .init(inputs: [.init(text: "x")])).failureCode == -32021)
        _ = try clients[0].call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        // The dataset is shared: another replica lists it and can fit from it.
        #expect(try clients[2].call(DatasetList.self).get().datasets.first?.name == "tiny")
        let fit = try clients[0].call(ModelFit.self, VersionTests.fitParams(), timeout: 120).get()
        #expect(fit.version == 1 && fit.active)
        for i in 1...2 {
            let took = try Self.within(10) { try Self.servedVersion(clients[i]) == 1 }
            #expect(took != nil, "replica r\(i) never served version 1: \(replicas[i].stderr)")
        }
        // r1 and r2 fetched version 1's files from the store into their own state folders.
        #expect(replicas[1].stderr.contains("version activated by the fleet"))

        // Feedback through r1: stored once fleet-wide, seen by r2's listing and r0's regions.
        let report = FeedbackReport.Params(text: "my card is late", kind: .complaint, correctLabel: "card_what", idempotencyKey: "fleet-1")
        let first = try clients[1].call(FeedbackReport.self, report).get()
        let again = try clients[2].call(FeedbackReport.self, report).get()
        #expect(first.id == again.id && again.duplicate == true)
        let listed = try clients[2].call(FeedbackList.self, .init()).get().feedback
        #expect(listed.count == 1 && listed.first?.idempotencyKey == "fleet-1")
        let regions = try clients[0].call(RiskRegions.self, .init()).get().regions
        #expect(regions.contains { $0.label == "card_late" || $0.label == "card_what" }, "\(regions.map(\.id))")

        // A second version fitted on r2 (not active), activated through r1: all three move.
        let second = try clients[2].call(ModelFit.self, .init(dataset: "tiny", lambdas: [0.1]), timeout: 120).get()
        #expect(second.version == 2 && !second.active)
        _ = try clients[1].call(ModelActivate.self, .init(version: 2)).get()
        for i in [0, 2] {
            let took = try Self.within(10) { try Self.servedVersion(clients[i]) == 2 }
            #expect(took != nil, "replica r\(i) never served version 2: \(replicas[i].stderr)")
        }
        #expect(try Self.servedVersion(clients[1]) == 2)

        // A fine-tune started on r0 (claimed by whichever replica), followed from r2, its
        // candidate promoted through r1: all three serve it.
        let job = try clients[0].call(FineTuneStart.self, .init(regions: .all, method: .lora, layers: 1, rank: 2, epochs: 2, autoPromote: false)).get()
        var finished: FineTuneJob? = nil
        _ = try Self.within(60) {
            finished = try clients[2].call(FineTuneStatus.self, .init(job: job.id)).get()
            return finished.map { ![.scheduled, .queued, .running].contains($0.state) } ?? false
        }
        #expect(finished?.state == .succeeded, "\(finished?.error ?? "")")
        let candidate = try #require(finished?.version)
        _ = try clients[1].call(ModelActivate.self, .init(version: candidate)).get()
        for i in 0..<3 {
            let took = try Self.within(10) { try Self.servedVersion(clients[i]) == candidate }
            #expect(took != nil, "replica r\(i) never served the fine-tuned version \(candidate): \(replicas[i].stderr)")
        }
        _ = try clients[1].call(ModelActivate.self, .init(version: 2)).get()
        for i in 0..<3 { #expect(try Self.within(10) { try Self.servedVersion(clients[i]) == 2 } != nil) }

        // daemon/fleet from any replica: all three alive, on version 2 (after a heartbeat).
        let fleetOK = try Self.within(6) {
            let f = try clients[0].call(DaemonFleet.self).get()
            return f.activeVersion == 2 && f.replicas.count == 3 && f.replicas.allSatisfy { $0.alive && $0.activeVersion == 2 }
        }
        #expect(fleetOK != nil, "\(String(describing: try? clients[0].call(DaemonFleet.self).get().replicas.map { ($0.name, $0.alive, $0.activeVersion) }))")
        let store = try clients[2].call(DaemonStatus.self).get().store
        #expect(store.backend.rawValue == "postgresql" && store.replica == "r2" && store.healthy)

        // A second replica named r1 while r1 runs: refused at start, with the reason.
        let twin = try DaemonProcess(extraArgs: ["--model", model.path, "--store", db.url, "--replica", "r1"], waitReady: false)
        #expect(twin.wait(timeout: 20) != 0)
        #expect(twin.stderr.contains("another running replica is named 'r1'"), "\(twin.stderr)")

        // r2's notification channel cut (as a network blip would) while r1 activates version 1:
        // r2 catches up from the pointer (on reconnecting, or at its next heartbeat).
        let admin = try PostgresConnection(url: db.url, applicationName: "test-admin")
        try admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'robustd-listener' AND datname = current_database()")
        _ = try clients[1].call(ModelActivate.self, .init(version: 1)).get()
        #expect(try Self.within(10) { try Self.servedVersion(clients[2]) == 1 } != nil, "\(replicas[2].stderr)")
        _ = try clients[1].call(ModelActivate.self, .init(version: 2)).get()
        for i in 0..<3 { #expect(try Self.within(10) { try Self.servedVersion(clients[i]) == 2 } != nil) }

        // kill -9 r2; a new r2 (same name, new state folder) starts at once and serves version 2.
        kill(replicas[2].pid, SIGKILL)
        _ = replicas[2].wait(timeout: 10)
        replicas[2] = try Self.replica("r2", store: db.url, model: model.path)
        clients[2] = try replicas[2].client()
        #expect(try Self.within(10) { try Self.servedVersion(clients[2]) == 2 } != nil, "\(replicas[2].stderr)")
        for r in replicas { #expect(r.terminate() == 0) }
    }

    @Test("one fine-tune at a time in the fleet: started on any replica, claimed by one, followed and cancelled from another; a replica killed mid-job: its lease expires and another marks the job interrupted")
    func fleetJobs() throws {
        guard let db = try Self.database() else { return }
        defer { db.drop() }
        let config = TempDir()
        let configPath = config.path + "/robustd.toml"
        try "[store]\nlease_seconds = 3\n".write(toFile: configPath, atomically: true, encoding: .utf8)
        // The reference model, not the tiny one: the tiny model's job took under 3 s on a fast
        // CPU and sometimes finished before the cancel reached it (a CI flake).
        var replicas = try (0..<2).map { try Self.replica("j\($0)", store: db.url, model: Paths.referenceModel, extra: ["--config", configPath]) }
        let clients = try replicas.map { try $0.client() }
        // Thirty long sentences (too few for early stopping): a job that runs for a minute or more.
        let records: [JSONValue] = (0..<30).map { i -> JSONValue in
            let (text, label): (String, String) = [("my card is late", "card_late"), ("the card ?", "card_what"), ("a b c", "abc")][i % 3]
            return ["text": .string(text + String(repeating: " a", count: i / 3) + String(repeating: " b c", count: 40)), "label": .string(label)]
        }
        _ = try clients[0].call(DatasetImportMethod.self, .init(name: "tiny", records: records)).get()
        _ = try clients[0].call(ModelFit.self, VersionTests.fitParams(), timeout: 120).get()
        #expect(try Self.within(10) { try Self.servedVersion(clients[1]) == 1 } != nil)

        // Long enough (many seconds) to be watched and cancelled: noisy copies and a consistency term.
        var long = FineTuneStart.Params(regions: .all, method: .topLayers, layers: 2, epochs: 100, batchSize: 1, autoPromote: false)
        long.noisyCopies = 8; long.consistency = 1; long.adversarialEpsilon = 0.05
        let a = try clients[0].call(FineTuneStart.self, long).get().id
        // Wait until some replica runs it.
        func state(_ c: RPCClient, _ id: Int) throws -> FineTuneJob { try c.call(FineTuneStatus.self, .init(job: id)).get() }
        var runner = -1
        _ = try Self.within(20) {
            for i in 0..<2 where try state(clients[i], a).state == .running && replicas[i].stderr.contains("fine-tune job claimed") {
                runner = i
            }
            return runner >= 0
        }
        #expect(runner >= 0, "no replica claimed job \(a)")
        guard runner >= 0 else { return }
        let other = 1 - runner
        // A second job, started on the other replica, waits: one job at a time in the fleet.
        let b = try clients[other].call(FineTuneStart.self, long).get().id
        usleep(1_500_000)
        #expect(try state(clients[runner], a).state == .running)
        #expect(try state(clients[other], b).state == .queued)
        #expect(try state(clients[runner], b).state == .queued)
        // The other replica follows job a's progress from the shared table.
        #expect(try Self.within(10) { try state(clients[other], a).progress.step != nil } != nil)
        // Cancelled from the replica that does not run it: answered once the job has stopped.
        let cancelled = try clients[other].call(FineTuneCancel.self, .init(job: a), timeout: 30).get()
        #expect(cancelled.state == .cancelled, "\(cancelled.state.rawValue)")
        #expect(try state(clients[runner], a).state == .cancelled)
        // Job b is claimed next (by either); kill -9 its replica mid-job.
        var bRunner = -1
        _ = try Self.within(20) {
            for i in 0..<2 where try state(clients[i], b).state == .running {
                let claims = replicas[i].stderr.components(separatedBy: "fine-tune job claimed").count - 1
                if claims >= (i == runner ? 2 : 1) { bRunner = i }
            }
            guard bRunner >= 0 else { return false }
            return try state(clients[bRunner], b).progress.step != nil
        }
        #expect(bRunner >= 0, "job \(b) never ran")
        guard bRunner >= 0 else { return }
        kill(replicas[bRunner].pid, SIGKILL)
        _ = replicas[bRunner].wait(timeout: 10)
        let survivor = clients[1 - bRunner]
        let took = try Self.within(20) { try state(survivor, b).state == .interrupted }
        #expect(took != nil, "job \(b) was not marked interrupted: \(replicas[1 - bRunner].stderr)")
        #expect(try state(survivor, b).error?.contains("lease") == true)
        #expect(try survivor.call(ModelVersions.self, .init()).get().versions.count == 1)
        replicas.removeAll()
    }

    @Test("a rollout across replicas: one drives it, another follows (same sticky canary routing), pools what its arms served and the reports made through it into the driver's tests, refuses operator changes with the driver's name, and drops the candidate when the rollout ends")
    func fleetRollout() throws {
        guard let db = try Self.database() else { return }
        defer { db.drop() }
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let replicas = try (0..<2).map { try Self.replica("o\($0)", store: db.url, model: model.path) }
        let (driver, follower) = (try replicas[0].client(), try replicas[1].client())
        _ = try driver.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try driver.call(ModelFit.self, VersionTests.fitParams(), timeout: 120).get()
        _ = try driver.call(ModelFit.self, .init(dataset: "tiny", lambdas: [30], activate: false), timeout: 120).get()
        #expect(try Self.within(10) { try Self.servedVersion(follower) == 1 } != nil)

        let started = try RolloutDaemonTests.start(driver, settings: RolloutDaemonTests.settings).get()
        let id = started.id
        #expect(try Self.within(10) { replicas[1].stderr.contains("following the fleet's rollout") } != nil, "\(replicas[1].stderr)")
        // Operator changes go to the driver: the follower names it.
        let refused = try follower.call(RolloutAdvance.self, .init(reason: "from the follower"))
        #expect(refused.failureCode == -32031 && refused.error?.message.contains("replica o0") == true, "\(String(describing: refused.error))")
        _ = try driver.call(RolloutAdvance.self, .init(reason: "to canary")).get()
        #expect(try Self.within(10) { try follower.call(RolloutStatus.self, .init()).get().stage == .canary } != nil)
        // The follower's own traffic: half answered by the candidate (the same routing as the driver's).
        var served: [Int: Int] = [:]
        var candidateInput: String?
        for (i, t) in RolloutDaemonTests.texts.enumerated() {
            let v = try follower.call(Score.self, .init(inputs: [.init(id: "f\(i)", text: t)])).get().version
            served[v, default: 0] += 1
            if v == 2 && candidateInput == nil { candidateInput = "f\(i)" }
        }
        #expect((served[1] ?? 0) > 0 && (served[2] ?? 0) > 0, "\(served)")
        let same = try RolloutDaemonTests.score(driver, [RolloutDaemonTests.texts[0]]).version
        let there = try RolloutDaemonTests.score(follower, [RolloutDaemonTests.texts[0]]).version
        #expect(same == there, "an input gets the same arm on every replica")
        // A failure report through the follower about an answer the candidate gave there.
        let input = try #require(candidateInput)
        _ = try follower.call(FeedbackReport.self, .init(inputId: input, kind: .complaint, correctLabel: "card_what")).get()
        // The driver's tests count the follower's requests and its report.
        let total = RolloutDaemonTests.texts.count
        let pooled = try Self.within(15) {
            let arms = try driver.call(RolloutStatus.self, .init()).get().arms
            let n = (arms["control"]?.requests ?? 0) + (arms["candidate"]?.requests ?? 0)
            return n >= total && (arms["candidate"]?.failureReports ?? 0) >= 1
        }
        #expect(pooled != nil, "\(String(describing: try? driver.call(RolloutStatus.self, .init()).get().arms.mapValues { ($0.requests, $0.failureReports) }))")
        // Rolled back on the driver: the follower drops the candidate and answers with version 1 again.
        _ = try driver.call(RolloutAbort.self, .init(reason: "enough")).get()
        #expect(try Self.within(10) { try follower.call(RolloutList.self).get().rollouts.first?.stage == .rolledBack } != nil)
        let back = try Self.within(10) {
            try RolloutDaemonTests.texts.prefix(20).allSatisfy { t in try RolloutDaemonTests.score(follower, [t]).version == 1 }
        }
        #expect(back != nil)
        #expect(id > 0)
        for r in replicas { #expect(r.terminate() == 0) }
    }

    @Test("PostgreSQL stopped and restarted during traffic: scoring never fails; reports answer 'store unavailable' and are kept once retried; health is shown")
    func storeOutage() throws {
        guard TestPostgres.url != nil || TestPostgres.required else { return }
        let cluster = try PrivateCluster(packageRoot: Binaries.packageRoot.path)
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let d = try Self.replica("solo", store: cluster.url, model: model.path)
        let c = try d.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 120).get()

        // Traffic on its own connection for the whole trial.
        let stop = Flag(), failures = Counter(), scored = Counter()
        let path = d.socketPath
        let traffic = Thread {
            guard let t = try? RPCClient(path: path) else { failures.add(); return }
            while !stop.isSet {
                if case .success = (try? t.call(Score.self, .init(inputs: [.init(text: "my card is late")]))) ?? .failure(.internalError("gone")) {
                    scored.add()
                } else { failures.add() }
            }
        }
        traffic.start()

        var acknowledged: Set<String> = []
        var unavailable = 0
        /// Reports a numbered failure case until it is acknowledged (as a client should).
        func reportUntilAcknowledged(_ i: Int, deadline: Double) throws {
            let key = "outage-\(i)"
            let until = Date().addingTimeInterval(deadline)
            while Date() < until {
                switch try c.call(FeedbackReport.self, .init(text: "my card is late \(i)", kind: .complaint, correctLabel: "card_what",
                                                             idempotencyKey: key)) {
                case .success: acknowledged.insert(key); return
                case .failure(let e):
                    #expect(e.code.rawValue == -32041, "\(e)")
                    #expect(e.message.contains("retry"))
                    unavailable += 1
                    usleep(100_000)
                }
            }
        }
        for i in 0..<5 { try reportUntilAcknowledged(i, deadline: 5) }
        try cluster.stop()
        // While it is away: writes are refused clearly, status and Prometheus say so.
        if case .failure(let e) = try c.call(FeedbackReport.self, .init(text: "while away", kind: .complaint, idempotencyKey: "away")) {
            #expect(e.code.rawValue == -32041)
        } else { Issue.record("a report was acknowledged while PostgreSQL was stopped") }
        let store = try c.call(DaemonStatus.self).get().store
        #expect(!store.healthy, "\(store.lastError ?? "")")
        let prom = try c.call(MetricsPrometheus.self).get().text
        #expect(prom.contains("robustd_store_up 0"))
        usleep(500_000)
        try cluster.start()
        for i in 5..<10 { try reportUntilAcknowledged(i, deadline: 20) }
        stop.set()
        while traffic.isExecuting { usleep(10_000) }

        #expect(failures.value == 0, "score failed \(failures.value) times during the outage")
        #expect(scored.value > 0)
        #expect(acknowledged.count == 10)
        let keys = try c.call(FeedbackList.self, .init(limit: 100)).get().feedback.compactMap(\.idempotencyKey).filter { $0.hasPrefix("outage-") }
        #expect(Set(keys) == acknowledged && keys.count == acknowledged.count, "\(keys)")
        #expect(try c.call(DaemonStatus.self).get().store.healthy)
        #expect(d.terminate() == 0)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
    func add() { lock.lock(); n += 1; lock.unlock() }
}

extension Result where Failure == RPCError {
    var failureCode: Int? { if case .failure(let e) = self { return e.code.rawValue } else { return nil } }
}
