import Foundation
import JSON
import JSONRPC
import RobustdClient

/// The workload of each write path: what a client does to it until the kill.
extension CrashEnvironment {
    /// The workload of a write path, on its own connection, until it ends or the daemon dies.
    static func workload(_ kind: CrashPath, _ socket: String, _ ledger: CrashLedger, env: CrashEnvironment) throws {
        let c = try RPCClient(path: socket)
        func call(_ m: String, _ p: JSONValue) throws -> JSONValue? {
            switch try c.call(m, p, timeout: 120) {
            case .success(let v): return v
            case .failure(let e): ledger.error("\(m): \(e.code) \(e.message)"); return nil
            }
        }
        switch kind {
        case .feedback:
            for i in 0... {
                let (t, l) = env.texts[i % env.texts.count]
                let key = "k\(i)"
                ledger.sending(key)
                guard try call("feedback/report", ["text": .string(t), "kind": "complaint", "correctLabel": .string(l), "idempotencyKey": .string(key)]) != nil else { return }
                ledger.acknowledged(key)
            }
        case .import:
            for i in 0... {
                let name = "imp\(i)"
                ledger.sending(name)
                guard try call("dataset/import", ["name": .string(name), "path": .string(env.importFile)]) != nil else { return }
                ledger.acknowledged(name)
            }
        case .fit:
            ledger.sending("fit")
            guard let r = try call("model/fit", ["dataset": "train", "lambdas": [0.03], "seed": 7, "activate": true]) else { return }
            ledger.set("version", r["version"] ?? .null)
            ledger.set("active", r["active"] ?? .null)
            ledger.acknowledged("fit")
        case .finetune:
            ledger.sending("job")
            guard let job = try call("finetune/start", ["regions": "all", "method": "lora", "layers": 2, "epochs": 1, "maxSeconds": 60, "autoPromote": false]),
                  let id = job["id"] else { return }
            ledger.set("job", id)
            ledger.acknowledged("job")
            while true {
                guard let s = try call("finetune/status", ["job": id]) else { return }
                ledger.set("state", s["state"] ?? .null)
                let phase = s["state"]?.stringValue == "running" ? s["progress"]?["phase"]?.stringValue ?? "running" : s["state"]?.stringValue ?? "?"
                ledger.set("phase", .string(phase))
                if let v = s["version"], !v.isNull { ledger.set("version", v) }
                if s["state"]?.stringValue.map({ ["succeeded", "failed", "cancelled", "interrupted"].contains($0) }) == true { return }
                usleep(20_000)
            }
        case .activate:
            for i in 0... {
                let v = i % 2 == 0 ? 2 : 1
                ledger.sending("\(v)")
                guard try call("model/activate", ["version": .int(Int64(v))]) != nil else { return }
                ledger.acknowledged("\(v)")
            }
        case .snapshots:
            for i in 0... {
                let (t, _) = env.texts[i % env.texts.count]
                _ = try call("score", ["inputs": [["text": .string(t)]]])
                if i % 5 == 0, let h = try call("metrics/history", ["metric": "requests.1m", "since": 0]) {
                    ledger.set("points", .int(Int64(h["points"]?.arrayValue?.count ?? 0)))
                    ledger.set("lastAt", h["points"]?.arrayValue?.last?["at"] ?? .null)
                }
            }
        }
    }

    /// One trial: start on a copy of the base state, run the workload, kill -9 after `delay`,
}
