import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// What a restarted daemon must hold, given what its client was told before the kill.
extension CrashEnvironment {
    func check(_ kind: CrashPath, _ d: CrashDaemon, _ ledger: CrashLedger, _ r: inout CrashResult) throws {
        let acked = ledger.acked, inFlight = ledger.inFlight
        r.acked = acked.count
        let versions = try d.call(ModelVersions.self, .init(limit: 1000))
        let active = versions.active
        var allowedActive: Set<Int> = [1]
        switch kind {
        case .feedback:
            var counts: [String: Int] = [:]
            var cursor: String? = nil
            repeat {
                let page = try d.call(FeedbackList.self, .init(limit: 1000, cursor: cursor))
                for e in page.feedback { counts[e.idempotencyKey ?? "?", default: 0] += 1 }
                cursor = page.nextCursor
            } while cursor != nil
            for k in acked where counts[k, default: 0] == 0 { r.lost += 1 }
            r.duplicated = counts.values.filter { $0 > 1 }.count
            let unknown = counts.keys.filter { !acked.contains($0) && $0 != inFlight }
            if !unknown.isEmpty { r.violations.append("reports never sent: \(unknown.prefix(3))") }
        case .import:
            var seen: [String: Int] = [:]
            for ds in try d.call(DatasetList.self).datasets where ds.name.hasPrefix("imp") { seen[ds.name] = ds.rows }
            for k in acked where seen[k] == nil { r.lost += 1 }
            for (name, rows) in seen {
                if rows != importRows { r.halfWritten += 1; r.violations.append("dataset \(name) holds \(rows) of \(importRows) rows") }
                if !acked.contains(name) && name != inFlight { r.violations.append("dataset \(name) never sent") }
            }
        case .fit:
            // A fit activates its version only when asked (or when nothing is active): the
            // answer says which. Unanswered, it may have committed just before the kill.
            let made = newVersions(versions)
            if acked.contains("fit"), let v = ledger.last("version")?.intValue.map(Int.init) {
                if ledger.last("active")?.boolValue == true { allowedActive = [v] }
                if !made.contains(where: { $0.0 == v && $0.1 != .failed }) { r.lost += 1 }
            } else {
                allowedActive.formUnion(made.map(\.0))
            }
        case .finetune:
            if let id = ledger.last("job")?.intValue {
                let s = try d.call(FineTuneStatus.self, .init(job: Int(id)))
                if ledger.last("state")?.stringValue == "running" && s.state == .running {
                    r.violations.append("the job killed while running is still shown running")
                }
                if s.state == .succeeded, s.version == nil { r.violations.append("a succeeded job without its version") }
            } else if acked.contains("job") { r.lost += 1 }
            r.phase = ledger.last("phase")?.stringValue ?? (acked.contains("job") ? "queued" : "before the answer")
        case .activate:
            let last = acked.last.flatMap { Int($0) } ?? 1
            allowedActive = [last]
            if let f = inFlight.flatMap({ Int($0) }) { allowedActive.insert(f) }
        case .snapshots:
            let points = try d.call(MetricsHistory.self, .init(metric: "requests.1m", since: 0)).points
            let seen = Int(ledger.last("points")?.intValue ?? 0)
            r.acked = seen
            if points.count < seen { r.lost += seen - points.count }
            let times = points.map(\.at)
            if zip(times, times.dropFirst()).contains(where: { $0 >= $1 }) { r.violations.append("snapshot times not increasing") }
        }
        if let a = active, !allowedActive.contains(a) {
            r.wrongActive += 1
            r.violations.append("active version \(a), expected one of \(allowedActive.sorted())")
        } else if active == nil {
            r.wrongActive += 1
            r.violations.append("no active version")
        }
        // Every version a trial made that is not marked failed must load and serve.
        for (id, status) in newVersions(versions) where status != .failed {
            if status == .writing { r.halfWritten += 1; r.violations.append("version \(id) still writing after the restart"); continue }
            guard case .success = try d.client.call(ModelActivate.self, .init(version: id), timeout: 60) else {
                r.halfWritten += 1
                r.violations.append("version \(id) is listed \(status) but does not activate")
                continue
            }
            guard case .success = try d.client.call(Score.self, .init(inputs: [.init(text: "where is my card")]), timeout: 60) else {
                r.halfWritten += 1
                r.violations.append("version \(id) activated but does not score")
                continue
            }
        }
        if r.lost > 0 { r.violations.append("\(r.lost) acknowledged writes lost") }
        if r.duplicated > 0 { r.violations.append("\(r.duplicated) writes stored twice") }
    }

    func newVersions(_ versions: ModelVersions.Result) -> [(Int, ModelVersions.Status)] {
        versions.versions.filter { $0.id > 2 }.map { ($0.id, $0.status) }
    }
}
