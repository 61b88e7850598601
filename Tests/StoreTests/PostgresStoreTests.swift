import Datasets
import Foundation
import RobustdTestSupport
import Testing
@testable import Store

/// What only the shared store does: several replicas on one database at once.
@Suite("PostgreSQL store: replicas sharing one database")
struct PostgresStoreTests {
    @Test("a URL's password never shows: user info (an '@' in it too), key=value and query forms")
    func redaction() {
        #expect(PostgresConnection.redacted("postgresql://robustd:s3cret@db.internal:5432/robustd") == "postgresql://robustd:***@db.internal:5432/robustd")
        #expect(PostgresConnection.redacted("postgresql://robustd:p@ss@db/robustd") == "postgresql://robustd:***@db/robustd")
        #expect(!PostgresConnection.redacted("postgresql://robustd@db/robustd?password=s3cret&sslmode=require").contains("s3cret"))
        #expect(!PostgresConnection.redacted("host=db user=robustd password=s3cret dbname=robustd").contains("s3cret"))
        #expect(PostgresConnection.redacted("postgresql://robustd@/robustd?host=/tmp/pg") == "postgresql://robustd@/robustd?host=/tmp/pg")
    }

    /// Runs `body(i)` on `n` threads at once and waits for all.
    func concurrently(_ n: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for i in 0..<n {
            group.enter()
            Thread { body(i); group.leave() }.start()
        }
        group.wait()
    }

    final class Box<T>: @unchecked Sendable {
        let lock = NSLock()
        var value: T
        init(_ v: T) { value = v }
        func with<R>(_ f: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return f(&value) }
    }

