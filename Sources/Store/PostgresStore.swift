import Datasets
import Foundation

/// The shared store of a fleet: the same Store calls on PostgreSQL, through libpq, used
/// synchronously on the daemon's store thread as SQLite is (docs/fleet.md says why).
///
/// Shared by every replica: datasets, feedback (idempotency keys fleet-wide), traffic counters
/// (added with `ON CONFLICT … count + excluded.count`: no lost updates), jobs, the version
/// registry and the version files (chunked, with their sha256), the active pointer, rollouts.
/// Per replica: metric history rows (tagged with the replica's name) and the replica's row.
public final class PostgresStore: Store {
    public let db: PostgresConnection
    /// This replica's name: unique among running replicas (a session advisory lock holds it).
    public let replica: String
    /// How long a replica's heartbeat stays valid: past it, its running jobs are interrupted.
    public let leaseSeconds: Double

    /// Channels announced on commit.
    public static let activeChannel = "robustd_active"
    public static let rolloutChannel = "robustd_rollout"
    public static let jobChannel = "robustd_job"

    /// The key of the advisory lock migrations run under (any constant; "robustd" in ASCII).
    static let migrationLock: Int64 = 0x726f_6275_7374_64

    /// Opens the store: connects, migrates under the advisory lock, claims the replica name.
    /// - Throws: `.unavailable` when the server cannot be reached; `.invalid` for a server too
    ///   old, a schema newer than this binary, or a replica name another running replica holds.
    public init(url: String, replica: String, leaseSeconds: Double = 15) throws(StoreError) {
        guard !replica.isEmpty, replica.count <= 200 else { throw StoreError(.invalid, "the replica name must be 1–200 characters") }
        self.replica = replica
        self.leaseSeconds = leaseSeconds
        db = try PostgresConnection(url: url)
        try migrate()
        try claimIdentity(db)
        db.onReconnect = { [replica] c throws(StoreError) in
            // The session lock went with the old connection: take it again.
            let r = try c.query("SELECT pg_try_advisory_lock(hashtext('robustd-replica'), hashtext($1))", [.text(replica)])
            guard r.bool(0, 0) else { throw StoreError(.invalid, "after reconnecting, replica name '\(replica)' is held by another running replica") }
        }
        let now = Date().timeIntervalSince1970
        try db.transaction { () throws(StoreError) in
            // This replica's own leftovers: a version it was writing, a job it was running (never
            // restarted behind the operator's back). Queued jobs stay queued: the fleet's queue
            // is durable, and any replica may claim them.
            try db.query("UPDATE versions SET status = 'failed' WHERE status = 'writing' AND owner = $1", [.text(replica)])
            try db.query("""
                UPDATE finetune_jobs SET state = 'interrupted', finished_at = $1,
                    error = COALESCE(error, 'replica ' || owner || ' stopped while the job was running')
                WHERE state = 'running' AND owner = $2
                """, [.double(now), .text(replica)])
        }
        try heartbeat(ReplicaInfo(name: replica, host: ProcessInfo.processInfo.hostName, pid: Int(getpid()), startedAt: now,
                                  seenAt: now, activeVersion: nil, robustdVersion: ""))
    }

    private func claimIdentity(_ c: PostgresConnection) throws(StoreError) {
        let r = try c.query("SELECT pg_try_advisory_lock(hashtext('robustd-replica'), hashtext($1))", [.text(replica)])
        guard r.bool(0, 0) else {
            throw StoreError(.invalid, "another running replica is named '\(replica)': give each replica its own name (--replica)")
        }
    }

    // MARK: Datasets

    public func importDataset(name: String, plan: ImportPlan, source: String, replace: Bool) throws(StoreError) -> DatasetInfo {
        try db.transaction { () throws(StoreError) -> DatasetInfo in
            // Two replicas importing one name at once: the second waits, then sees the first.
            try db.query("SELECT pg_advisory_xact_lock(hashtext('robustd-dataset'), hashtext($1))", [.text(name)])
            if let existing = try dataset(named: name) {
                guard replace else {
                    throw StoreError(.conflict, "a dataset named '\(name)' exists (\(existing.rows) rows); pass replace: true to replace it")
                }
                try db.query("DELETE FROM datasets WHERE id = $1", [.int(existing.id)])
            }
            let id = try db.query("INSERT INTO datasets (name, source, created_at) VALUES ($1, $2, $3) RETURNING id",
                                  [.text(name), .text(source), .double(Date().timeIntervalSince1970)]).int(0, 0)
            // Many rows per statement: one round trip per 1,000 examples.
            var i = 0
            let examples = plan.examples
            while i < examples.count {
                let chunk = examples[i..<min(i + 1000, examples.count)]
                var sql = "INSERT INTO examples (dataset_id, text, label, split, line) VALUES "
                var args: [SQLValue] = [.int(Int64(id))]
                for (j, e) in chunk.enumerated() {
                    let b = 2 + j * 4
                    sql += (j == 0 ? "" : ",") + "($1, $\(b), $\(b + 1), $\(b + 2), $\(b + 3))"
                    args += [.text(e.text), .text(e.label), .text(e.split.rawValue), .int(Int64(e.line))]
                }
                try db.query(sql, args)
                i += chunk.count
            }
            return try dataset(named: name)!
        }
    }

