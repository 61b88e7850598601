import Foundation
import JSON
import JSONRPC
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("eval/run")
struct EvalTests {
    @Test("a version measured on labelled data (accuracy, macro-F1, cost, ECE, out of scope, typos), and two side by side")
    func run() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        let records: JSONValue = .array([
            ["text": "my card is late", "label": "card_late"], ["text": "the card ?", "label": "card_what"], ["text": "a b c", "label": "abc"],
            ["text": "my card is late a a", "label": "card_late"], ["text": "weather on mars", "label": "elsewhere"],
        ])
        _ = try c.call("dataset/import", ["name": "check", "records": records]).get()
        let r = try c.call("eval/run", ["dataset": "check"], timeout: 60).get()
        #expect(r["split"] == "all")
        #expect(r["examples"] == 5)
        let rep = try #require(r["reports"]?[0])
        #expect(rep["version"] == 1)
        #expect(rep["inScope"] == 4)
        let acc = rep["accuracy"]?.doubleValue ?? -1
        #expect(acc >= 0 && acc <= 1)
        #expect((rep["macroF1"]?.doubleValue ?? -1) >= 0)
        #expect(rep["outOfScope"]?["examples"] == 1)
        #expect(rep["typos"]?.arrayValue?.count == 2)
        #expect(abs((rep["costPer1000"]?.doubleValue ?? 0) - 1000 * (rep["costPerRequest"]?.doubleValue ?? 0)) < 1e-6)
        // Cost: each error costs costs.complaint (10) by default.
        let errors = Double(4) * (1 - acc)
        #expect(abs((rep["costPerRequest"]?.doubleValue ?? 0) - 10 * errors / 4) < 1e-6)

        let job = try c.call("finetune/start", ["regions": "all", "method": "head", "epochs": 2, "autoPromote": false]).get()
        let done = try FineTuneTests.waitForJob(c, Int(job["id"]?.intValue ?? 0))
        let both = try c.call("eval/run", ["dataset": "check", "compare": done["version"]!, "typoRates": []], timeout: 60).get()
        #expect(both["reports"]?.arrayValue?.count == 2)
        #expect(both["reports"]?[1]?["version"] == done["version"])
        #expect(both["reports"]?[0]?["typos"] == [])
        #expect(both["comparison"]?["examples"] == 4)
        #expect(both["comparison"]?["cost"]?["mcnemarP"] != nil)

        for (params, field) in [(["dataset": "nope"] as JSONValue, "dataset"), (["dataset": "check", "typoRates": [2]], "typoRates"),
                                (["dataset": "check", "version": 99], "version"), (["dataset": "check", "split": "test"], "split")] {
            guard case .failure(let e) = try c.call("eval/run", params, timeout: 30) else { Issue.record("accepted \(params)"); continue }
            #expect(e.code.rawValue == -32602 || e.code.rawValue == -32030, "\(field): \(e)")
        }
    }
}
