import Foundation
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
            #expect(Array(ids.prefix(2)).sorted() == ["corrected:card_what", "predicted:card_late"], "\(ids)")
            #expect((r["expectedCostPer1000"]?.doubleValue ?? 0) > 0)
        }
        let only = try c.call("risk/regions", ["kind": "corrected"]).get()
        #expect(only["regions"]?.arrayValue?.allSatisfy { $0["kind"] == "corrected" } == true)
    }
}