    private static let listSQL = """
        SELECT d.id, d.name, d.source, d.created_at, COUNT(e.id), COUNT(DISTINCT e.label),
               COUNT(*) FILTER (WHERE e.split = 'train'), COUNT(*) FILTER (WHERE e.split = 'validation'),
               COUNT(*) FILTER (WHERE e.split = 'test')
        FROM datasets d LEFT JOIN examples e ON e.dataset_id = d.id
        """

    private func infos(_ r: PGRows) -> [DatasetInfo] {
        (0..<r.count).map { i in
            DatasetInfo(id: Int64(r.int(i, 0)), name: r.text(i, 1) ?? "", rows: r.int(i, 4), labels: r.int(i, 5), train: r.int(i, 6),
                        validation: r.int(i, 7), test: r.int(i, 8), source: r.text(i, 2) ?? "", createdAt: r.double(i, 3))
        }
    }

    public func datasets() throws(StoreError) -> [DatasetInfo] {
        infos(try db.query(Self.listSQL + " GROUP BY d.id ORDER BY d.name"))
    }

    public func dataset(named name: String) throws(StoreError) -> DatasetInfo? {
        infos(try db.query(Self.listSQL + " WHERE d.name = $1 GROUP BY d.id", [.text(name)])).first
    }

    public func examples(dataset: Int64, split: Split?) throws(StoreError) -> [Example] {
        let rows: PGRows
        if let split {
            rows = try db.query("SELECT text, label, split, line FROM examples WHERE dataset_id = $1 AND split = $2 ORDER BY id", [.int(dataset), .text(split.rawValue)])
        } else {
            rows = try db.query("SELECT text, label, split, line FROM examples WHERE dataset_id = $1 ORDER BY id", [.int(dataset)])
        }
        return (0..<rows.count).map { i in
            Example(text: rows.text(i, 0) ?? "", label: rows.text(i, 1) ?? "", split: Split(rawValue: rows.text(i, 2) ?? "") ?? .train, line: rows.int(i, 3))
        }
    }

    // MARK: Versions

    public func createVersion(parent: Int?, method: String, dataset: String?) throws(StoreError) -> Int {
        try db.query("INSERT INTO versions (parent, created_at, method, dataset, status, owner) VALUES ($1, $2, $3, $4, 'writing', $5) RETURNING id",
                     [parent.map { .int(Int64($0)) } ?? .null, .double(Date().timeIntervalSince1970), .text(method),
                      dataset.map { .text($0) } ?? .null, .text(replica)]).int(0, 0)
    }

