import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// The workload of each write path: what a client does to it until the kill.
extension CrashEnvironment {
    /// The workload of a write path, on its own connection, until it ends or the daemon dies.
    static func workload(_ kind: CrashPath, _ socket: String, _ ledger: CrashLedger, env: CrashEnvironment) throws {
        let c = try RPCClient(path: socket)
        func call<M: RPCRequest>(_ m: M.Type, _ p: M.Params) throws -> M.Result? {
            switch try c.call(m, p, timeout: 120) {
            case .success(let v): return v
            case .failure(let e): ledger.error("\(M.name): \(e.code) \(e.message)"); return nil
            }
        }
        switch kind {
        case .feedback:
            for i in 0... {
                let (t, l) = env.texts[i % env.texts.count]
                let key = "k\(i)"
                ledger.sending(key)
                guard try call(FeedbackReport.self, .init(text: t, kind: .complaint, correctLabel: l, idempotencyKey: key)) != nil else { return }
                ledger.acknowledged(key)
            }
        case .import:
            for i in 0... {
                let name = "imp\(i)"
                ledger.sending(name)
                guard try call(DatasetImportMethod.self, .init(name: name, path: env.importFile)) != nil else { return }
                ledger.acknowledged(name)
            }
        case .fit:
            ledger.sending("fit")
            guard let r = try call(ModelFit.self, .init(dataset: "train", lambdas: [0.03], seed: 7, activate: true)) else { return }
            ledger.set("version", .int(Int64(r.version)))
            ledger.set("active", .bool(r.active))
            ledger.acknowledged("fit")
        case .finetune:
            ledger.sending("job")
            guard let job = try call(FineTuneStart.self, .init(regions: .all, method: .lora, layers: 2, epochs: 1, maxSeconds: 60, autoPromote: false))
            else { return }
            ledger.set("job", .int(Int64(job.id)))
            ledger.acknowledged("job")
            while true {
                guard let s = try call(FineTuneStatus.self, .init(job: job.id)) else { return }
                ledger.set("state", .string(s.state.rawValue))
                ledger.set("phase", .string(s.state == .running ? s.progress.phase : s.state.rawValue))
                if let v = s.version { ledger.set("version", .int(Int64(v))) }
                if [.succeeded, .failed, .cancelled, .interrupted].contains(s.state) { return }
                usleep(20_000)
            }
        case .activate:
            for i in 0... {
                let v = i % 2 == 0 ? 2 : 1
                ledger.sending("\(v)")
                guard try call(ModelActivate.self, .init(version: v)) != nil else { return }
                ledger.acknowledged("\(v)")
            }
        case .snapshots:
            for i in 0... {
                let (t, _) = env.texts[i % env.texts.count]
                _ = try call(Score.self, .init(inputs: [.init(text: t)]))
                if i % 5 == 0, let h = try call(MetricsHistory.self, .init(metric: "requests.1m", since: 0)) {
                    ledger.set("points", .int(Int64(h.points.count)))
                    ledger.set("lastAt", h.points.last.map { .double($0.at) } ?? .null)
                }
            }
        }
    }

    /// One trial: start on a copy of the base state, run the workload, kill -9 after `delay`,
}
