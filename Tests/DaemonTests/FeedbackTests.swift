import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Failure cases through the daemon")
struct FeedbackTests {
    /// A daemon with the tiny model and a fitted version.
    static func fitted(state: TempDir, model: TempFolder) throws -> DaemonProcess {
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        let c = try d.client()
        if try c.call(ModelVersions.self, .init()).get().active == nil {
            _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
            _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        }
        return d
    }

    @Test("reports by id and by text are committed before the answer; a retried key is not counted twice; kill -9 loses nothing")
    func reportAndIdempotency() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var d: DaemonProcess? = try Self.fitted(state: state, model: model)
        let c = try d!.client()
        _ = try c.call(Score.self, .init(inputs: [.init(id: "req-1", text: "my card is late")])).get()
        let report = FeedbackReport.Params(inputId: "req-1", kind: .complaint, correctLabel: "card_what", idempotencyKey: "k1")
        let byID = try c.call(FeedbackReport.self, report).get()
        #expect(byID.predictedLabel == "card_late")
        #expect(byID.cost == 10)  // the default cost of a complaint
        #expect(byID.duplicate == false)
        let retry = try c.call(FeedbackReport.self, report).get()
        #expect(retry.duplicate == true)
        #expect(retry.id == byID.id)
        // `at` as an ISO 8601 string, as a client of any language may send it (the typed client sends seconds).
        let byText = try c.call("feedback/report", ["text": "a b c", "kind": "escalation", "cost": 40, "at": "2026-11-01T10:00:00Z"]).get()
        #expect(byText["predictedLabel"] == "abc")
        #expect(byText["at"] == 1_793_527_200)
        kill(d!.pid, SIGKILL)
        _ = d!.wait()
        d = nil
        let again = try Self.fitted(state: state, model: model)
        let c2 = try again.client()
        #expect(try c2.call(FeedbackList.self, .init()).get().feedback.count == 2)
        #expect(try c2.call(FeedbackList.self, .init(kind: .complaint)).get().feedback.count == 1)
        #expect(try c2.call(FeedbackList.self, .init(label: "card_what")).get().feedback.first?.correctLabel == "card_what")
    }

    @Test("unknown labels, unknown ids, bad costs and times are clear errors and store nothing")
    func errors() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let d = try Self.fitted(state: state, model: model)
        let c = try d.client()
        // Bad params as a client of any language sends them: the wire's validation.
        func field(_ p: JSONValue) throws -> String? {
            guard case .failure(let e) = try c.call("feedback/report", p) else { return "accepted" }
            return e.data?["field"]?.stringValue
        }
        #expect(try field(["text": "x", "kind": "complaint", "correctLabel": "no_such_intent"]) == "correctLabel")
        #expect(try field(["inputId": "never-scored", "kind": "complaint"]) == "inputId")
        #expect(try field(["text": "x", "kind": "shouting"]) == "kind")
        #expect(try field(["text": "x", "kind": "complaint", "cost": -1]) == "cost")
        #expect(try field(["text": "x", "kind": "complaint", "at": "yesterday"]) == "at")
        #expect(try field(["kind": "complaint"]) == "text")
        #expect(try c.call(FeedbackList.self, .init()).get().feedback.isEmpty)
    }
}

@Suite("risk/regions through the daemon")
struct RegionsThroughDaemonTests {
    @Test("scored traffic and reported failures rank the intent that fails first, in every window")
    func regions() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let d = try FeedbackTests.fitted(state: state, model: model)
        let c = try d.client()
        let inputs = (0..<20).map { i in Score.Input(id: "r\(i)", text: i % 2 == 0 ? "my card is late" : "a b c") }
        _ = try c.call(Score.self, .init(inputs: inputs)).get()
        for i in stride(from: 0, to: 20, by: 2) {
            _ = try c.call(FeedbackReport.self, .init(inputId: "r\(i)", kind: .complaint, correctLabel: "card_what")).get()
        }
        for window in RiskRegions.Window.allCases {
            let r = try c.call(RiskRegions.self, .init(window: window)).get()
            #expect(r.traffic == 20, "\(window)")
            #expect(r.failures == 10)
            let ids = r.regions.map(\.id)
            #expect(ids.first == "intent:card_what", "\(ids)")
            #expect(r.expectedCostPer1000 > 0)
        }
        let only = try c.call(RiskRegions.self, .init(kind: .intent)).get()
        #expect(only.regions.allSatisfy { $0.kind == .intent })
    }
}

@Suite("Configuration file and risk/flag")
struct ConfigAndFlagTests {
    @Test("the configuration file is read; a bad one stops the daemon naming the line")
    func configFile() throws {
        let dir = TempDir()
        let bad = dir.path + "/bad.toml"
        try Data("[costs]\ncomplaint = 10\n[impact]\ncard = nan\n".utf8).write(to: URL(fileURLWithPath: bad))
        let (status, _, err) = try run(Binaries.robustd, ["--socket", dir.path + "/s.sock", "--config", bad, "--state-dir", dir.path + "/st"])
        #expect(status != 0)
        #expect(err.contains("line 4"))
        let typo = dir.path + "/typo.toml"
        try Data("[risk]\nhigh_risk = 0.3\n".utf8).write(to: URL(fileURLWithPath: typo))
        let (s2, _, e2) = try run(Binaries.robustd, ["--socket", dir.path + "/s.sock", "--config", typo, "--state-dir", dir.path + "/st"])
        #expect(s2 != 0)
        #expect(e2.contains("risk.high_risk"))
    }

    @Test("risk/flag returns only risky inputs with reasons; weights and costs come from the configuration")
    func flag() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let dir = TempDir()
        let cfg = dir.path + "/robustd.toml"
        try Data("[costs]\ncomplaint = 7\n\n[impact]\nabc = 3  # costly intent\n\n[risk]\nlow_confidence = 0.5\n\n[misrouting.card_what]\nabc = 99\n".utf8).write(to: URL(fileURLWithPath: cfg))
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--config", cfg])
        let c = try d.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        var flagParams = Score.Params(inputs: ["my card is late", "a b c", "the"].map { Score.Input(text: $0) })
        flagParams.perturb = .init(n: 2)
        let r = try c.call(RiskFlag.self, flagParams).get()
        #expect(r.scored == 3)
        let reasons = r.flagged.map { f in (f.index, f.reasons.map(\.reason)) }
        #expect(reasons.contains { $0.0 == 1 && $0.1.contains(.highImpact) }, "\(reasons)")
        #expect(!reasons.contains { $0.0 == 0 && $0.1.isEmpty })
        let score = try c.call(Score.self, .init(inputs: [.init(text: "a b c")])).get()
        #expect(score.results.first?.risk.impact == 3)
        let fb = try c.call(FeedbackReport.self, .init(text: "a b c", kind: .complaint)).get()
        #expect(fb.cost == 7)
        let misrouted = try c.call(FeedbackReport.self, .init(text: "a b c", kind: .complaint, correctLabel: "card_what")).get()
        #expect(misrouted.cost == 99)  // the configured misrouting cost of (card_what answered as abc)
        // A reported failure makes the same text "near_failure".
        let again = try c.call(RiskFlag.self, .init(inputs: [.init(text: "a b c")])).get()
        let rs = again.flagged.first?.reasons.map(\.reason) ?? []
        #expect(rs.contains(.nearFailure), "\(rs)")
    }
}