    public func finishVersion(id: Int, status: VersionStatus, report: String, activate: Bool) throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            let r = try db.query("UPDATE versions SET status = $1, report = $2 WHERE id = $3", [.text(status.rawValue), .text(report), .int(Int64(id))])
            guard r.affected == 1 else { throw StoreError(.notFound, "version \(id)") }
            if activate { try setActiveLocked(id) }
        }
    }

    public func versions() throws(StoreError) -> [VersionRecord] {
        let r = try db.query("SELECT id, parent, created_at, method, dataset, status, report FROM versions ORDER BY id")
        return (0..<r.count).map { i in
            VersionRecord(id: r.int(i, 0), parent: r.optionalInt(i, 1), createdAt: r.double(i, 2), method: r.text(i, 3) ?? "",
                          dataset: r.text(i, 4), status: VersionStatus(rawValue: r.text(i, 5) ?? "") ?? .failed, report: r.text(i, 6) ?? "{}")
        }
    }

    public func activeVersion() throws(StoreError) -> Int? {
        let r = try db.query("SELECT value FROM settings WHERE key = 'active_version'")
        return r.isEmpty ? nil : r.text(0, 0).flatMap { Int($0) }
    }

    public func setActive(_ id: Int) throws(StoreError) {
        try db.transaction { () throws(StoreError) in try setActiveLocked(id) }
    }

    /// Moves the pointer and announces it: every replica listening hears it at commit.
    private func setActiveLocked(_ id: Int) throws(StoreError) {
        let r = try db.query("SELECT status FROM versions WHERE id = $1 FOR UPDATE", [.int(Int64(id))])
        guard !r.isEmpty else { throw StoreError(.notFound, "no version \(id)") }
        let status = r.text(0, 0) ?? ""
        guard status == VersionStatus.ready.rawValue || status == VersionStatus.candidate.rawValue else {
            throw StoreError(.invalid, "version \(id) is \(status) and cannot be activated")
        }
        try db.query("INSERT INTO settings (key, value) VALUES ('active_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                     [.text(String(id))])
        try db.query("SELECT pg_notify($1, $2)", [.text(Self.activeChannel), .text(String(id))])
    }

    // MARK: Version files

    public var sharesVersionFiles: Bool { true }

    /// Chunks of at most 1 MiB: a version file of any size goes through without one huge value.
    static let chunkBytes = 1 << 20

    public func putVersionFiles(id: Int, files: [VersionFile]) throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            try db.query("DELETE FROM version_files WHERE version = $1", [.int(Int64(id))])
            for f in files {
                try db.query("INSERT INTO version_files (version, path, size, sha256) VALUES ($1, $2, $3, $4)",
                             [.int(Int64(id)), .text(f.path), .int(Int64(f.bytes.count)), .text(f.sha256)])
                var seq = 0, offset = 0
                repeat {
                    let end = min(offset + Self.chunkBytes, f.bytes.count)
                    try db.query("INSERT INTO version_chunks (version, path, seq, data) VALUES ($1, $2, $3, $4)",
                                 [.int(Int64(id)), .text(f.path), .int(Int64(seq)), .blob(Array(f.bytes[offset..<end]))])
                    seq += 1
                    offset = end
                } while offset < f.bytes.count
            }
        }
    }

    public func versionFiles(id: Int) throws(StoreError) -> [VersionFile] {
        let listed = try db.query("SELECT path, size, sha256 FROM version_files WHERE version = $1 ORDER BY path", [.int(Int64(id))])
        var out: [VersionFile] = []
        for i in 0..<listed.count {
            let path = listed.text(i, 0) ?? ""
            let chunks = try db.queryBytes("SELECT data FROM version_chunks WHERE version = $1 AND path = $2 ORDER BY seq", [.int(Int64(id)), .text(path)])
            var bytes: [UInt8] = []
            bytes.reserveCapacity(listed.int(i, 1))
            for c in chunks { bytes += c }
            guard bytes.count == listed.int(i, 1) else {
                throw StoreError(.invalid, "version \(id)'s \(path) is \(bytes.count) bytes in the store, \(listed.int(i, 1)) listed")
            }
            out.append(VersionFile(path: path, bytes: bytes, sha256: listed.text(i, 2) ?? ""))
        }
        return out
    }

    // MARK: Feedback and traffic

    public func recordFeedback(_ f: FeedbackRecord) throws(StoreError) -> (FeedbackRecord, duplicate: Bool) {
        // ON CONFLICT DO NOTHING: two replicas given the same key at once store it once.
        let r = try db.query("""
            INSERT INTO feedback (idempotency_key, input_id, text, kind, cost, correct_label, predicted_label, version, at, recorded_at, vector, replica)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
            """, [f.idempotencyKey.map { .text($0) } ?? .null, f.inputID.map { .text($0) } ?? .null, .text(f.text), .text(f.kind),
                  .double(f.cost), f.correctLabel.map { .text($0) } ?? .null, .text(f.predictedLabel), .int(Int64(f.version)),
                  .double(f.at), .double(f.recordedAt), f.vector.isEmpty ? .null : .blob(SQLiteStore.bytes(f.vector)), .text(replica)])
        if r.isEmpty, let key = f.idempotencyKey, let existing = try feedback(FeedbackFilter(idempotencyKey: key)).first {
            return (existing, true)
        }
        var stored = f
        stored.id = r.int(0, 0)
        return (stored, false)
    }

    public func feedback(_ q: FeedbackFilter) throws(StoreError) -> [FeedbackRecord] {
        var sql = "SELECT id, idempotency_key, input_id, text, kind, cost, correct_label, predicted_label, version, at, recorded_at, \(q.withVectors ? "vector" : "NULL") FROM feedback WHERE TRUE"
        var args: [SQLValue] = []
        func arg(_ v: SQLValue) -> String { args.append(v); return "$\(args.count)" }
        if let k = q.idempotencyKey { sql += " AND idempotency_key = \(arg(.text(k)))" }
        if let k = q.kind { sql += " AND kind = \(arg(.text(k)))" }
        if let l = q.label { let p = arg(.text(l)); sql += " AND (predicted_label = \(p) OR correct_label = \(p))" }
        if let v = q.version { sql += " AND version = \(arg(.int(Int64(v))))" }
        if let t = q.since { sql += " AND at >= \(arg(.double(t)))" }
        if let t = q.until { sql += " AND at < \(arg(.double(t)))" }
        if let a = q.after {
            let at = arg(.double(a.at)), id = arg(.int(Int64(a.id)))
            sql += " AND (at < \(at) OR (at = \(at) AND id < \(id)))"
        }
        sql += " ORDER BY at DESC, id DESC LIMIT \(arg(.int(Int64(q.limit))))"
        let r = try db.query(sql, args)
        return (0..<r.count).map { i in
            FeedbackRecord(id: r.int(i, 0), idempotencyKey: r.text(i, 1), inputID: r.text(i, 2), text: r.text(i, 3) ?? "", kind: r.text(i, 4) ?? "",
                           cost: r.double(i, 5), correctLabel: r.text(i, 6), predictedLabel: r.text(i, 7) ?? "", version: r.int(i, 8),
                           at: r.double(i, 9), recordedAt: r.double(i, 10), vector: q.withVectors ? SQLiteStore.floats(r.bytes(i, 11)) : [])
        }
    }

    public func addTraffic(_ counts: [TrafficCount]) throws(StoreError) {
        guard !counts.isEmpty else { return }
        try db.transaction { () throws(StoreError) in
            for c in counts {
                try db.query("""
                    INSERT INTO traffic (hour, version, label, count, expected_errors) VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (hour, version, label) DO UPDATE SET count = traffic.count + excluded.count,
                        expected_errors = traffic.expected_errors + excluded.expected_errors
                    """, [.int(Int64(c.hour)), .int(Int64(c.version)), .text(c.label), .int(Int64(c.count)), .double(c.expectedErrors)])
            }
        }
    }

    public func traffic(since: Double?) throws(StoreError) -> [String: TrafficTotal] {
        let r = try db.query("SELECT label, SUM(count), SUM(expected_errors) FROM traffic WHERE hour >= $1 GROUP BY label",
                             [.int(Int64((since ?? 0) / 3600))])
        var out: [String: TrafficTotal] = [:]
        for i in 0..<r.count { out[r.text(i, 0) ?? ""] = TrafficTotal(count: r.int(i, 1), expectedErrors: r.double(i, 2)) }
        return out
    }

    // MARK: Metric history (this replica's rows)

    public func addMetricSnapshot(at: Double, values: [String: Double], keepSeconds: Double) throws(StoreError) {
        let finite = values.filter { $0.value.isFinite }.sorted { $0.key < $1.key }
        try db.transaction { () throws(StoreError) in
            var i = 0
            while i < finite.count {
                let chunk = finite[i..<min(i + 500, finite.count)]
                var sql = "INSERT INTO metrics_history (replica, at, name, value) VALUES "
                var args: [SQLValue] = [.text(replica), .double(at)]
                for (j, (name, value)) in chunk.enumerated() {
                    sql += (j == 0 ? "" : ",") + "($1, $2, $\(3 + 2 * j), $\(4 + 2 * j))"
                    args += [.text(name), .double(value)]
                }
                try db.query(sql, args)
                i += chunk.count
            }
            try db.query("DELETE FROM metrics_history WHERE replica = $1 AND at < $2", [.text(replica), .double(at - keepSeconds)])
        }
    }

    public func metricHistory(name: String, since: Double, until: Double) throws(StoreError) -> [(at: Double, value: Double)] {
        let r = try db.query("SELECT at, value FROM metrics_history WHERE replica = $1 AND name = $2 AND at >= $3 AND at <= $4 ORDER BY at",
                             [.text(replica), .text(name), .double(since), .double(until)])
        return (0..<r.count).map { (r.double($0, 0), r.double($0, 1)) }
    }

    public func metricNames() throws(StoreError) -> [String] {
        let r = try db.query("SELECT DISTINCT name FROM metrics_history WHERE replica = $1 ORDER BY name", [.text(replica)])
        return (0..<r.count).compactMap { r.text($0, 0) }
    }
}
