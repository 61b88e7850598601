import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

/// What the services restructuring promised: ready before answering, typed results end to
/// end, paging, base64 vectors; through the real binary and the typed client.
@Suite("Services: start-up readiness, typed calls, paging, base64 embeddings")
struct ServicesTests {
    /// Connects as soon as the socket accepts (no ping first) and scores at once.
    static func firstScore(state: TempDir, model: TempFolder) throws -> Result<Score.Result, RPCError> {
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path], waitReady: false)
        defer { d.terminate() }
        let deadline = Date().addingTimeInterval(10)
        var client: RPCClient?
        while client == nil {
            client = try? RPCClient(path: d.socketPath)
            guard client != nil || Date() < deadline else { throw ClientError("robustd did not listen: \(d.stderr)") }
            if client == nil { usleep(500) }
        }
        return try client!.call(Score.self, Score.Params(inputs: [.init(text: "my card is late")]), timeout: 30)
    }

    /// A tiny model and a state folder with version 1 active, its daemon stopped.
    static func stoppedWithAVersion() throws -> (TempFolder, TempDir) {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, _) = try FineTuneTests.prepared(state: state, model: model)
        d.terminate()
        return (model, state)
    }

    @Test("after a restart (graceful or kill -9) the very first score succeeds: requests wait while the active version loads")
    func firstScoreAfterRestart() throws {
        let (model, state) = try Self.stoppedWithAVersion()
        for trial in 0..<4 {
            let r = try Self.firstScore(state: state, model: model)
            let result = try r.get()
            #expect(result.version == 1, "trial \(trial)")
            #expect(result.results.count == 1)
        }
        // A kill -9 leaves no clean shutdown behind; the next start is ready just the same.
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        kill(d.pid, SIGKILL)
        _ = d.wait()
        #expect(try Self.firstScore(state: state, model: model).get().version == 1)
    }

    @Test("an active version whose files are damaged: the first score after the restart answers -32021 at once, not after the wait")
    func damagedActiveVersion() throws {
        let (model, state) = try Self.stoppedWithAVersion()
        let weights = state.path + "/versions/1/weights.safetensors"
        #expect(FileManager.default.fileExists(atPath: weights))
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: weights))
        let started = Date()
        let r = try Self.firstScore(state: state, model: model)
        guard case .failure(let e) = r else { Issue.record("scored with a damaged version"); return }
        #expect(e.code == .noVersion)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("a daemon with no version says so at once (no wait)")
    func noVersion() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let d = try DaemonProcess(extraArgs: ["--model", model.path])
        let started = Date()
        let r = try d.client().call(Score.self, Score.Params(inputs: [.init(text: "a")]))
        guard case .failure(let e) = r else { Issue.record("scored without a version"); return }
        #expect(e.code == .noVersion)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test("typed results: score, risk/flag and risk/regions decode into their API types; enums on the wire")
    func typedResults() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        let s = try c.call(Score.self, Score.Params(inputs: [.init(id: "x", text: "my card is late"), .init(text: "a b c")])).get()
        #expect(s.results.map(\.id) == ["x", nil])
        #expect(s.results.allSatisfy { $0.cached != nil && $0.version == s.version })
        let again = try c.call(Score.self, Score.Params(inputs: [.init(text: "my card is late")])).get()
        #expect(again.results[0].cached == true)
        #expect(again.results[0].label == s.results[0].label)
        let f = try c.call(RiskFlag.self, Score.Params(inputs: [.init(text: "zzz qqq"), .init(text: "my card is late")])).get()
        #expect(f.scored == 2)
        for item in f.flagged {
            #expect(!item.reasons.isEmpty || item.score.risk.level != .low)
            #expect(item.score.cached == nil)
        }
        let regions = try c.call(RiskRegions.self, RiskRegions.Params()).get()
        #expect(regions.window == .all)
        #expect(regions.regions.contains { $0.kind == .intent })
    }

    @Test("list methods page with an opaque cursor: every item once, in order; a foreign cursor is refused")
    func paging() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        for i in 0..<7 {
            _ = try c.call(FeedbackReport.self, FeedbackReport.Params(text: "report \(i)", kind: .complaint)).get()
        }
        let all = try c.call(FeedbackList.self, FeedbackList.Params(limit: 1000)).get()
        #expect(all.nextCursor == nil)
        var seen: [Int] = [], cursor: String? = nil, pages = 0
        repeat {
            let page = try c.call(FeedbackList.self, FeedbackList.Params(limit: 3, cursor: cursor)).get()
            seen += page.feedback.map(\.id)
            cursor = page.nextCursor
            pages += 1
        } while cursor != nil && pages < 100
        #expect(seen == all.feedback.map(\.id))
        #expect(pages == (all.feedback.count + 2) / 3)

        var examples: [String] = []
        cursor = nil
        repeat {
            let page = try c.call(DatasetExamples.self, DatasetExamples.Params(name: "tiny", limit: 7, cursor: cursor)).get()
            examples += page.examples.map(\.text)
            cursor = page.nextCursor
        } while cursor != nil
        let whole = try c.call(DatasetExamples.self, DatasetExamples.Params(name: "tiny")).get()
        #expect(examples == whole.examples.map(\.text))
        #expect(examples.count == whole.total)

        _ = try c.call(ModelFit.self, ModelFit.Params(dataset: "tiny"), timeout: 60).get()
        let first = try c.call(ModelVersions.self, ModelVersions.Params(limit: 1)).get()
        #expect(first.versions.map(\.id) == [1])
        let second = try c.call(ModelVersions.self, ModelVersions.Params(limit: 1, cursor: first.nextCursor)).get()
        #expect(second.versions.map(\.id) == [2])
        #expect(second.nextCursor == nil)
        #expect(first.versions[0].status == .active)

        let foreign = try c.call(FeedbackList.self, FeedbackList.Params(cursor: first.nextCursor))
        guard case .failure(let e) = foreign else { Issue.record("a model/versions cursor was accepted by feedback/list"); return }
        #expect(e.code == .invalidParams)
    }

    @Test("per-version precision: model/fit {precision: int8} fits and serves that version in int8, through activations and a restart; others follow --precision")
    func perVersionPrecision() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var daemon: DaemonProcess? = nil
        var c: RPCClient
        (daemon, c) = try FineTuneTests.prepared(state: state, model: model)  // version 1, fitted at --precision (fp32)
        func kernels() throws -> ModelInfo.Result.KernelInfo { try c.call(ModelInfo.self).get().kernels }
        #expect(try kernels().precision == "fp32")
        let texts = ["my card is late", "a b c", "the card?"]
        let v1 = try c.call(Embed.self, Embed.Params(texts: texts)).get()

        var p = ModelFit.Params(dataset: "tiny")
        p.lambdas = [0.01]
        p.precision = .int8
        p.activate = true
        let fitted = try c.call(ModelFit.self, p, timeout: 60).get()
        #expect(fitted.version == 2 && fitted.active && fitted.precision == .int8)
        #expect(try kernels().precision == "int8" && kernels().defaultPrecision == "fp32")
        let manifest = try String(contentsOfFile: state.path + "/versions/2/manifest.json", encoding: .utf8)
        #expect(manifest.contains("\"precision\" : \"int8\"") || manifest.contains("\"precision\": \"int8\""), "\(manifest)")
        #expect(!(try String(contentsOfFile: state.path + "/versions/1/manifest.json", encoding: .utf8)).contains("precision"))
        let scored = try c.call(Score.self, Score.Params(inputs: texts.map { .init(text: $0) })).get()
        #expect(scored.results.count == 3 && scored.results.allSatisfy { $0.version == 2 })
        // embed answers with what the active version reads: int8 vectors now, fp32 ones again
        // once version 1 is active.
        #expect(try c.call(Embed.self, Embed.Params(texts: texts)).get().vectors != v1.vectors)

        _ = try c.call(ModelActivate.self, ModelActivate.Params(version: 1)).get()
        #expect(try kernels().precision == "fp32")
        #expect(try c.call(Embed.self, Embed.Params(texts: texts)).get().vectors == v1.vectors)
        _ = try c.call(ModelActivate.self, ModelActivate.Params(version: 2)).get()
        #expect(try kernels().precision == "int8")
        let before = try c.call(Score.self, Score.Params(inputs: texts.map { .init(text: $0) })).get()
        let int8Vectors = try c.call(Embed.self, Embed.Params(texts: texts)).get().vectors

        // After a restart the stored active version comes back in its own precision, scoring the
        // same. model/info and embed, like score, wait while it loads: the first of each, sent as
        // soon as the socket accepts, already describes and uses version 2 (int8), not the base.
        daemon = nil
        let d2 = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        c = try d2.client()
        #expect(try kernels().precision == "int8")
        #expect(try c.call(Embed.self, Embed.Params(texts: texts)).get().vectors == int8Vectors)
        let after = try c.call(Score.self, Score.Params(inputs: texts.map { .init(text: $0) })).get()
        #expect(after.results.map(\.label) == before.results.map(\.label))
        #expect(zip(after.results, before.results).allSatisfy { abs($0.confidence - $1.confidence) < 1e-6 })

        // A bad precision is refused by name.
        let bad = try c.call("model/fit", ["dataset": "tiny", "precision": "int4"])
        guard case .failure(let e) = bad else { Issue.record("precision int4 was accepted"); return }
        #expect(e.code == .invalidParams && e.message.contains("precision"), "\(e.message)")
    }

    @Test("embed with encoding base64: little-endian float32, the same vectors as JSON floats, bit for bit")
    func base64() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let d = try DaemonProcess(extraArgs: ["--model", model.path])
        let c = try d.client()
        let texts = ["my card is late", "a b c", "the card?"]
        let floats = try c.call(Embed.self, Embed.Params(texts: texts)).get()
        let b64 = try c.call(Embed.self, Embed.Params(texts: texts, encoding: .base64)).get()
        guard case .base64(let strings) = b64.vectors else { Issue.record("not base64: \(b64.vectors)"); return }
        #expect(strings.count == 3)
        #expect(strings.allSatisfy { Data(base64Encoded: $0)?.count == 4 * floats.dimension })
        let a = try #require(floats.vectors.floats), b = try #require(b64.vectors.floats)
        #expect(a.map { $0.map(\.bitPattern) } == b.map { $0.map(\.bitPattern) })
        #expect(b64.tokens == floats.tokens)
    }
}
