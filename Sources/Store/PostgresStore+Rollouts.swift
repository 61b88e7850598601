import Foundation

/// Rollouts and their disagreements in PostgreSQL; stage changes are announced on commit.
extension PostgresStore {
    public func createRollout(candidate: Int, control: Int, stage: String, state: (Int) -> String, at: Double) throws(StoreError) -> RolloutRecord {
        do {
            return try db.transaction { () throws(StoreError) -> RolloutRecord in
                if let running = try rollouts().first(where: \.isRunning) {
                    throw StoreError(.conflict, "rollout \(running.id) of version \(running.candidate) is running (\(running.stage)); abort it or wait for its end")
                }
                let id = try db.query("INSERT INTO rollouts (candidate, control, stage, state, created_at, updated_at, owner) VALUES ($1, $2, $3, '{}', $4, $4, $5) RETURNING id",
                                      [.int(Int64(candidate)), .int(Int64(control)), .text(stage), .double(at), .text(replica)]).int(0, 0)
                let text = state(id)
                try db.query("UPDATE rollouts SET state = $1 WHERE id = $2", [.text(text), .int(Int64(id))])
                try db.query("SELECT pg_notify($1, $2)", [.text(Self.rolloutChannel), .text(String(id))])
                return RolloutRecord(id: id, candidate: candidate, control: control, stage: stage, state: text, createdAt: at, updatedAt: at)
            }
        } catch where error.kind == .conflict && error.message.contains("one_running_rollout") {
            // Another replica started one between our check and our insert.
            throw StoreError(.conflict, "another rollout started at the same moment on another replica; rollout/status shows it")
        }
    }

