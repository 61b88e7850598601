import Foundation
import JSON
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

    @Test("Neovim (headless, a real LSP client) shows robustd's diagnostics and hover on an utterance file and updates them after an edit")
    func neovim() throws {
        guard let nvim = ["/usr/bin/nvim", "/usr/local/bin/nvim"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            if ProcessInfo.processInfo.environment["CI"] != nil { Issue.record("nvim is missing in CI") }
            return
        }
        let (state, model) = try Self.preparedState()
        let dir = TempDir()
        let file = dir.path + "/check.utter"
        try "my card is late  # expect: card_late\nthe card ?\n# expect: abc\nweather on mars\n".write(toFile: file, atomically: true, encoding: .utf8)
        let cmd: JSONValue = .array([.string(Binaries.robustd.path), "--stdio", "--model", .string(model.path), "--state-dir", .string(state.path)])
        let out = dir.path + "/out.json"
        let env = ["REPO": Binaries.packageRoot.path, "ROBUSTD_CMD": JSONWriter.string(cmd), "UTTER_FILE": file, "OUT_FILE": out,
                   "HOME": dir.path, "XDG_CONFIG_HOME": dir.path, "XDG_DATA_HOME": dir.path, "XDG_STATE_HOME": dir.path,
                   "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        let script = Binaries.packageRoot.appendingPathComponent("scripts/nvim-lsp-check.lua").path
        let (status, o, e) = try run(URL(fileURLWithPath: nvim), ["--headless", "-n", "-i", "NONE", "-u", script], env: env)
        #expect(status == 0, "\(o) \(e)")
        let r = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: out))))
        #expect(r["filetype"] == "utterances")
        #expect(r["gotFirst"] == true, "\(r)")
        #expect((r["first"]?.arrayValue?.count ?? 0) >= 1)
        #expect(r["hover"]?.stringValue?.contains("confidence") == true, "\(r)")
        #expect(r["gotSecond"] == true, "\(r)")
        #expect(r["second"]?.arrayValue?.contains { $0["lnum"] == 3 && ($0["message"]?.stringValue ?? "").contains("expected card_late") } == true)
    }
}
