import Foundation

/// The PostgreSQL store's schema and its migrations.
extension PostgresStore {
    // MARK: Schema

    /// Schema migrations, in order; `robustd_schema.version` records how many have run.
    static let migrations: [String] = [
        """
        CREATE TABLE datasets (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            source TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE examples (
            id BIGSERIAL PRIMARY KEY,
            dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            label TEXT NOT NULL,
            split TEXT NOT NULL CHECK (split IN ('train', 'validation', 'test')),
            line INTEGER NOT NULL
        );
        CREATE INDEX examples_by_dataset ON examples(dataset_id, split);
        CREATE TABLE versions (
            id BIGSERIAL PRIMARY KEY,
            parent BIGINT REFERENCES versions(id),
            created_at DOUBLE PRECISION NOT NULL,
            method TEXT NOT NULL,
            dataset TEXT,
            status TEXT NOT NULL CHECK (status IN ('writing', 'candidate', 'rejected', 'failed', 'ready')),
            report TEXT NOT NULL DEFAULT '{}',
            owner TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE version_files (
            version BIGINT NOT NULL REFERENCES versions(id),
            path TEXT NOT NULL,
            size BIGINT NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (version, path)
        );
        CREATE TABLE version_chunks (
            version BIGINT NOT NULL,
            path TEXT NOT NULL,
            seq INTEGER NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (version, path, seq),
            FOREIGN KEY (version, path) REFERENCES version_files(version, path) ON DELETE CASCADE
        );
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE feedback (
            id BIGSERIAL PRIMARY KEY,
            idempotency_key TEXT UNIQUE,
            input_id TEXT,
            text TEXT NOT NULL,
            kind TEXT NOT NULL,
            cost DOUBLE PRECISION NOT NULL,
            correct_label TEXT,
            predicted_label TEXT NOT NULL,
            version BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            recorded_at DOUBLE PRECISION NOT NULL,
            vector BYTEA,
            replica TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX feedback_by_time ON feedback(at DESC, id DESC);
        CREATE TABLE traffic (
            hour BIGINT NOT NULL,
            version BIGINT NOT NULL,
            label TEXT NOT NULL,
            count BIGINT NOT NULL,
            expected_errors DOUBLE PRECISION NOT NULL DEFAULT 0,
            PRIMARY KEY (hour, version, label)
        );
        CREATE TABLE finetune_jobs (
            id BIGSERIAL PRIMARY KEY,
            created_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            state TEXT NOT NULL CHECK (state IN ('scheduled', 'queued', 'running', 'succeeded', 'failed', 'cancelled', 'interrupted')),
            params TEXT NOT NULL,
            progress TEXT NOT NULL DEFAULT '{}',
            result TEXT,
            error TEXT,
            version BIGINT REFERENCES versions(id),
            owner TEXT NOT NULL DEFAULT '',
            cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
        );
        CREATE UNIQUE INDEX one_running_job ON finetune_jobs((1)) WHERE state = 'running';
        CREATE TABLE metrics_history (
            replica TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            name TEXT NOT NULL,
            value DOUBLE PRECISION NOT NULL
        );
        CREATE INDEX metrics_history_by_name ON metrics_history(replica, name, at);
        CREATE TABLE rollouts (
            id BIGSERIAL PRIMARY KEY,
            candidate BIGINT NOT NULL REFERENCES versions(id),
            control BIGINT NOT NULL REFERENCES versions(id),
            stage TEXT NOT NULL CHECK (stage IN ('shadow', 'canary', 'promoted', 'rolled-back')),
            state TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            owner TEXT NOT NULL DEFAULT ''
        );
        CREATE UNIQUE INDEX one_running_rollout ON rollouts((1)) WHERE stage IN ('shadow', 'canary');
        CREATE TABLE disagreements (
            id BIGSERIAL PRIMARY KEY,
            rollout BIGINT NOT NULL REFERENCES rollouts(id),
            text TEXT NOT NULL,
            control_label TEXT NOT NULL,
            candidate_label TEXT NOT NULL,
            control_confidence DOUBLE PRECISION NOT NULL,
            candidate_confidence DOUBLE PRECISION NOT NULL,
            expected_cost DOUBLE PRECISION NOT NULL,
            seen INTEGER NOT NULL DEFAULT 1,
            at DOUBLE PRECISION NOT NULL,
            label TEXT,
            label_source TEXT CHECK (label_source IN ('review', 'feedback')),
            labelled_at DOUBLE PRECISION,
            requested INTEGER NOT NULL DEFAULT 0,
            counted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (rollout, text)
        );
        CREATE INDEX disagreements_by_cost ON disagreements(rollout, expected_cost DESC, id);
        CREATE TABLE rollout_evidence (
            id BIGSERIAL PRIMARY KEY,
            rollout BIGINT NOT NULL REFERENCES rollouts(id),
            replica TEXT NOT NULL,
            payload TEXT NOT NULL
        );
        CREATE INDEX rollout_evidence_by_rollout ON rollout_evidence(rollout, id);
        CREATE TABLE replicas (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL,
            active_version BIGINT,
            robustd_version TEXT NOT NULL DEFAULT ''
        );
        """,
    ]

    public static var schemaVersion: Int { migrations.count }

    /// Runs the migrations this database lacks, all in one transaction under an advisory lock:
    /// replicas starting together migrate once, and a failed migration leaves nothing behind.
    func migrate() throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            try db.query("SELECT pg_advisory_xact_lock($1)", [.int(Self.migrationLock)])
            try db.query("CREATE TABLE IF NOT EXISTS robustd_schema (version INTEGER NOT NULL)")
            let r = try db.query("SELECT version FROM robustd_schema")
            if r.isEmpty { try db.query("INSERT INTO robustd_schema (version) VALUES (0)") }
            let current = r.isEmpty ? 0 : r.int(0, 0)
            guard current <= Self.migrations.count else {
                throw StoreError(.invalid, "the PostgreSQL database has robustd schema version \(current), newer than this robustd knows (\(Self.migrations.count)); upgrade robustd")
            }
            for (i, sql) in Self.migrations.enumerated() where i >= current {
                for statement in Self.statements(sql) { try db.query(statement) }
                try db.query("UPDATE robustd_schema SET version = $1", [.int(Int64(i + 1))])
            }
        }
    }

    /// A migration's statements (PQexecParams runs one at a time).
    static func statements(_ sql: String) -> [String] {
        sql.split(separator: ";").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }.filter { !$0.isEmpty }
    }

    /// The schema version recorded in the database.
    public func recordedSchemaVersion() throws(StoreError) -> Int { try db.query("SELECT version FROM robustd_schema").int(0, 0) }
}
