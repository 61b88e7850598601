import Foundation
import JSON
import JSONRPC
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
        let train = try c.call("dataset/import", ["name": "banking77", "path": .string(Self.banking77.appendingPathComponent("train.csv").path),
                                                  "labelField": "category"], timeout: 60).get()
        #expect(train["imported"]?.intValue.map { $0 > 9900 } == true, "\(train)")
        #expect(train["dataset"]?["labels"] == 77)
        let read = train["read"]?.intValue ?? 0, imported = train["imported"]?.intValue ?? 0, dups = train["duplicates"]?.intValue ?? -1
        #expect(read == 10003)
        #expect(read - imported == dups)
        let test = try c.call("dataset/import", ["name": "banking77-test", "path": .string(Self.banking77.appendingPathComponent("test.csv").path),
                                                 "labelField": "category", "split": "test"], timeout: 60).get()
        #expect(test["dataset"]?["splits"]?["test"] == 3080)
        // Acknowledged, then kill -9: nothing is lost.
        kill(d!.pid, SIGKILL)
        _ = d!.wait()
        d = nil
        let again = try DaemonProcess(extraArgs: args)
        let list = try again.client().call("dataset/list").get()
        let names = list["datasets"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        #expect(names == ["banking77", "banking77-test"])
        #expect(list["datasets"]?[1]?["rows"] == 3080)
    }

    @Test("inline records, JSONL files, splits, duplicates and conflicts")
    func inlineAndJSONL() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        let r = try c.call("dataset/import", ["name": "tiny", "records": [
            ["text": "where is my card", "label": "card_arrival", "split": "train"],
            ["text": "where is my card", "label": "card_arrival", "split": "train"],
            ["text": "where is my card", "label": "lost_card", "split": "train"],
            ["text": "top up failed", "label": "top_up_failed", "split": "val"],
        ], "splitField": "split"]).get()
        #expect(r["imported"] == 3)
        #expect(r["duplicates"] == 1)
        #expect(r["duplicateLines"]?[0]?["line"] == 2)
        #expect(r["conflicts"] == 1)
        #expect(r["dataset"]?["splits"]?["validation"] == 1)
        let file = d.dir.path + "/data.jsonl"
        try Data("{\"utterance\":\"a\",\"intent\":\"x\"}\n{\"utterance\":\"b\",\"intent\":\"y\"}\n".utf8).write(to: URL(fileURLWithPath: file))
        let j = try c.call("dataset/import", ["name": "j", "path": .string(file), "textField": "utterance", "labelField": "intent"]).get()
        #expect(j["imported"] == 2)
    }

    @Test("bad data is refused with the lines and nothing is half-imported; bad params are named")
    func errors() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        let file = d.dir.path + "/bad.csv"
        try Data("text,label\nfine,a\n,b\nalso fine,c\nno label,\n".utf8).write(to: URL(fileURLWithPath: file))
        guard case .failure(let e) = try c.call("dataset/import", ["name": "bad", "path": .string(file)]) else { Issue.record("accepted"); return }
        #expect(e.code.rawValue == -32030)
        #expect(e.data?["count"] == 2)
        #expect(e.data?["problems"]?[0]?["line"] == 3)
        #expect(e.data?["problems"]?[1]?["line"] == 5)
        #expect(e.message.contains("line 3"))
        #expect(try c.call("dataset/list").get()["datasets"] == [])

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
        _ = try c.call("dataset/import", ["name": "n", "records": [["text": "a", "label": "b"]]]).get()
        guard case .failure(let taken) = try c.call("dataset/import", ["name": "n", "records": [["text": "c", "label": "d"]]]) else { Issue.record(); return }
        #expect(taken.code.rawValue == -32031)
        let replaced = try c.call("dataset/import", ["name": "n", "records": [["text": "c", "label": "d"], ["text": "e", "label": "d"]], "replace": true]).get()
        #expect(replaced["dataset"]?["rows"] == 2)
    }
}
