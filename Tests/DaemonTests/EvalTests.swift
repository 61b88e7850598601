import Foundation
import JSON
import JSONRPC
import RobustdAPI
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
        let records: [JSONValue] = [
            ["text": "my card is late", "label": "card_late"], ["text": "the card ?", "label": "card_what"], ["text": "a b c", "label": "abc"],
            ["text": "my card is late a a", "label": "card_late"], ["text": "weather on mars", "label": "elsewhere"],
        ]
        _ = try c.call(DatasetImportMethod.self, .init(name: "check", records: records)).get()
        let r = try c.call(EvalRun.self, .init(dataset: "check"), timeout: 60).get()
        #expect(r.split == "all")
        #expect(r.examples == 5)
        let rep = try #require(r.reports.first)
        #expect(rep.version == 1)
        #expect(rep.inScope == 4)
        #expect(rep.accuracy >= 0 && rep.accuracy <= 1)
        #expect(rep.macroF1 >= 0)
        #expect(rep.outOfScope?.examples == 1)
        #expect(rep.typos.count == 2)
        #expect(abs(rep.costPer1000 - 1000 * rep.costPerRequest) < 1e-6)
        // Cost: each error costs costs.complaint (10) by default.
        let errors = Double(4) * (1 - rep.accuracy)
        #expect(abs(rep.costPerRequest - 10 * errors / 4) < 1e-6)

        let job = try c.call(FineTuneStart.self, .init(regions: .all, method: .head, epochs: 2, autoPromote: false)).get()
        let candidate = try #require(try FineTuneTests.waitForJob(c, job.id).version)
        var compare = EvalRun.Params(dataset: "check")
        compare.compare = candidate
        compare.typoRates = []
        let both = try c.call(EvalRun.self, compare, timeout: 60).get()
        #expect(both.reports.count == 2)
        #expect(both.reports.last?.version == candidate)
        #expect(both.reports.first?.typos.isEmpty == true)
        #expect(both.comparison?.first == 1 && both.comparison?.second == candidate)
        #expect(both.comparison?.examples == 4)
        #expect((0...1).contains(both.comparison?.cost.mcnemarP ?? -1))

        // Bad params as a client of any language sends them: the wire's validation.
        for (params, field) in [(["dataset": "nope"] as JSONValue, "dataset"), (["dataset": "check", "typoRates": [2]], "typoRates"),
                                (["dataset": "check", "version": 99], "version"), (["dataset": "check", "split": "test"], "split")] {
            guard case .failure(let e) = try c.call("eval/run", params, timeout: 30) else { Issue.record("accepted \(params)"); continue }
            #expect(e.code.rawValue == -32602 || e.code.rawValue == -32030, "\(field): \(e)")
        }
    }
}
