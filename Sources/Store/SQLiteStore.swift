import Datasets
import Foundation

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, so that a write
/// acknowledged to a client survives kill -9 and power loss.
public final class SQLiteStore: Store {
    public let db: SQLiteDatabase

    /// Schema migrations, in order; `PRAGMA user_version` records how many have run.
    static let migrations: [String] = [
        """
        CREATE TABLE datasets (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE examples (
            id INTEGER PRIMARY KEY,
            dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            label TEXT NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'validation', 'test')),
            line INTEGER NOT NULL
        );
        CREATE INDEX examples_by_dataset ON examples(dataset_id, split);
        """,
        """
        CREATE TABLE versions (
            id INTEGER PRIMARY KEY,
            parent INTEGER REFERENCES versions(id),
            created_at REAL NOT NULL,
            method TEXT NOT NULL,
            dataset TEXT,
            status TEXT NOT NULL CHECK (status IN ('writing', 'candidate', 'rejected', 'failed', 'ready')),
            report TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
        """
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY,
            idempotency_key TEXT UNIQUE,
            input_id TEXT,
            text TEXT NOT NULL,
            kind TEXT NOT NULL,
            cost REAL NOT NULL,
            correct_label TEXT,
            predicted_label TEXT NOT NULL,
            version INTEGER NOT NULL,
            at REAL NOT NULL,
            recorded_at REAL NOT NULL,
            vector BLOB
        );
        CREATE INDEX feedback_by_time ON feedback(at);
        CREATE TABLE traffic (
            hour INTEGER NOT NULL,
            version INTEGER NOT NULL,
            label TEXT NOT NULL,
            count INTEGER NOT NULL,
            expected_errors REAL NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, version, label)
        );
        """,
        """
        CREATE TABLE finetune_jobs (
            id INTEGER PRIMARY KEY,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            state TEXT NOT NULL CHECK (state IN ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
            params TEXT NOT NULL,
            progress TEXT NOT NULL DEFAULT '{}',
            result TEXT,
            error TEXT,
            version INTEGER REFERENCES versions(id)
        );
        """,
        """
        CREATE TABLE metrics_history (
            at REAL NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL
        );
        CREATE INDEX metrics_history_by_name ON metrics_history(name, at);
        """,
        """
        CREATE TABLE rollouts (
            id INTEGER PRIMARY KEY,
            candidate INTEGER NOT NULL REFERENCES versions(id),
            control INTEGER NOT NULL REFERENCES versions(id),
            stage TEXT NOT NULL CHECK (stage IN ('shadow', 'canary', 'promoted', 'rolled-back')),
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE UNIQUE INDEX one_running_rollout ON rollouts((1)) WHERE stage IN ('shadow', 'canary');
        CREATE TABLE disagreements (
            id INTEGER PRIMARY KEY,
            rollout INTEGER NOT NULL REFERENCES rollouts(id),
            text TEXT NOT NULL,
            control_label TEXT NOT NULL,
            candidate_label TEXT NOT NULL,
            control_confidence REAL NOT NULL,
            candidate_confidence REAL NOT NULL,
            expected_cost REAL NOT NULL,
            seen INTEGER NOT NULL DEFAULT 1,
            at REAL NOT NULL,
            label TEXT,
            label_source TEXT CHECK (label_source IN ('review', 'feedback')),
            labelled_at REAL,
            requested INTEGER NOT NULL DEFAULT 0,
            counted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (rollout, text)
        );
        CREATE INDEX disagreements_by_cost ON disagreements(rollout, expected_cost DESC, id);
        """,
    ]

    public static var schemaVersion: Int { migrations.count }

    /// Opens the database at `path` (`":memory:"` for tests) and brings its schema up to date.
    public init(path: String) throws(StoreError) {
        db = try SQLiteDatabase(path: path)
        if path != ":memory:" {
            // A damaged page is found here, at start, not served from later: quick_check reads
            // every page (O(size); about a second per few hundred MB).
            let s = try db.prepare("PRAGMA quick_check(5)")
            var problems: [String] = []
            while try s.step() { if let t = s.text(0), t != "ok" { problems.append(t) } }
            guard problems.isEmpty else {
                throw StoreError(.invalid, "\(path) is damaged (SQLite integrity check: \(problems.joined(separator: "; "))). Restore it from a backup, or move it (with its -wal and -shm files) aside to start empty")
            }
            guard try db.pragma("journal_mode=WAL")?.lowercased() == "wal" else {
                throw StoreError(.invalid, "\(path): cannot switch the database to WAL mode")
            }
        }
        try db.exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        try migrate()
        // A version whose files were being written when the daemon died is never loaded.
        try db.exec("UPDATE versions SET status = 'failed' WHERE status = 'writing'")
        // A job that was waiting or running when the daemon stopped is over: it is marked
        // interrupted, never resumed behind the operator's back.
        try db.prepare("""
            UPDATE finetune_jobs SET state = 'interrupted', finished_at = ?,
                error = COALESCE(error, 'the daemon stopped while the job was ' || state)
            WHERE state IN ('scheduled', 'queued', 'running')
            """).run([.double(Date().timeIntervalSince1970)])
    }

    // MARK: Fine-tune jobs

    public func createJob(params: String, state: JobState) throws(StoreError) -> Int {
        try db.prepare("INSERT INTO finetune_jobs (created_at, state, params) VALUES (?, ?, ?)")
            .run([.double(Date().timeIntervalSince1970), .text(state.rawValue), .text(params)])
        return Int(db.lastInsertRowID)
    }

    public func updateJob(_ j: JobRecord) throws(StoreError) {
        try db.prepare("""
            UPDATE finetune_jobs SET started_at = ?, finished_at = ?, state = ?, progress = ?, result = ?, error = ?, version = ? WHERE id = ?
            """).run([j.startedAt.map { .double($0) } ?? .null, j.finishedAt.map { .double($0) } ?? .null, .text(j.state.rawValue),
                      .text(j.progress), j.result.map { .text($0) } ?? .null, j.error.map { .text($0) } ?? .null,
                      j.version.map { .int(Int64($0)) } ?? .null, .int(Int64(j.id))])
        guard db.changes == 1 else { throw StoreError(.notFound, "no job \(j.id)") }
    }

    // MARK: Metric history

    public func addMetricSnapshot(at: Double, values: [String: Double], keepSeconds: Double) throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            let insert = try db.prepare("INSERT INTO metrics_history (at, name, value) VALUES (?, ?, ?)")
            for (name, value) in values where value.isFinite {
                try insert.run([.double(at), .text(name), .double(value)])
            }
            try db.prepare("DELETE FROM metrics_history WHERE at < ?").run([.double(at - keepSeconds)])
        }
    }

    public func metricHistory(name: String, since: Double, until: Double) throws(StoreError) -> [(at: Double, value: Double)] {
        let s = try db.prepare("SELECT at, value FROM metrics_history WHERE name = ? AND at >= ? AND at <= ? ORDER BY at")
        try s.bind([.text(name), .double(since), .double(until)])
        var out: [(at: Double, value: Double)] = []
        while try s.step() { out.append((s.double(0), s.double(1))) }
        return out
    }

    public func metricNames() throws(StoreError) -> [String] {
        let s = try db.prepare("SELECT DISTINCT name FROM metrics_history ORDER BY name")
        var out: [String] = []
        while try s.step() { if let n = s.text(0) { out.append(n) } }
        return out
    }

    public func jobs() throws(StoreError) -> [JobRecord] {
        let s = try db.prepare("SELECT id, created_at, started_at, finished_at, state, params, progress, result, error, version FROM finetune_jobs ORDER BY id")
        var out: [JobRecord] = []
        while try s.step() {
            out.append(JobRecord(id: Int(s.int(0)), createdAt: s.double(1), startedAt: s.isNull(2) ? nil : s.double(2),
                                 finishedAt: s.isNull(3) ? nil : s.double(3), state: JobState(rawValue: s.text(4) ?? "") ?? .failed,
                                 params: s.text(5) ?? "{}", progress: s.text(6) ?? "{}", result: s.text(7), error: s.text(8),
                                 version: s.isNull(9) ? nil : Int(s.int(9))))
        }
        return out
    }

    private func migrate() throws(StoreError) {
        let current = Int(try db.pragma("user_version") ?? "0") ?? 0
        guard current <= Self.migrations.count else {
            throw StoreError(.invalid, "\(db.path) has schema version \(current), newer than this robustd knows (\(Self.migrations.count)); upgrade robustd")
        }
        for (i, sql) in Self.migrations.enumerated() where i >= current {
            try db.transaction { () throws(StoreError) in
                try db.exec(sql)
                try db.exec("PRAGMA user_version = \(i + 1)")
            }
        }
    }

    public func importDataset(name: String, plan: ImportPlan, source: String, replace: Bool) throws(StoreError) -> DatasetInfo {
        try db.transaction { () throws(StoreError) -> DatasetInfo in
            if let existing = try dataset(named: name) {
                guard replace else {
                    throw StoreError(.conflict, "a dataset named '\(name)' exists (\(existing.rows) rows); pass replace: true to replace it")
                }
                try db.prepare("DELETE FROM datasets WHERE id = ?").run([.int(existing.id)])
            }
            try db.prepare("INSERT INTO datasets (name, source, created_at) VALUES (?, ?, ?)")
                .run([.text(name), .text(source), .double(Date().timeIntervalSince1970)])
            let id = db.lastInsertRowID
            let insert = try db.prepare("INSERT INTO examples (dataset_id, text, label, split, line) VALUES (?, ?, ?, ?, ?)")
            for e in plan.examples {
                try insert.run([.int(id), .text(e.text), .text(e.label), .text(e.split.rawValue), .int(Int64(e.line))])
            }
            return try dataset(named: name)!
        }
    }

    private static let listSQL = """
        SELECT d.id, d.name, d.source, d.created_at, COUNT(e.id), COUNT(DISTINCT e.label),
               SUM(e.split = 'train'), SUM(e.split = 'validation'), SUM(e.split = 'test')
        FROM datasets d LEFT JOIN examples e ON e.dataset_id = d.id
        """

    private func info(_ s: Statement) -> DatasetInfo {
        DatasetInfo(id: s.int(0), name: s.text(1) ?? "", rows: Int(s.int(4)), labels: Int(s.int(5)),
                    train: Int(s.int(6)), validation: Int(s.int(7)), test: Int(s.int(8)),
                    source: s.text(2) ?? "", createdAt: s.double(3))
    }

    public func datasets() throws(StoreError) -> [DatasetInfo] {
        let s = try db.prepare(Self.listSQL + " GROUP BY d.id ORDER BY d.name")
        var out: [DatasetInfo] = []
        while try s.step() { out.append(info(s)) }
        return out
    }

    public func dataset(named name: String) throws(StoreError) -> DatasetInfo? {
        let s = try db.prepare(Self.listSQL + " WHERE d.name = ? GROUP BY d.id")
        try s.bind([.text(name)])
        return try s.step() ? info(s) : nil
    }

    public func createVersion(parent: Int?, method: String, dataset: String?) throws(StoreError) -> Int {
        try db.prepare("INSERT INTO versions (parent, created_at, method, dataset, status) VALUES (?, ?, ?, ?, 'writing')")
            .run([parent.map { .int(Int64($0)) } ?? .null, .double(Date().timeIntervalSince1970), .text(method), dataset.map { .text($0) } ?? .null])
        return Int(db.lastInsertRowID)
    }

    public func finishVersion(id: Int, status: VersionStatus, report: String, activate: Bool) throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            try db.prepare("UPDATE versions SET status = ?, report = ? WHERE id = ?").run([.text(status.rawValue), .text(report), .int(Int64(id))])
            guard db.changes == 1 else { throw StoreError(.notFound, "version \(id)") }
            if activate { try setActiveLocked(id) }
        }
    }

    public func versions() throws(StoreError) -> [VersionRecord] {
        let s = try db.prepare("SELECT id, parent, created_at, method, dataset, status, report FROM versions ORDER BY id")
        var out: [VersionRecord] = []
        while try s.step() {
            out.append(VersionRecord(id: Int(s.int(0)), parent: s.isNull(1) ? nil : Int(s.int(1)), createdAt: s.double(2),
                                     method: s.text(3) ?? "", dataset: s.text(4), status: VersionStatus(rawValue: s.text(5) ?? "") ?? .failed,
                                     report: s.text(6) ?? "{}"))
        }
        return out
    }

    public func activeVersion() throws(StoreError) -> Int? {
        let s = try db.prepare("SELECT value FROM settings WHERE key = 'active_version'")
        return try s.step() ? s.text(0).flatMap { Int($0) } : nil
    }

    public func setActive(_ id: Int) throws(StoreError) {
        try db.transaction { () throws(StoreError) in try setActiveLocked(id) }
    }

    private func setActiveLocked(_ id: Int) throws(StoreError) {
        let s = try db.prepare("SELECT status FROM versions WHERE id = ?")
        try s.bind([.int(Int64(id))])
        guard try s.step() else { throw StoreError(.notFound, "no version \(id)") }
        let status = s.text(0) ?? ""
        guard status == VersionStatus.ready.rawValue || status == VersionStatus.candidate.rawValue else {
            throw StoreError(.invalid, "version \(id) is \(status) and cannot be activated")
        }
        try db.prepare("INSERT INTO settings (key, value) VALUES ('active_version', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .run([.text(String(id))])
    }

    public func recordFeedback(_ f: FeedbackRecord) throws(StoreError) -> (FeedbackRecord, duplicate: Bool) {
        try db.transaction { () throws(StoreError) -> (FeedbackRecord, duplicate: Bool) in
            if let key = f.idempotencyKey, let existing = try feedback(FeedbackFilter(idempotencyKey: key)).first {
                return (existing, true)
            }
            try db.prepare("""
                INSERT INTO feedback (idempotency_key, input_id, text, kind, cost, correct_label, predicted_label, version, at, recorded_at, vector)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """).run([f.idempotencyKey.map { .text($0) } ?? .null, f.inputID.map { .text($0) } ?? .null, .text(f.text), .text(f.kind),
                           .double(f.cost), f.correctLabel.map { .text($0) } ?? .null, .text(f.predictedLabel), .int(Int64(f.version)),
                           .double(f.at), .double(f.recordedAt), f.vector.isEmpty ? .null : .blob(Self.bytes(f.vector))])
            var stored = f
            stored.id = Int(db.lastInsertRowID)
            return (stored, false)
        }
    }

    public func feedback(_ q: FeedbackFilter) throws(StoreError) -> [FeedbackRecord] {
        var sql = "SELECT id, idempotency_key, input_id, text, kind, cost, correct_label, predicted_label, version, at, recorded_at, vector FROM feedback WHERE 1=1"
        var args: [SQLValue] = []
        if let k = q.idempotencyKey { sql += " AND idempotency_key = ?"; args.append(.text(k)) }
        if let k = q.kind { sql += " AND kind = ?"; args.append(.text(k)) }
        if let l = q.label { sql += " AND (predicted_label = ? OR correct_label = ?)"; args.append(.text(l)); args.append(.text(l)) }
        if let v = q.version { sql += " AND version = ?"; args.append(.int(Int64(v))) }
        if let t = q.since { sql += " AND at >= ?"; args.append(.double(t)) }
        if let t = q.until { sql += " AND at < ?"; args.append(.double(t)) }
        if let a = q.after {
            sql += " AND (at < ? OR (at = ? AND id < ?))"
            args += [.double(a.at), .double(a.at), .int(Int64(a.id))]
        }
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        args.append(.int(Int64(q.limit)))
        let s = try db.prepare(sql)
        try s.bind(args)
        var out: [FeedbackRecord] = []
        while try s.step() {
            out.append(FeedbackRecord(id: Int(s.int(0)), idempotencyKey: s.text(1), inputID: s.text(2), text: s.text(3) ?? "", kind: s.text(4) ?? "",
                                      cost: s.double(5), correctLabel: s.text(6), predictedLabel: s.text(7) ?? "", version: Int(s.int(8)),
                                      at: s.double(9), recordedAt: s.double(10), vector: q.withVectors ? Self.floats(s.blob(11)) : []))
        }
        return out
    }

    public func addTraffic(_ counts: [TrafficCount]) throws(StoreError) {
        guard !counts.isEmpty else { return }
        try db.transaction { () throws(StoreError) in
            let st = try db.prepare("""
                INSERT INTO traffic (hour, version, label, count, expected_errors) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(hour, version, label) DO UPDATE SET count = count + excluded.count, expected_errors = expected_errors + excluded.expected_errors
                """)
            for c in counts { try st.run([.int(Int64(c.hour)), .int(Int64(c.version)), .text(c.label), .int(Int64(c.count)), .double(c.expectedErrors)]) }
        }
    }

    public func traffic(since: Double?) throws(StoreError) -> [String: TrafficTotal] {
        let s = try db.prepare("SELECT label, SUM(count), SUM(expected_errors) FROM traffic WHERE hour >= ? GROUP BY label")
        try s.bind([.int(Int64((since ?? 0) / 3600))])
        var out: [String: TrafficTotal] = [:]
        while try s.step() { out[s.text(0) ?? ""] = TrafficTotal(count: Int(s.int(1)), expectedErrors: s.double(2)) }
        return out
    }

    static func bytes(_ v: [Float]) -> [UInt8] { v.withUnsafeBytes { Array($0) } }
    static func floats(_ b: [UInt8]) -> [Float] {
        guard b.count % 4 == 0 else { return [] }
        return b.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    public func examples(dataset: Int64, split: Split?) throws(StoreError) -> [Example] {
        let s: Statement
        if let split {
            s = try db.prepare("SELECT text, label, split, line FROM examples WHERE dataset_id = ? AND split = ? ORDER BY id")
            try s.bind([.int(dataset), .text(split.rawValue)])
        } else {
            s = try db.prepare("SELECT text, label, split, line FROM examples WHERE dataset_id = ? ORDER BY id")
            try s.bind([.int(dataset)])
        }
        var out: [Example] = []
        while try s.step() {
            out.append(Example(text: s.text(0) ?? "", label: s.text(1) ?? "", split: Split(rawValue: s.text(2) ?? "") ?? .train, line: Int(s.int(3))))
        }
        return out
    }
}
