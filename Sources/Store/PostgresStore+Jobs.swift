import Foundation

/// Fine-tune jobs and the replicas' heartbeats in the shared store: claims, cancels, leases.
extension PostgresStore {
    // MARK: Jobs

    public func createJob(params: String, state: JobState) throws(StoreError) -> Int {
        let r = try db.query("INSERT INTO finetune_jobs (created_at, state, params, owner) VALUES ($1, $2, $3, $4) RETURNING id",
                             [.double(Date().timeIntervalSince1970), .text(state.rawValue), .text(params), .text(replica)])
        try db.query("SELECT pg_notify($1, $2)", [.text(Self.jobChannel), .text(String(r.int(0, 0)))])
        return r.int(0, 0)
    }

    public func updateJob(_ j: JobRecord) throws(StoreError) {
        let r = try db.query("""
            UPDATE finetune_jobs SET started_at = $1, finished_at = $2, state = $3, progress = $4, result = $5, error = $6, version = $7 WHERE id = $8
            """, [j.startedAt.map { .double($0) } ?? .null, j.finishedAt.map { .double($0) } ?? .null, .text(j.state.rawValue),
                  .text(j.progress), j.result.map { .text($0) } ?? .null, j.error.map { .text($0) } ?? .null,
                  j.version.map { .int(Int64($0)) } ?? .null, .int(Int64(j.id))])
        guard r.affected == 1 else { throw StoreError(.notFound, "no job \(j.id)") }
    }

    static let jobColumns = "id, created_at, started_at, finished_at, state, params, progress, result, error, version, owner, cancel_requested"

    func jobRows(_ r: PGRows) -> [JobRecord] {
        (0..<r.count).map { i in
            JobRecord(id: r.int(i, 0), createdAt: r.double(i, 1), startedAt: r.optionalDouble(i, 2), finishedAt: r.optionalDouble(i, 3),
                      state: JobState(rawValue: r.text(i, 4) ?? "") ?? .failed, params: r.text(i, 5) ?? "{}", progress: r.text(i, 6) ?? "{}",
                      result: r.text(i, 7), error: r.text(i, 8), version: r.optionalInt(i, 9), owner: r.text(i, 10) ?? "",
                      cancelRequested: r.bool(i, 11))
        }
    }

    public func jobs() throws(StoreError) -> [JobRecord] {
        jobRows(try db.query("SELECT \(Self.jobColumns) FROM finetune_jobs ORDER BY id"))
    }

    public func claimNextJob(now: Double) throws(StoreError) -> JobRecord? {
        do {
            // The unique index on running jobs is the guarantee; the NOT EXISTS spares the error.
            // FOR UPDATE without SKIP LOCKED: concurrent claimers queue on the oldest queued row
            // and, once its claim commits, find it running and claim nothing. SKIP LOCKED let a
            // second claimer take the next row while the oldest was being claimed, and the
            // younger job could win the race to the unique index (CI, 2026-12-03).
            let r = try db.query("""
                WITH next AS (
                    SELECT id FROM finetune_jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE
                )
                UPDATE finetune_jobs j SET state = 'running', owner = $1, started_at = $2
                FROM next WHERE j.id = next.id AND NOT EXISTS (SELECT 1 FROM finetune_jobs WHERE state = 'running')
                RETURNING j.id
                """, [.text(replica), .double(now)])
            guard !r.isEmpty else { return nil }
            try db.query("SELECT pg_notify($1, $2)", [.text(Self.jobChannel), .text(String(r.int(0, 0)))])
            return jobRows(try db.query("SELECT \(Self.jobColumns) FROM finetune_jobs WHERE id = $1", [.int(Int64(r.int(0, 0)))])).first
        } catch where error.kind == .conflict {
            return nil  // another replica's job started at the same moment
        }
    }

    public func requestJobCancel(id: Int, now: Double) throws(StoreError) -> Bool {
        let queued = try db.query("""
            UPDATE finetune_jobs SET state = 'cancelled', finished_at = $2, error = 'cancelled before it started'
            WHERE id = $1 AND state IN ('queued', 'scheduled')
            """, [.int(Int64(id)), .double(now)])
        if queued.affected == 1 { return true }
        let running = try db.query("UPDATE finetune_jobs SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'", [.int(Int64(id))])
        if running.affected == 0, try db.query("SELECT 1 FROM finetune_jobs WHERE id = $1", [.int(Int64(id))]).isEmpty {
            throw StoreError(.notFound, "no job \(id)")
        }
        return false
    }


    // MARK: Replicas

    public func heartbeat(_ info: ReplicaInfo) throws(StoreError) {
        try db.query("""
            INSERT INTO replicas (name, host, pid, started_at, seen_at, active_version, robustd_version) VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, seen_at = excluded.seen_at,
                active_version = excluded.active_version, robustd_version = excluded.robustd_version,
                started_at = CASE WHEN replicas.pid = excluded.pid AND replicas.host = excluded.host THEN replicas.started_at ELSE excluded.started_at END
            """, [.text(replica), .text(info.host), .int(Int64(info.pid)), .double(info.startedAt), .double(info.seenAt),
                  info.activeVersion.map { .int(Int64($0)) } ?? .null, .text(info.robustdVersion)])
    }

    public func replicas() throws(StoreError) -> [ReplicaInfo] {
        let r = try db.query("SELECT name, host, pid, started_at, seen_at, active_version, robustd_version FROM replicas ORDER BY name")
        return (0..<r.count).map { i in
            ReplicaInfo(name: r.text(i, 0) ?? "", host: r.text(i, 1) ?? "", pid: r.int(i, 2), startedAt: r.double(i, 3), seenAt: r.double(i, 4),
                        activeVersion: r.optionalInt(i, 5), robustdVersion: r.text(i, 6) ?? "")
        }
    }

    /// Jobs whose replica stopped renewing its heartbeat for longer than the lease: marked
    /// interrupted by whichever replica notices. Returns their ids.
    public func interruptOrphanedJobs(now: Double) throws(StoreError) -> [Int] {
        let r = try db.query("""
            UPDATE finetune_jobs j SET state = 'interrupted', finished_at = $1,
                error = COALESCE(j.error, 'replica ' || j.owner || ' stopped renewing its lease while the job was running')
            WHERE j.state = 'running' AND j.owner <> $2
              AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.name = j.owner AND r.seen_at >= $3)
            RETURNING j.id
            """, [.double(now), .text(replica), .double(now - leaseSeconds)])
        // Versions such a replica was writing will never be finished.
        try db.query("""
            UPDATE versions v SET status = 'failed' WHERE v.status = 'writing' AND v.owner <> $1
              AND NOT EXISTS (SELECT 1 FROM replicas r WHERE r.name = v.owner AND r.seen_at >= $2)
            """, [.text(replica), .double(now - leaseSeconds)])
        return (0..<r.count).map { r.int($0, 0) }
    }
}
