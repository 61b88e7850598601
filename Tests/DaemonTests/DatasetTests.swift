import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Datasets through the daemon")
struct DatasetTests {
    static let banking77 = Paths.shared.appendingPathComponent("data/banking77")

    @Test("Banking77's CSV files import by path; the counts are right and survive a restart and a kill -9")
    func importBanking77() throws {
        let state = TempDir()
        let args = ["--state-dir", state.path]
        var d: DaemonProcess? = try DaemonProcess(extraArgs: args)
        let c = try d!.client()
        var trainParams = DatasetImportMethod.Params(name: "banking77", path: Self.banking77.appendingPathComponent("train.csv").path)
        trainParams.labelField = "category"
        let train = try c.call(DatasetImportMethod.self, trainParams, timeout: 60).get()
        #expect(train.imported > 9900, "\(train.imported)")
        #expect(train.dataset.labels == 77)
        #expect(train.read == 10003)
        #expect(train.read - train.imported == train.duplicates)
        var testParams = DatasetImportMethod.Params(name: "banking77-test", path: Self.banking77.appendingPathComponent("test.csv").path)
        testParams.labelField = "category"
        testParams.split = "test"
        let test = try c.call(DatasetImportMethod.self, testParams, timeout: 60).get()
        #expect(test.dataset.splits["test"] == 3080)
        // Acknowledged, then kill -9: nothing is lost.
        kill(d!.pid, SIGKILL)
        _ = d!.wait()
        d = nil
        let again = try DaemonProcess(extraArgs: args)
        let list = try again.client().call(DatasetList.self).get().datasets
        #expect(list.map(\.name) == ["banking77", "banking77-test"])
        #expect(list.last?.rows == 3080)
    }

    @Test("inline records, JSONL files, splits, duplicates and conflicts")
    func inlineAndJSONL() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        var inline = DatasetImportMethod.Params(name: "tiny", records: [
            ["text": "where is my card", "label": "card_arrival", "split": "train"],
            ["text": "where is my card", "label": "card_arrival", "split": "train"],
            ["text": "where is my card", "label": "lost_card", "split": "train"],
            ["text": "top up failed", "label": "top_up_failed", "split": "val"],
        ])
        inline.splitField = "split"
        let r = try c.call(DatasetImportMethod.self, inline).get()
        #expect(r.imported == 3)
        #expect(r.duplicates == 1)
        #expect(r.duplicateLines.first?.line == 2)
        #expect(r.conflicts == 1)
        #expect(r.dataset.splits["validation"] == 1)
        let file = d.dir.path + "/data.jsonl"
        try Data("{\"utterance\":\"a\",\"intent\":\"x\"}\n{\"utterance\":\"b\",\"intent\":\"y\"}\n".utf8).write(to: URL(fileURLWithPath: file))
        var jsonl = DatasetImportMethod.Params(name: "j", path: file)
        jsonl.textField = "utterance"
        jsonl.labelField = "intent"
        #expect(try c.call(DatasetImportMethod.self, jsonl).get().imported == 2)
    }

    @Test("bad data is refused with the lines and nothing is half-imported; bad params are named")
    func errors() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        let file = d.dir.path + "/bad.csv"
        try Data("text,label\nfine,a\n,b\nalso fine,c\nno label,\n".utf8).write(to: URL(fileURLWithPath: file))
        guard case .failure(let e) = try c.call(DatasetImportMethod.self, .init(name: "bad", path: file)) else { Issue.record("accepted"); return }
        #expect(e.code.rawValue == -32030)
        #expect(e.data?["count"] == 2)
        #expect(e.data?["problems"]?[0]?["line"] == 3)
        #expect(e.data?["problems"]?[1]?["line"] == 5)
        #expect(e.message.contains("line 3"))
        #expect(try c.call(DatasetList.self).get().datasets.isEmpty)

        // Bad params as a client of any language sends them: the wire's validation.
        func code(_ p: JSONValue) throws -> (Int, String?) {
            guard case .failure(let e) = try c.call("dataset/import", p) else { return (0, nil) }
            return (e.code.rawValue, e.data?["field"]?.stringValue)
        }
        #expect(try code(["name": "x", "path": "relative.csv"]) == (-32602, "path"))
        #expect(try code(["name": "x", "path": .string(d.dir.path)]) == (-32602, "path"))
        #expect(try code(["name": "x", "path": "/nonexistent/file.csv"]) == (-32602, "path"))
        #expect(try code(["name": "x"]) == (-32602, "path"))
        #expect(try code(["name": "bad name!", "records": [["text": "a", "label": "b"]]]) == (-32602, "name"))
        #expect(try code(["name": "x", "records": [["text": "a", "label": "b"]], "split": "holdout"]) == (-32602, "split"))
        #expect(try code(["name": "x", "records": [["text": ["nested"], "label": "b"]]]).0 == -32030)
        let txt = d.dir.path + "/data.txt"
        try Data("x".utf8).write(to: URL(fileURLWithPath: txt))
        #expect(try code(["name": "x", "path": .string(txt)]) == (-32602, "format"))
        // A taken name is a conflict unless replaced.
        _ = try c.call(DatasetImportMethod.self, .init(name: "n", records: [["text": "a", "label": "b"]])).get()
        guard case .failure(let taken) = try c.call(DatasetImportMethod.self, .init(name: "n", records: [["text": "c", "label": "d"]])) else { Issue.record(); return }
        #expect(taken.code.rawValue == -32031)
        var replace = DatasetImportMethod.Params(name: "n", records: [["text": "c", "label": "d"], ["text": "e", "label": "d"]])
        replace.replace = true
        #expect(try c.call(DatasetImportMethod.self, replace).get().dataset.rows == 2)
    }
}
