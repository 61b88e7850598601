import Foundation

/// Rollouts and their disagreements in SQLite (migration 7; docs/rollout.md).
extension SQLiteStore {
    public func createRollout(candidate: Int, control: Int, stage: String, state: (Int) -> String, at: Double) throws(StoreError) -> RolloutRecord {
        try db.transaction { () throws(StoreError) -> RolloutRecord in
            if let running = try rollouts().first(where: \.isRunning) {
                throw StoreError(.conflict, "rollout \(running.id) of version \(running.candidate) is running (\(running.stage)); abort it or wait for its end")
            }
            try db.prepare("INSERT INTO rollouts (candidate, control, stage, state, created_at, updated_at) VALUES (?, ?, ?, '{}', ?, ?)")
                .run([.int(Int64(candidate)), .int(Int64(control)), .text(stage), .double(at), .double(at)])
            let id = Int(db.lastInsertRowID)
            let text = state(id)
            try db.prepare("UPDATE rollouts SET state = ? WHERE id = ?").run([.text(text), .int(Int64(id))])
            return RolloutRecord(id: id, candidate: candidate, control: control, stage: stage, state: text, createdAt: at, updatedAt: at)
        }
    }

    public func updateRollout(id: Int, stage: String, state: String, at: Double, review: (id: Int, label: String, counted: Int)?) throws(StoreError) {
        try db.transaction { () throws(StoreError) in
            if let r = review {
                try db.prepare("UPDATE disagreements SET label = ?, label_source = 'review', labelled_at = ?, counted = counted + ?, requested = max(0, requested - ?) WHERE id = ? AND rollout = ? AND (label_source IS NULL OR label_source = 'feedback')")
                    .run([.text(r.label), .double(at), .int(Int64(r.counted)), .int(Int64(r.counted)), .int(Int64(r.id)), .int(Int64(id))])
                guard db.changes == 1 else { throw StoreError(.conflict, "disagreement \(r.id) of rollout \(id) is already reviewed (or not this rollout's)") }
            }
            try db.prepare("UPDATE rollouts SET stage = ?, state = ?, updated_at = ? WHERE id = ?")
                .run([.text(stage), .text(state), .double(at), .int(Int64(id))])
            guard db.changes == 1 else { throw StoreError(.notFound, "no rollout \(id)") }
        }
    }

    public func rollouts() throws(StoreError) -> [RolloutRecord] {
        let s = try db.prepare("SELECT id, candidate, control, stage, state, created_at, updated_at FROM rollouts ORDER BY id")
        var out: [RolloutRecord] = []
        while try s.step() {
            out.append(RolloutRecord(id: Int(s.int(0)), candidate: Int(s.int(1)), control: Int(s.int(2)), stage: s.text(3) ?? "", state: s.text(4) ?? "{}",
                                     createdAt: s.double(5), updatedAt: s.double(6)))
        }
        return out
    }

    public func addDisagreements(_ items: [DisagreementRecord]) throws(StoreError) {
        guard !items.isEmpty else { return }
        try db.transaction { () throws(StoreError) in
            let s = try db.prepare("""
                INSERT INTO disagreements (rollout, text, control_label, candidate_label, control_confidence, candidate_confidence, expected_cost, at, requested, counted)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (rollout, text) DO UPDATE SET seen = seen + 1, requested = requested + excluded.requested, counted = counted + excluded.counted
                """)
            for d in items {
                try s.run([.int(Int64(d.rollout)), .text(d.text), .text(d.controlLabel), .text(d.candidateLabel), .double(d.controlConfidence),
                           .double(d.candidateConfidence), .double(d.expectedCost), .double(d.at), .int(Int64(d.requested)), .int(Int64(d.counted))])
            }
        }
    }

    static let disagreementColumns = "id, rollout, text, control_label, candidate_label, control_confidence, candidate_confidence, expected_cost, seen, at, label, label_source, labelled_at, requested, counted"

    func disagreementRow(_ s: Statement) -> DisagreementRecord {
        DisagreementRecord(id: Int(s.int(0)), rollout: Int(s.int(1)), text: s.text(2) ?? "", controlLabel: s.text(3) ?? "", candidateLabel: s.text(4) ?? "",
                           controlConfidence: s.double(5), candidateConfidence: s.double(6), expectedCost: s.double(7), seen: Int(s.int(8)),
                           requested: Int(s.int(13)), counted: Int(s.int(14)), at: s.double(9), label: s.text(10), labelSource: s.text(11),
                           labelledAt: s.isNull(12) ? nil : s.double(12))
    }

    public func disagreements(rollout: Int, labelled: Bool?, since: Double?, requestedOnly: Bool, limit: Int, after: (cost: Double, id: Int)?) throws(StoreError) -> [DisagreementRecord] {
        var sql = "SELECT \(Self.disagreementColumns) FROM disagreements WHERE rollout = ?"
        var args: [SQLValue] = [.int(Int64(rollout))]
        if requestedOnly { sql += " AND requested > 0" }
        if let t = since { sql += " AND at >= ?"; args.append(.double(t)) }
        if let l = labelled { sql += l ? " AND label_source = 'review'" : " AND (label_source IS NULL OR label_source = 'feedback')" }
        if let a = after {
            sql += " AND (expected_cost < ? OR (expected_cost = ? AND id > ?))"
            args += [.double(a.cost), .double(a.cost), .int(Int64(a.id))]
        }
        sql += " ORDER BY expected_cost DESC, id LIMIT ?"
        args.append(.int(Int64(max(0, limit))))
        let s = try db.prepare(sql)
        try s.bind(args)
        var out: [DisagreementRecord] = []
        while try s.step() { out.append(disagreementRow(s)) }
        return out
    }

    public func disagreement(id: Int) throws(StoreError) -> DisagreementRecord? {
        let s = try db.prepare("SELECT \(Self.disagreementColumns) FROM disagreements WHERE id = ?")
        try s.bind([.int(Int64(id))])
        return try s.step() ? disagreementRow(s) : nil
    }

    public func labelDisagreements(rollout: Int, text: String, label: String, source: String, at: Double) throws(StoreError) -> Int {
        try db.prepare("UPDATE disagreements SET label = ?, label_source = ?, labelled_at = ? WHERE rollout = ? AND text = ? AND label IS NULL")
            .run([.text(label), .text(source), .double(at), .int(Int64(rollout)), .text(text)])
        return db.changes
    }
}