    @Test("replicas starting together migrate once; a schema newer than the binary is refused at start, untouched")
    func migrations() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let url = place.url
        let errors = Box<[String]>([])
        concurrently(4) { i in
            do { _ = try PostgresStore(url: url, replica: "m\(i)") } catch { errors.with { $0.append("\(error)") } }
        }
        #expect(errors.value.isEmpty, "\(errors.value)")
        let s = try PostgresStore(url: url, replica: "check")
        #expect(try s.recordedSchemaVersion() == PostgresStore.schemaVersion)
        try s.db.query("UPDATE robustd_schema SET version = 99")
        do {
            _ = try PostgresStore(url: url, replica: "new")
            Issue.record("a newer schema was accepted")
        } catch {
            #expect(error.kind == .invalid && error.message.contains("newer"), "\(error)")
        }
        #expect(try s.recordedSchemaVersion() == 99)
    }

    @Test("a wrong URL, an unreachable server: a clear error at once")
    func badURL() throws {
        do {
            _ = try PostgresStore(url: "postgresql://robustd@/robustd?host=/nonexistent-robustd&connect_timeout=2", replica: "x")
            Issue.record("connected")
        } catch {
            #expect(error.kind == .unavailable && error.message.contains("cannot connect"), "\(error)")
        }
        do {
            _ = try PostgresStore(url: "postgresql://user:secret@/db?host=/nonexistent-robustd", replica: "x")
            Issue.record("connected")
        } catch {
            #expect(!error.message.contains("secret"), "the password leaked into the message: \(error)")
        }
        // A role the server does not know (bad credentials): the server's reason, at once.
        if let base = TestPostgres.url, let scheme = base.range(of: "://"), let at = base[scheme.upperBound...].firstIndex(of: "@") {
            let wrong = String(base[..<scheme.upperBound]) + "no_such_role" + String(base[at...])
            do {
                _ = try PostgresStore(url: wrong, replica: "x")
                Issue.record("connected as an unknown role")
            } catch {
                #expect(error.kind == .unavailable && error.message.contains("no_such_role"), "\(error)")
            }
        }
        // Only a robustd replica name is accepted.
        #expect(throws: StoreError.self) { try PostgresStore(url: "postgresql:///x?host=/nonexistent-robustd", replica: "") }
    }

    @Test("two running replicas with the same name: the second is refused; the name is free once the first is gone")
    func identity() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        var first: PostgresStore? = try PostgresStore(url: place.url, replica: "alpha")
        do {
            _ = try PostgresStore(url: place.url, replica: "alpha")
            Issue.record("two replicas named alpha")
        } catch {
            #expect(error.message.contains("alpha") && error.message.contains("--replica"), "\(error)")
        }
        #expect(first != nil)
        first = nil
        _ = try PostgresStore(url: place.url, replica: "alpha")
    }

    @Test("feedback keyed once fleet-wide and traffic deltas from several replicas at once: nothing lost, nothing doubled")
    func concurrentWrites() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let url = place.url
        let outcomes = Box<[Bool]>([])
        concurrently(3) { i in
            let s = try! PostgresStore(url: url, replica: "w\(i)")
            for k in 0..<40 {
                // Every replica is given the same 40 keys (a client retrying through the balancer).
                let (_, dup) = try! s.recordFeedback(report("key-\(k)", text: "r\(i) k\(k)", at: Double(k)))
                outcomes.with { $0.append(dup) }
                try! s.addTraffic([TrafficCount(hour: 1, version: 1, label: "a", count: 1, expectedErrors: 0.5)])
            }
        }
        let s = try PostgresStore(url: url, replica: "reader")
        let all = try s.feedback(FeedbackFilter(limit: 1000))
        #expect(all.count == 40)
        #expect(Set(all.compactMap(\.idempotencyKey)).count == 40)
        #expect(outcomes.value.filter { !$0 }.count == 40 && outcomes.value.count == 120)
        #expect(try s.traffic(since: nil)["a"] == TrafficTotal(count: 120, expectedErrors: 60))
    }

    @Test("a rollout started on two replicas at the same moment: exactly one runs")
    func oneRollout() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let url = place.url
        let s = try PostgresStore(url: url, replica: "setup")
        let v1 = try s.createVersion(parent: nil, method: "fit", dataset: nil)
        try s.finishVersion(id: v1, status: .ready, report: "{}", activate: true)
        let v2 = try s.createVersion(parent: v1, method: "lora", dataset: nil)
        try s.finishVersion(id: v2, status: .candidate, report: "{}", activate: false)
        let started = Box<Int>(0)
        concurrently(4) { i in
            let r = try! PostgresStore(url: url, replica: "ro\(i)")
            if (try? r.createRollout(candidate: v2, control: v1, stage: "shadow", state: { _ in "{}" }, at: 1)) != nil { started.with { $0 += 1 } }
        }
        #expect(started.value == 1)
        let running = try #require(try s.rollouts().first(where: \.isRunning))
        // One replica drives it: the others are told who; once its lease expires, one takes over.
        let driver = try #require(try s.driveRollout(id: running.id, now: Date().timeIntervalSince1970))
        #expect(driver.hasPrefix("ro"))
        #expect(try s.driveRollout(id: running.id, now: Date().timeIntervalSince1970 + 3600) == nil)
        #expect(try s.driveRollout(id: running.id, now: Date().timeIntervalSince1970) == nil)  // now it is this one's
    }

    @Test("version files: chunked, larger than a chunk, read back byte for byte with their sha256")
    func versionFiles() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let s = try PostgresStore(url: place.url, replica: "f")
        let v = try s.createVersion(parent: nil, method: "fit", dataset: nil)
        var rng = SystemRandomNumberGenerator()
        let big = (0..<(PostgresStore.chunkBytes * 2 + 12345)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let files = [VersionFile(path: "weights.safetensors", bytes: big, sha256: "abc"),
                     VersionFile(path: "adapter/adapter_config.json", bytes: Array("{}".utf8), sha256: "def"),
                     VersionFile(path: "empty", bytes: [], sha256: "e3b0")]
        try s.putVersionFiles(id: v, files: files)
        let back = try PostgresStore(url: place.url, replica: "g").versionFiles(id: v)
        #expect(back.map(\.path) == ["adapter/adapter_config.json", "empty", "weights.safetensors"])
        #expect(back.last?.bytes == big && back.last?.sha256 == "abc" && back[1].bytes.isEmpty)
        try s.putVersionFiles(id: v, files: [files[1]])
        #expect(try s.versionFiles(id: v).count == 1)
        #expect(try s.versionFiles(id: v + 1).isEmpty)
    }

    @Test("a replica that stops renewing its lease: another marks its running jobs interrupted; its own are left alone")
    func orphanedJobs() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        var a: PostgresStore? = try PostgresStore(url: place.url, replica: "a", leaseSeconds: 1)
        let b = try PostgresStore(url: place.url, replica: "b", leaseSeconds: 1)
        let ja = try a!.createJob(params: "{}", state: .running)
        let jb = try a!.createJob(params: "{}", state: .queued)
        let now = Date().timeIntervalSince1970
        #expect(try b.interruptOrphanedJobs(now: now).isEmpty)  // a's heartbeat is fresh
        a = nil  // a is gone (its heartbeat is no longer renewed)
        #expect(try b.interruptOrphanedJobs(now: now + 2) == [ja])
        let jobs = try b.jobs()
        // Its queued job stays in the fleet's queue for another replica to claim.
        #expect(jobs.first { $0.id == ja }?.state == .interrupted && jobs.first { $0.id == jb }?.state == .queued)
        #expect(jobs.first { $0.id == ja }?.error?.contains("replica a") == true)
        #expect(try b.claimNextJob(now: now + 3)?.id == jb)
    }

    @Test("jobs: claimed oldest first by one replica at a time, never two running in the fleet; cancel of a queued job at once, of a running one by request")
    func claims() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let url = place.url
        let setup = try PostgresStore(url: url, replica: "setup")
        let ids = try (0..<3).map { _ in try setup.createJob(params: "{}", state: .queued) }
        let claimed = Box<[String: Int]>([:])
        concurrently(4) { i in
            let s = try! PostgresStore(url: url, replica: "c\(i)")
            if let j = try! s.claimNextJob(now: 1) { claimed.with { $0["c\(i)"] = j.id } }
        }
        #expect(claimed.value.count == 1 && claimed.value.values.first == ids[0])
        let jobs = try setup.jobs()
        #expect(jobs.filter { $0.state == .running }.count == 1 && jobs[0].owner == claimed.value.keys.first)
        #expect(try setup.claimNextJob(now: 2) == nil)  // one runs
        #expect(try setup.requestJobCancel(id: ids[1], now: 3) == true)
        #expect(try setup.requestJobCancel(id: ids[0], now: 3) == false)
        let after = try setup.jobs()
        #expect(after[1].state == .cancelled && after[0].cancelRequested && after[0].state == .running)
        #expect(throws: StoreError.self) { try setup.requestJobCancel(id: 999, now: 3) }
        var done = after[0]
        done.state = .cancelled
        try setup.updateJob(done)
        #expect(try setup.claimNextJob(now: 4)?.id == ids[2])
    }

    @Test("activation and rollout changes are announced with NOTIFY at commit")
    func notifications() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let s = try PostgresStore(url: place.url, replica: "n")
        let listener = try PostgresConnection(url: place.url)
        try listener.query("LISTEN \(PostgresStore.activeChannel)")
        let v = try s.createVersion(parent: nil, method: "fit", dataset: nil)
        try s.finishVersion(id: v, status: .ready, report: "{}", activate: true)
        var got: [(channel: String, payload: String)] = []
        let deadline = Date().addingTimeInterval(5)
        while got.isEmpty && Date() < deadline {
            var p = pollfd(fd: listener.socket, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, 100)
            got += try listener.notifications()
        }
        #expect(got.map(\.channel) == [PostgresStore.activeChannel] && got.first?.payload == String(v))
    }

    @Test("the server goes away and comes back: calls fail fast with 'unavailable', then work again")
    func reconnect() throws {
        guard let place = try StoreUnderTest(.postgresql) else { return }
        let s = try PostgresStore(url: place.url, replica: "rc")
        _ = try s.recordFeedback(report("before"))
        // Kill this replica's backend, as a server restart or a network cut would.
        let admin = try PostgresConnection(url: place.url)
        try admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'robustd' AND pid <> pg_backend_pid() AND datname = current_database()")
        do {
            _ = try s.recordFeedback(report("during"))
        } catch {
            #expect(error.kind == .unavailable, "\(error)")
        }
        // The next call reconnects (and takes the replica's name again).
        let (r, _) = try s.recordFeedback(report("after"))
        #expect(r.id > 0)
        let keys = Set(try s.feedback(FeedbackFilter()).compactMap(\.idempotencyKey))
        #expect(keys.isSuperset(of: ["before", "after"]))
    }
}
