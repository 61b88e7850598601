import Foundation
import JSON
import JSONRPC
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Failure cases through the daemon")
struct FeedbackTests {
    /// A daemon with the tiny model and a fitted version.
    static func fitted(state: TempDir, model: TempFolder) throws -> DaemonProcess {
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        let c = try d.client()
        if (try c.call("model/versions").get()["active"]?.intValue) == nil {
            _ = try c.call("dataset/import", ["name": "tiny", "records": VersionTests.records]).get()
            _ = try c.call("model/fit", ["dataset": "tiny", "lambdas": [0.01]], timeout: 60).get()
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
        _ = try c.call("score", ["inputs": [["id": "req-1", "text": "my card is late"]]]).get()
        let byID = try c.call("feedback/report", ["inputId": "req-1", "kind": "complaint", "correctLabel": "card_what", "idempotencyKey": "k1"]).get()
        #expect(byID["predictedLabel"] == "card_late")
        #expect(byID["cost"] == 10)  // the default cost of a complaint
        #expect(byID["duplicate"] == false)
        let retry = try c.call("feedback/report", ["inputId": "req-1", "kind": "complaint", "correctLabel": "card_what", "idempotencyKey": "k1"]).get()
        #expect(retry["duplicate"] == true)
        #expect(retry["id"] == byID["id"])
        let byText = try c.call("feedback/report", ["text": "a b c", "kind": "escalation", "cost": 40, "at": "2026-11-01T10:00:00Z"]).get()
        #expect(byText["predictedLabel"] == "abc")
        #expect(byText["at"] == 1_793_527_200)
        kill(d!.pid, SIGKILL)
        _ = d!.wait()
        d = nil
        let again = try Self.fitted(state: state, model: model)
        let list = try again.client().call("feedback/list").get()
        #expect(list["feedback"]?.arrayValue?.count == 2)
        let complaints = try again.client().call("feedback/list", ["kind": "complaint"]).get()
        #expect(complaints["feedback"]?.arrayValue?.count == 1)
        let byLabel = try again.client().call("feedback/list", ["label": "card_what"]).get()
        #expect(byLabel["feedback"]?[0]?["correctLabel"] == "card_what")
    }

    @Test("unknown labels, unknown ids, bad costs and times are clear errors and store nothing")
    func errors() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let d = try Self.fitted(state: state, model: model)
        let c = try d.client()
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
        #expect(try c.call("feedback/list").get()["feedback"] == [])
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
        let inputs: JSONValue = .array((0..<20).map { i -> JSONValue in ["id": .string("r\(i)"), "text": i % 2 == 0 ? "my card is late" : "a b c"] })
        _ = try c.call("score", ["inputs": inputs]).get()
        for i in stride(from: 0, to: 20, by: 2) {
            _ = try c.call("feedback/report", ["inputId": .string("r\(i)"), "kind": "complaint", "correctLabel": "card_what"]).get()
        }
        for window in ["hour", "day", "all"] {
            let r = try c.call("risk/regions", ["window": .string(window)]).get()
            #expect(r["traffic"] == 20, "\(window)")
            #expect(r["failures"] == 10)
            let ids = r["regions"]?.arrayValue?.compactMap { $0["id"]?.stringValue } ?? []
            #expect(ids.first == "intent:card_what", "\(ids)")
            #expect((r["expectedCostPer1000"]?.doubleValue ?? 0) > 0)
        }
        let only = try c.call("risk/regions", ["kind": "intent"]).get()
        #expect(only["regions"]?.arrayValue?.allSatisfy { $0["kind"] == "intent" } == true)
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
        _ = try c.call("dataset/import", ["name": "tiny", "records": VersionTests.records]).get()
        _ = try c.call("model/fit", ["dataset": "tiny", "lambdas": [0.01]], timeout: 60).get()
        let r = try c.call("risk/flag", ["inputs": [["text": "my card is late"], ["text": "a b c"], ["text": "the"]], "perturb": ["n": 2]]).get()
        #expect(r["scored"] == 3)
        let flagged = r["flagged"]?.arrayValue ?? []
        let reasons = flagged.map { f in (f["index"]?.intValue ?? -1, f["reasons"]?.arrayValue?.compactMap { $0["reason"]?.stringValue } ?? []) }
        #expect(reasons.contains { $0.0 == 1 && $0.1.contains("high_impact") }, "\(reasons)")
        #expect(!reasons.contains { $0.0 == 0 && $0.1.isEmpty })
        let score = try c.call("score", ["inputs": [["text": "a b c"]]]).get()
        #expect(score["results"]?[0]?["risk"]?["impact"] == 3)
        let fb = try c.call("feedback/report", ["text": "a b c", "kind": "complaint"]).get()
        #expect(fb["cost"] == 7)
        let misrouted = try c.call("feedback/report", ["text": "a b c", "kind": "complaint", "correctLabel": "card_what"]).get()
        #expect(misrouted["cost"] == 99)  // the configured misrouting cost of (card_what answered as abc)
        // A reported failure makes the same text "near_failure".
        let again = try c.call("risk/flag", ["inputs": [["text": "a b c"]]]).get()
        let rs = again["flagged"]?[0]?["reasons"]?.arrayValue?.compactMap { $0["reason"]?.stringValue } ?? []
        #expect(rs.contains("near_failure"), "\(rs)")
    }
}
