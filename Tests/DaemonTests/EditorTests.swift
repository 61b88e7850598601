import Foundation
import JSONRPC
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Editor integration: LSP text sync on utterance files")
struct EditorTests {
    /// A state folder with version 1 fitted on the tiny model, and the model.
    static func preparedState() throws -> (TempDir, TempFolder) {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, _) = try FineTuneTests.prepared(state: state, model: model)
        #expect(d.terminate() == 0)
        return (state, model)
    }

    /// The next publishDiagnostics for `uri`, answering nothing else.
    static func diagnostics(_ d: StdioDaemon, _ uri: String) -> JSONValue? {
        while let m = d.receive(timeout: 20) {
            if m["method"] == "textDocument/publishDiagnostics", m["params"]?["uri"] == .string(uri) { return m["params"] }
        }
        return nil
    }

    @Test("didOpen publishes diagnostics (risk, expectation mismatches); incremental didChange re-scores only changed lines; hover; didClose clears; a new version republishes")
    func textSync() throws {
        let (state, model) = try Self.preparedState()
        let d = try StdioDaemon(extraArgs: ["--model", model.path, "--state-dir", state.path])
        let initialize = d.request(1, "initialize", ["processId": .null, "capabilities": .object([:])])
        #expect(initialize?["result"]?["capabilities"]?["textDocumentSync"]?["change"] == 2)
        #expect(initialize?["result"]?["capabilities"]?["hoverProvider"] == true)
        d.send(.notification(method: "initialized", params: .object([:])))
        var active: JSONValue? = nil
        for i in 0..<100 where active != 1 {
            active = d.request(Int64(10 + i), "metrics/get", ["metrics": ["version.active"]])?["result"]?["values"]?["version.active"]
            usleep(20_000)
        }
        #expect(active == 1)
        let uri = "file:///tmp/check.utter"
        let text = "my card is late  # expect: card_late\n# a comment\n# expect: abc\nthe card ?\nweather on mars\n\n  a b c  # expect: nonsense\n"
        d.send(.notification(method: "textDocument/didOpen", params: ["textDocument": ["uri": .string(uri), "languageId": "utterances", "version": 1, "text": .string(text)]]))
        let first = try #require(Self.diagnostics(d, uri))
        #expect(first["version"] == 1)
        let diags = first["diagnostics"]?.arrayValue ?? []
        // The annotation naming an unknown intent is a warning on its line.
        #expect(diags.contains { $0["code"] == "unknown_intent" && $0["range"]?["start"]?["line"] == 6 && $0["range"]?["start"]?["character"] == 2 })
        // Every expectation diagnostic agrees with the hover's prediction.
        for line in [0, 3] {
            let hover = d.request(Int64(200 + line), "textDocument/hover", ["textDocument": ["uri": .string(uri)], "position": ["line": .int(Int64(line)), "character": 1]])
            let md = hover?["result"]?["contents"]?["value"]?.stringValue ?? ""
            #expect(md.contains("confidence") && md.contains("risk"), "\(md)")
            let mismatch = diags.contains { $0["code"] == "expectation" && $0["range"]?["start"]?["line"] == .int(Int64(line)) }
            #expect(mismatch == md.contains("✗ differs"), "line \(line): \(md)")
        }
        #expect(d.request(300, "textDocument/hover", ["textDocument": ["uri": .string(uri)], "position": ["line": 1, "character": 0]])?["result"] == .null)
        func linesScored(_ id: Int64) -> JSONValue? { d.request(id, "metrics/get", ["metrics": ["documents"]])?["result"]?["values"]?["documents.linesScored"] }
        #expect(linesScored(400) == 4)
        // Incremental change: line 4 "weather on mars" → "my card ?"; only that line is scored.
        d.send(.notification(method: "textDocument/didChange", params: [
            "textDocument": ["uri": .string(uri), "version": 2],
            "contentChanges": [["range": ["start": ["line": 4, "character": 0], "end": ["line": 4, "character": 15]], "text": "my card ?"]],
        ]))
        let second = try #require(Self.diagnostics(d, uri))
        #expect(second["version"] == 2)
        #expect(linesScored(401) == 5)
        let hover4 = d.request(402, "textDocument/hover", ["textDocument": ["uri": .string(uri)], "position": ["line": 4, "character": 3]])
        #expect(hover4?["result"]?["range"]?["end"]?["character"] == 9)
        // A new active version: the open file is scored again and republished.
        _ = d.request(500, "model/fit", ["dataset": "tiny", "lambdas": [0.1], "activate": true])
        let third = try #require(Self.diagnostics(d, uri))
        #expect(third["version"] == 2)
        #expect(linesScored(501) == 9)  // all four utterances again
        d.send(.notification(method: "textDocument/didClose", params: ["textDocument": ["uri": .string(uri)]]))
        #expect(Self.diagnostics(d, uri)?["diagnostics"] == [])
        // Other files are not ours.
        d.send(.notification(method: "textDocument/didOpen", params: ["textDocument": ["uri": "file:///tmp/x.py", "languageId": "python", "version": 1, "text": "print(1)"]]))
        #expect(d.request(600, "metrics/get", ["metrics": ["documents"]])?["result"]?["values"]?["documents.open"] == 0)
        _ = d.request(700, "shutdown")
        d.send(.notification(method: "exit", params: nil))
        #expect(d.wait() == 0)
    }
}
