import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Fine-tune jobs: start, progress, gate, versions, activation, cancel, crash")
struct FineTuneTests {
    /// A daemon with the tiny model, a dataset, version 1, scored traffic and some corrections.
    static func prepared(state: TempDir, model: TempFolder, extra: [String] = []) throws -> (DaemonProcess, RPCClient) {
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path] + extra)
        let c = try d.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        // Traffic, and corrections on what it got wrong (or, if it got nothing wrong, on some inputs anyway).
        let texts = ["my card is late a", "the card ? a a", "a b c a", "card late", "the card", "b c a a", "my card ?", "late card a"]
        let scored = try c.call(Score.self, .init(inputs: texts.enumerated().map { Score.Input(id: "i\($0)", text: $1) })).get()
        let truth = ["card_late", "card_what", "abc", "card_late", "card_what", "abc", "card_what", "card_late"]
        for (i, r) in scored.results.enumerated() where r.label != truth[i] || i % 3 == 0 {
            _ = try c.call(FeedbackReport.self, .init(inputId: "i\(i)", kind: .correction, correctLabel: truth[i])).get()
        }
        return (d, c)
    }

    /// Polls the job until it is over, collecting the notifications that arrive meanwhile.
    static func waitForJob(_ c: RPCClient, _ id: Int, timeout: Double = 120) throws -> FineTuneJob {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let j = try c.call(FineTuneStatus.self, .init(job: id)).get()
            if ![.scheduled, .queued, .running].contains(j.state) { return j }
            usleep(50_000)
        }
        throw ClientError("job \(id) did not finish in \(timeout) s")
    }

    /// The tensor names in a safetensors file's header.
    static func tensorNames(_ path: String) throws -> [String] {
        let data = try #require(FileManager.default.contents(atPath: path))
        let n = data.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
        let header = try JSONParser.parse(Array(data[8..<(8 + n)]))
        return (header.objectValue ?? [:]).keys.filter { $0 != "__metadata__" }.sorted()
    }

    @Test("lora job: events and progress, a version with lineage, gate report, PEFT adapter files; activate and roll back; restart restores it")
    func loraJob() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var (d, c) = try Self.prepared(state: state, model: model)
        var events: [JSONValue] = [], progress: [String] = []
        c.onNotification = { m, p in
            if m == "finetune/event", let p { events.append(p) }
            if m == "$/progress" { progress.append(p?["value"]?["kind"]?.stringValue ?? "") }
        }
        func scoreOf(_ text: String) throws -> ScoredInput? { try c.call(Score.self, .init(inputs: [.init(text: text)])).get().results.first }
        let before = try scoreOf("my card is late")
        var start = FineTuneStart.Params(regions: .ids(["intent:card_late", "intent:card_what"]), method: .lora, layers: 1, rank: 2, epochs: 3,
                                         autoPromote: false)
        start.workDoneToken = .string("ft")
        let job = try c.call(FineTuneStart.self, start).get()
        #expect(job.method == "lora")
        #expect(job.intents == ["card_late", "card_what"])
        #expect(job.parent == 1)
        let id = job.id
        // Scoring keeps answering while the job runs.
        for _ in 0..<5 { _ = try scoreOf("a b c") }
        let done = try Self.waitForJob(c, id)
        #expect(done.state == .succeeded, "\(done.error ?? "")")
        #expect(done.version == 2)
        #expect(done.promoted == false)
        let result = try #require(done.result)
        #expect(result.training.steps > 0)
        #expect(result.training.flops > 0)
        #expect(result.training.fullFineTuneFlops > 0)
        #expect(result.gate.global.mcnemarP >= 0 && result.gate.global.mcnemarP <= 1)
        _ = try c.call(Ping.self).get()  // collect the last notifications
        let kinds = events.map { $0["kind"]?.stringValue ?? "" }
        #expect(kinds.first == "started" && kinds.last == "finished", "\(kinds)")
        #expect(kinds.contains("step"))
        #expect(progress.first == "begin" && progress.last == "end", "\(progress)")

        // Lineage and the reports in model/versions (model/fit's and the fine-tune's, each in its
        // type; the test client checks every result against the schema); the candidate is not active.
        let typed = try c.call(ModelVersions.self, .init()).get()
        #expect(typed.active == 1)
        let v2 = typed.versions.first { $0.id == 2 }
        #expect(v2?.parent == 1)
        #expect(v2?.method == "lora")
        #expect(typed.versions.first { $0.id == 1 }?.report.fit?.lambdasTried.isEmpty == false)
        let report = typed.versions.first { $0.id == 2 }?.report.fineTune
        #expect(report?.version == 2 && report?.job == id && report?.training.method == "lora")
        #expect(report?.intents == ["card_late", "card_what"] && (report?.gate.global.examples ?? 0) > 0)
        let status = try c.call(FineTuneStatus.self, .init(job: id)).get()
        #expect(status.result?.training.steps == report?.training.steps && status.result?.gate.passed == report?.gate.passed)

        // Files: layers under HuggingFace names, the adapter in PEFT's layout.
        let dir = state.path + "/versions/2"
        #expect(try Self.tensorNames(dir + "/layers.safetensors").contains("encoder.layer.1.attention.self.query.weight"))
        let adapter = try Self.tensorNames(dir + "/adapter/adapter_model.safetensors")
        #expect(adapter.count == 12)
        for module in ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense"] {
            #expect(adapter.contains("base_model.model.encoder.layer.1.\(module).lora_A.weight"))
            #expect(adapter.contains("base_model.model.encoder.layer.1.\(module).lora_B.weight"))
        }
        let config = try JSONParser.parse(Array(try #require(FileManager.default.contents(atPath: dir + "/adapter/adapter_config.json"))))
        #expect(config["peft_type"] == "LORA")
        #expect(config["r"] == 2)
        #expect(config["target_modules"]?.stringValue?.contains("encoder\\.layer\\.(1)") == true)

        // Activate the candidate by hand, then roll back: no restart, scores come back unchanged.
        let act = try c.call(ModelActivate.self, .init(version: 2)).get()
        #expect(act.active == 2 && act.previous == 1)
        #expect(act.changedLayers == [1])
        #expect(try scoreOf("my card is late")?.version == 2)
        let back = try c.call(ModelActivate.self, .init(version: 1)).get()
        #expect(back.active == 1 && back.changedLayers == [])
        let again = try scoreOf("my card is late")
        #expect(again?.version == 1)
        #expect(again?.top == before?.top)
        #expect(again?.confidence == before?.confidence)

        // Unknown or unusable versions change nothing.
        guard case .failure(let e) = try c.call(ModelActivate.self, .init(version: 99)) else { Issue.record("activated version 99"); return }
        #expect(e.code == .invalidParams)

        // Restart with version 2 active: it comes back with its layers.
        _ = try c.call(ModelActivate.self, .init(version: 2)).get()
        let v2Score = try scoreOf("my card is late")
        #expect(d.terminate() == 0)
        d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        c = try d.client()
        var loaded = false
        for _ in 0..<200 where !loaded { loaded = d.stderr.contains("active version loaded"); usleep(20_000) }
        #expect(loaded)
        let restored = try c.call(Score.self, .init(inputs: [.init(text: "my card is late")])).get().results.first
        #expect(restored?.version == 2)
        #expect(restored?.top == v2Score?.top && restored?.top.isEmpty == false)
        let listed = try c.call(FineTuneList.self, .init()).get()
        #expect(listed.jobs.first?.id == id)
        #expect(listed.jobs.first?.state == .succeeded)
    }

    @Test("head and top-layers jobs; a candidate that passes its gate goes on a rollout, never straight to active; a job outlives the client that started it")
    func otherMethods() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        for method in [FineTuneMethod.head, .topLayers] {
            var starter: RPCClient? = try d.client()
            let job = try starter!.call(FineTuneStart.self, .init(regions: .all, method: method, layers: 1, epochs: 2)).get()
            starter = nil  // the client disconnects; the job goes on without it
            _ = starter
            let done = try Self.waitForJob(c, job.id)
            #expect(done.state == .succeeded, "\(done.error ?? "")")
            // Nothing is made active by a job: a candidate that passes its offline gate goes on a rollout.
            let result = try #require(done.result)
            #expect(done.promoted == false)
            if result.gate.passed { #expect(result.rollout != nil || result.rolloutError != nil) }
            else { #expect(result.rollout == nil) }
            #expect(try c.call(ModelVersions.self, .init()).get().active != done.version)
            if method == .head { #expect(!FileManager.default.fileExists(atPath: state.path + "/versions/\(done.version ?? 0)/layers.safetensors")) }
        }
    }

    @Test("cancel stops a running job within a step and writes no version; a kill -9 mid-job leaves it interrupted and nothing half-written")
    func cancelAndCrash() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var (d, c) = try Self.prepared(state: state, model: model)
        let long = FineTuneStart.Params(regions: .all, method: .topLayers, layers: 2, epochs: 100, batchSize: 1)
        let id = try c.call(FineTuneStart.self, long).get().id
        func isStepping(_ id: Int) throws -> Bool { try c.call(FineTuneStatus.self, .init(job: id)).get().progress.step != nil }
        var running = false
        for _ in 0..<400 where !running {
            running = try isStepping(id)
            usleep(10_000)
        }
        #expect(running)
        let started = Date()
        let cancelled = try c.call(FineTuneCancel.self, .init(job: id), timeout: 30).get()
        #expect(cancelled.state == .cancelled)
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(try c.call(ModelVersions.self, .init()).get().versions.count == 1)
        // A queued job is cancelled at once; a finished one is returned as it is.
        #expect(try c.call(FineTuneCancel.self, .init(job: id)).get().state == .cancelled)

        // kill -9 in the middle of a job.
        let sid = try c.call(FineTuneStart.self, long).get().id
        running = false
        for _ in 0..<400 where !running {
            running = try isStepping(sid)
            usleep(10_000)
        }
        kill(d.pid, SIGKILL)
        _ = d.wait()
        d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        c = try d.client()
        var status: FineTuneJob? = nil
        for _ in 0..<100 {
            if let s = try? c.call(FineTuneStatus.self, .init(job: sid)).get() { status = s; break }
            usleep(20_000)
        }
        #expect(status?.state == .interrupted, "\(status?.state.rawValue ?? "no status")")
        #expect(status?.error?.contains("stopped") == true)
        let versions = try c.call(ModelVersions.self, .init()).get()
        #expect(versions.versions.count == 1)
        #expect(versions.active == 1)
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: state.path + "/versions")) ?? []
        #expect(leftovers == ["1"], "\(leftovers)")
    }

    final class Box: @unchecked Sendable { var value: Score.Result? }
    final class ClientBox: @unchecked Sendable { let client: RPCClient; init(_ c: RPCClient) { client = c } }

    @Test("a request in flight during an activation finishes on one version; the next request sees the new one")
    func swapInFlight() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        let job = try c.call(FineTuneStart.self, .init(regions: .all, method: .topLayers, layers: 1, epochs: 2, autoPromote: false)).get()
        let v2 = try #require(try Self.waitForJob(c, job.id).version)
        for round in 0..<3 {
            let big = Box()
            let other = ClientBox(try d.client())
            let group = DispatchGroup()
            group.enter()
            let inputs = (0..<4000).map { Score.Input(text: "my card is late \(round) \($0)") }
            DispatchQueue.global().async {
                big.value = try? other.client.call(Score.self, .init(inputs: inputs), timeout: 60).get()
                group.leave()
            }
            usleep(UInt32(2000 * round))
            _ = try c.call(ModelActivate.self, .init(version: round % 2 == 0 ? v2 : 1)).get()
            group.wait()
            let r = try #require(big.value)
            let versions = Set(r.results.map(\.version))
            #expect(versions.count == 1, "one request, one version: \(versions)")
            #expect(r.results.count == 4000)
            let after = try c.call(Score.self, .init(inputs: [.init(text: "after \(round)")])).get()
            #expect(after.version == (round % 2 == 0 ? v2 : 1))
        }
    }

    @Test("one job runs at a time: a second waits queued, then runs from the version active when it starts")
    func queue() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        let first = try c.call(FineTuneStart.self, .init(regions: .all, method: .topLayers, layers: 2, epochs: 30, batchSize: 1, autoPromote: false)).get()
        let second = try c.call(FineTuneStart.self, .init(regions: .all, method: .head, epochs: 2, autoPromote: false)).get()
        #expect(second.state == .queued)
        let s1 = try c.call(FineTuneStatus.self, .init(job: first.id)).get()
        #expect(s1.state == .running || s1.state == .queued)
        #expect(try c.call(FineTuneStatus.self, .init(job: second.id)).get().state == .queued)
        let listed = try c.call(FineTuneList.self, .init(state: .queued)).get()
        #expect(listed.jobs.contains { $0.id == second.id })
        let d1 = try Self.waitForJob(c, first.id)
        let d2 = try Self.waitForJob(c, second.id)
        #expect(d1.state == .succeeded && d2.state == .succeeded)
        #expect((d2.startedAt ?? 0) >= (d1.finishedAt ?? .infinity))
        #expect(d1.version == 2 && d2.version == 3)
    }

    @Test("robustctl finetune start --watch, status, list, versions, activate")
    func robustctl() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, _) = try Self.prepared(state: state, model: model)
        let sock = ["--socket", d.socketPath]
        let (s1, out1, err1) = try run(Binaries.robustctl, sock + ["finetune", "start", "--regions", "all", "--method", "head", "--epochs", "2", "--no-promote", "--watch"])
        #expect(s1 == 0, "\(out1) \(err1)")
        #expect(out1.contains("job 1"))
        #expect(out1.contains("succeeded"))
        #expect(out1.contains("→ version 2"))
        #expect(out1.contains("gate "))
        let (sj, outj, _) = try run(Binaries.robustctl, ["finetune", "watch", "1", "--json"] + sock)
        #expect(sj == 0)
        #expect((try? JSONParser.parse(outj.trimmingCharacters(in: .whitespacesAndNewlines)))?["state"] == "succeeded")
        let (s2, out2, _) = try run(Binaries.robustctl, ["finetune", "list"] + sock)
        #expect(s2 == 0 && out2.contains("job 1  succeeded  head"))
        let (s3, out3, _) = try run(Binaries.robustctl, ["versions"] + sock)
        #expect(s3 == 0 && out3.contains("version 2") && out3.contains("parent 1") && out3.contains("gate "))
        let (s4, out4, _) = try run(Binaries.robustctl, ["activate", "2"] + sock)
        #expect(s4 == 0 && out4.contains("version 2 is active (was 1)"))
        let (s5, _, err5) = try run(Binaries.robustctl, ["finetune", "status", "9"] + sock)
        #expect(s5 == 1 && err5.contains("no fine-tune job 9"))
    }

    @Test("a job is committed with its parameters before the answer: a kill -9 right after finetune/start leaves it listed, interrupted")
    func committedBeforeAnswer() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        var later = FineTuneStart.Params(regions: .all, method: .lora)
        later.notBefore = Date().timeIntervalSince1970 + 3600
        let job = try c.call(FineTuneStart.self, later).get()
        kill(d.pid, SIGKILL)
        _ = d.wait()
        let again = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        let c2 = try again.client()
        var listed: FineTuneJob? = nil
        for _ in 0..<100 {
            listed = try c2.call(FineTuneList.self, .init()).get().jobs.first
            if listed != nil { break }
            usleep(20_000)
        }
        #expect(listed?.id == job.id)
        #expect(listed?.state == .interrupted)
        #expect(listed?.method == "lora" && listed?.intents == job.intents)
    }

    @Test("a scheduled job starts when its time comes; SIGTERM during a running job stops the daemon promptly and the job is interrupted")
    func scheduleAndGracefulStop() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var (d, c) = try Self.prepared(state: state, model: model)
        var soonParams = FineTuneStart.Params(regions: .all, method: .head, epochs: 2, autoPromote: false)
        soonParams.notBefore = Date().timeIntervalSince1970 + 1.5
        let soon = try c.call(FineTuneStart.self, soonParams).get()
        #expect(soon.state == .scheduled)
        let done = try Self.waitForJob(c, soon.id, timeout: 30)
        #expect(done.state == .succeeded)
        #expect((done.startedAt ?? 0) >= (soon.notBefore ?? .infinity))
        let long = try c.call(FineTuneStart.self, .init(regions: .all, method: .topLayers, layers: 2, epochs: 100, batchSize: 1)).get()
        var running = false
        for _ in 0..<400 where !running {
            running = try c.call(FineTuneStatus.self, .init(job: long.id)).get().progress.step != nil
            usleep(10_000)
        }
        #expect(running)
        let t0 = Date()
        #expect(d.terminate(timeout: 20) == 0)
        #expect(Date().timeIntervalSince(t0) < 10)
        d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        c = try d.client()
        var status: FineTuneJob? = nil
        for _ in 0..<100 {
            if let s = try? c.call(FineTuneStatus.self, .init(job: long.id)).get() { status = s; break }
            usleep(20_000)
        }
        #expect(status?.state == .interrupted)
    }

    @Test("robust objectives through a job: consistency over varied noisy copies, adversarial typos with their FLOPs; the candidate keeps its parent's normaliser")
    func robustObjectives() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        var robust = FineTuneStart.Params(regions: .all, method: .lora, layers: 1, epochs: 2, autoPromote: false)
        robust.consistency = 1; robust.noisyCopies = 3; robust.adversarialExamples = 4
        let job = try c.call(FineTuneStart.self, robust).get()
        let done = try Self.waitForJob(c, job.id)
        #expect(done.state == .succeeded, "\(done.error ?? "")")
        let result = try #require(done.result)
        let training = result.training
        #expect(training.consistency == 1)
        // Four attacked; a text with no word of 3+ letters ("a b c") has no edit to try.
        let adversarial = training.adversarialExamples ?? 0
        #expect(adversarial >= 1 && adversarial <= 4)
        let advFlops = training.adversarialFlops ?? 0
        #expect(advFlops > 0 && advFlops < training.trainingFlops)
        // Three noisy copies of every target example, and the adversarial ones.
        let selection = result.selection
        let targets = selection.failures + selection.regionExamples
        #expect(selection.augmented == 3 * targets)
        #expect(selection.replayAugmented == selection.replay)  // one noisy copy of each replayed example, the default
        #expect(training.trainExamples == 4 * targets + selection.replay + selection.replayAugmented + adversarial)
        let v = try #require(done.version)
        #expect(FileManager.default.fileExists(atPath: state.path + "/versions/\(v)/normaliser.json"))
    }

    @Test("the budget stops training: maxSteps is honoured and reported")
    func budget() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        let job = try c.call(FineTuneStart.self, .init(regions: .all, method: .topLayers, layers: 1, epochs: 50, batchSize: 1, maxSteps: 3)).get()
        let done = try Self.waitForJob(c, job.id)
        #expect(done.state == .succeeded)
        #expect(done.result?.training.steps == 3)
        #expect(done.result?.training.stoppedBy == "max-steps")
    }

    @Test("model/activate refuses a version whose files are damaged, and nothing changes")
    func damagedVersion() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        let job = try c.call(FineTuneStart.self, .init(regions: .all, method: .topLayers, layers: 1, epochs: 2, autoPromote: false)).get()
        let v = try #require(try Self.waitForJob(c, job.id).version)
        func scoreOf(_ text: String) throws -> ScoredInput? { try c.call(Score.self, .init(inputs: [.init(text: text)])).get().results.first }
        let before = try scoreOf("my card is late")
        let file = state.path + "/versions/\(v)/layers.safetensors"
        try Data("not a safetensors file".utf8).write(to: URL(fileURLWithPath: file))
        guard case .failure(let e) = try c.call(ModelActivate.self, .init(version: v)) else { Issue.record("activated a damaged version"); return }
        #expect(e.code.rawValue == -32030 && e.message.contains("cannot be loaded"), "\(e)")
        #expect(try c.call(ModelVersions.self, .init()).get().active == 1)
        let after = try scoreOf("my card is late")
        #expect(after?.version == 1 && after?.top == before?.top && after?.confidence == before?.confidence)
    }

    @Test("bad requests get clear errors and start nothing")
    func errors() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let bare = try DaemonProcess(extraArgs: ["--model", model.path])
        guard case .failure(let noVersion) = try bare.client().call(FineTuneStart.self, .init(regions: .all)) else { Issue.record("started without a version"); return }
        #expect(noVersion.code.rawValue == -32021)
        let state = TempDir()
        let (d, c) = try Self.prepared(state: state, model: model)
        // Bad params as a client of any language sends them: the wire's validation.
        func code(_ p: JSONValue) throws -> (Int, String) {
            guard case .failure(let e) = try c.call("finetune/start", p) else { return (0, "") }
            return (e.code.rawValue, e.message)
        }
        #expect(try code(["method": "everything"]).0 == -32602)
        #expect(try code(["regions": ["intent:nope"]]).1.contains("intent:nope"))
        #expect(try code(["regions": ["elsewhere"]]).0 == -32602)
        #expect(try code(["regions": 5]).0 == -32602)
        #expect(try code(["regions": "all", "layers": 9]).0 == -32602)
        #expect(try code(["regions": "all", "epochs": 0]).0 == -32602)
        #expect(try code(["regions": "all", "learningRate": 2]).0 == -32602)
        #expect(try code(["regions": "all", "window": "25:00-01:00"]).0 == -32602)
        #expect(try code(["regions": "all", "parent": 7]).0 == -32602)
        #expect(try code(["regions": "all", "noisyCopies": 99]).0 == -32602)
        #expect(try code(["regions": "all", "replayCopies": 9]).0 == -32602)
        #expect(try code(["regions": "all", "consistency": -1]).0 == -32602)
        #expect(try code(["regions": "all", "adversarialExamples": -2]).0 == -32602)
        guard case .failure(let unknown) = try c.call(FineTuneStatus.self, .init(job: 42)) else { Issue.record("job 42"); return }
        #expect(unknown.code == .invalidParams)
        #expect(try c.call(FineTuneList.self, .init()).get().jobs.isEmpty)
        // A job for later waits, scheduled, and can be cancelled at once.
        var laterParams = FineTuneStart.Params(regions: .all)
        laterParams.notBefore = Date().timeIntervalSince1970 + 3600
        let later = try c.call(FineTuneStart.self, laterParams).get()
        #expect(later.state == .scheduled)
        #expect(try c.call(FineTuneCancel.self, .init(job: later.id)).get().state == .cancelled)
        // A parent refitted on its validation split cannot be fine-tuned honestly: the job fails and says why.
        let refitted = try c.call(ModelFit.self, VersionTests.fitParams { $0.refit = true }, timeout: 60).get()
        _ = try c.call(ModelActivate.self, .init(version: refitted.version)).get()
        let refusedJob = try c.call(FineTuneStart.self, .init(regions: .all, method: .head)).get()
        let refused = try Self.waitForJob(c, refusedJob.id)
        #expect(refused.state == .failed && refused.error?.contains("refit") == true, "\(refused.error ?? "")")
        #expect(refused.version == nil)
        _ = try c.call(ModelActivate.self, .init(version: 1)).get()
        // "auto" by fragility takes the intents the version is most likely to get wrong under typos.
        let regions = try c.call(RiskRegions.self, .init(by: .fragility)).get().regions
        let fragileIntents = regions.filter { ($0.fragilityRisk ?? 0) > 0 }.count
        var byFragility = FineTuneStart.Params(regions: .auto)
        byFragility.by = .fragility; byFragility.top = 2; byFragility.notBefore = Date().timeIntervalSince1970 + 3600
        let fragile = try c.call(FineTuneStart.self, byFragility)
        switch fragile {
        case .success(let job):
            #expect(job.intents.count == min(2, fragileIntents), "\(job.intents)")
            #expect(try c.call(FineTuneCancel.self, .init(job: job.id)).get().state == .cancelled)
        case .failure(let e):
            // The tiny model's validation typos may flip nothing: then it says so.
            #expect(fragileIntents == 0 && e.message.contains("nothing is fragile"), "\(e.message)")
        }
        _ = d
    }
}