    public func updateRollout(id: Int, stage: String, state: String, at: Double, review: (id: Int, label: String, counted: Int)?) throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            if let r = review {
                let u = try db.query("""
                    UPDATE disagreements SET label = $1, label_source = 'review', labelled_at = $2, counted = counted + $3,
                        requested = GREATEST(0, requested - $3) WHERE id = $4 AND rollout = $5 AND (label_source IS NULL OR label_source = 'feedback')
                    """, [.text(r.label), .double(at), .int(Int64(r.counted)), .int(Int64(r.id)), .int(Int64(id))])
                guard u.affected == 1 else { throw StoreError(.conflict, "disagreement \(r.id) of rollout \(id) is already reviewed (or not this rollout's)") }
            }
            let u = try db.query("UPDATE rollouts SET stage = $1, state = $2, updated_at = $3 WHERE id = $4",
                                 [.text(stage), .text(state), .double(at), .int(Int64(id))])
            guard u.affected == 1 else { throw StoreError(.notFound, "no rollout \(id)") }
            try db.query("SELECT pg_notify($1, $2)", [.text(Self.rolloutChannel), .text(String(id))])
        }
    }

    public func rollouts() throws(StoreError) -> [RolloutRecord] {
        let r = try db.query("SELECT id, candidate, control, stage, state, created_at, updated_at FROM rollouts ORDER BY id")
        return (0..<r.count).map { i in
            RolloutRecord(id: r.int(i, 0), candidate: r.int(i, 1), control: r.int(i, 2), stage: r.text(i, 3) ?? "", state: r.text(i, 4) ?? "{}",
                          createdAt: r.double(i, 5), updatedAt: r.double(i, 6))
        }
    }

    public func addDisagreements(_ items: [DisagreementRecord]) throws(StoreError) {
        guard !items.isEmpty else { return }
        try db.transaction { () throws(StoreError) in
            for d in items {
                try db.query("""
                    INSERT INTO disagreements (rollout, text, control_label, candidate_label, control_confidence, candidate_confidence, expected_cost, at, requested, counted)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                    ON CONFLICT (rollout, text) DO UPDATE SET seen = disagreements.seen + 1, requested = disagreements.requested + excluded.requested,
                        counted = disagreements.counted + excluded.counted
                    """, [.int(Int64(d.rollout)), .text(d.text), .text(d.controlLabel), .text(d.candidateLabel), .double(d.controlConfidence),
                          .double(d.candidateConfidence), .double(d.expectedCost), .double(d.at), .int(Int64(d.requested)), .int(Int64(d.counted))])
            }
        }
    }

    static let disagreementColumns = "id, rollout, text, control_label, candidate_label, control_confidence, candidate_confidence, expected_cost, seen, at, label, label_source, labelled_at, requested, counted"

    func disagreementRows(_ r: PGRows) -> [DisagreementRecord] {
        (0..<r.count).map { i in
            DisagreementRecord(id: r.int(i, 0), rollout: r.int(i, 1), text: r.text(i, 2) ?? "", controlLabel: r.text(i, 3) ?? "",
                               candidateLabel: r.text(i, 4) ?? "", controlConfidence: r.double(i, 5), candidateConfidence: r.double(i, 6),
                               expectedCost: r.double(i, 7), seen: r.int(i, 8), requested: r.int(i, 13), counted: r.int(i, 14), at: r.double(i, 9),
                               label: r.text(i, 10), labelSource: r.text(i, 11), labelledAt: r.optionalDouble(i, 12))
        }
    }

    public func disagreements(rollout: Int, labelled: Bool?, since: Double?, requestedOnly: Bool, limit: Int, after: (cost: Double, id: Int)?) throws(StoreError) -> [DisagreementRecord] {
        var sql = "SELECT \(Self.disagreementColumns) FROM disagreements WHERE rollout = $1"
        var args: [SQLValue] = [.int(Int64(rollout))]
        func arg(_ v: SQLValue) -> String { args.append(v); return "$\(args.count)" }
        if requestedOnly { sql += " AND requested > 0" }
        if let t = since { sql += " AND at >= \(arg(.double(t)))" }
        if let l = labelled { sql += l ? " AND label_source = 'review'" : " AND (label_source IS NULL OR label_source = 'feedback')" }
        if let a = after {
            let c = arg(.double(a.cost)), id = arg(.int(Int64(a.id)))
            sql += " AND (expected_cost < \(c) OR (expected_cost = \(c) AND id > \(id)))"
        }
        sql += " ORDER BY expected_cost DESC, id LIMIT \(arg(.int(Int64(max(0, limit)))))"
        return disagreementRows(try db.query(sql, args))
    }

    public func disagreement(id: Int) throws(StoreError) -> DisagreementRecord? {
        disagreementRows(try db.query("SELECT \(Self.disagreementColumns) FROM disagreements WHERE id = $1", [.int(Int64(id))])).first
    }

    public func labelDisagreements(rollout: Int, text: String, label: String, source: String, at: Double) throws(StoreError) -> Int {
        try db.query("UPDATE disagreements SET label = $1, label_source = $2, labelled_at = $3 WHERE rollout = $4 AND text = $5 AND label IS NULL",
                     [.text(label), .text(source), .double(at), .int(Int64(rollout)), .text(text)]).affected
    }

    /// The rollout is driven by one replica: the one that started it, or whichever takes it
    /// over once that one's lease expired. Returns the driver's name when it is another.
    public func driveRollout(id: Int, now: Double) throws(StoreError) -> String? {
        let r = try db.query("""
            UPDATE rollouts o SET owner = $1 WHERE o.id = $2 AND (o.owner = $1 OR o.owner = ''
                OR NOT EXISTS (SELECT 1 FROM replicas r WHERE r.name = o.owner AND r.seen_at >= $3))
            RETURNING o.id
            """, [.text(replica), .int(Int64(id)), .double(now - leaseSeconds)])
        if !r.isEmpty { return nil }
        let o = try db.query("SELECT owner FROM rollouts WHERE id = $1", [.int(Int64(id))])
        guard !o.isEmpty else { throw StoreError(.notFound, "no rollout \(id)") }
        return o.text(0, 0) ?? ""
    }

    public func addRolloutEvidence(rollout: Int, payload: String) throws(StoreError) {
        try db.query("INSERT INTO rollout_evidence (rollout, replica, payload) VALUES ($1, $2, $3)", [.int(Int64(rollout)), .text(replica), .text(payload)])
    }

    public func takeRolloutEvidence(rollout: Int) throws(StoreError) -> [String] {
        let r = try db.query("DELETE FROM rollout_evidence WHERE rollout = $1 RETURNING id, payload", [.int(Int64(rollout))])
        return (0..<r.count).sorted { r.int($0, 0) < r.int($1, 0) }.compactMap { r.text($0, 1) }
    }
}
