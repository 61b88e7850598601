import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Versions: fit, persistence, restart")
struct VersionTests {
    /// Three small intents the tiny model's vocabulary can tell apart.
    static let recordList: [JSONValue] = (0..<30).map { i -> JSONValue in
        let (text, label): (String, String) = [("my card is late", "card_late"), ("the card ?", "card_what"), ("a b c", "abc")][i % 3]
        return ["text": .string(text + String(repeating: " a", count: i / 3)), "label": .string(label)]
    }
    static let records: JSONValue = .array(recordList)

    /// model/fit on the tiny dataset at λ 0.01, with `adjust` setting the rest.
    static func fitParams(_ adjust: (inout ModelFit.Params) -> Void = { _ in }) -> ModelFit.Params {
        var p = ModelFit.Params(dataset: "tiny", lambdas: [0.01])
        adjust(&p)
        return p
    }

    @Test("model/fit creates version 1, active, persisted; a restart loads it back")
    func fitAndRestart() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let args = ["--model", model.path, "--state-dir", state.path]
        var d: DaemonProcess? = try DaemonProcess(extraArgs: args)
        var c = try d!.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: Self.recordList)).get()
        var kinds: [String] = []
        c.onNotification = { m, p in if m == "$/progress" { kinds.append(p?["value"]?["kind"]?.stringValue ?? "") } }
        let fit = try c.call(ModelFit.self, Self.fitParams { $0.workDoneToken = .string("t") }, timeout: 60).get()
        #expect(fit.version == 1)
        #expect(fit.active)
        #expect(fit.labels == 3)
        #expect(fit.trainExamples + fit.validationExamples == 30)
        #expect(kinds.first == "begin" && kinds.last == "end")
        let versions = try c.call(ModelVersions.self, .init()).get()
        #expect(versions.active == 1)
        #expect(versions.versions.first?.status == .active)
        #expect(FileManager.default.fileExists(atPath: state.path + "/versions/1/weights.safetensors"))
        #expect(FileManager.default.fileExists(atPath: state.path + "/versions/1/manifest.json"))
        // A second fit does not replace the active version unless asked.
        let second = try c.call(ModelFit.self, .init(dataset: "tiny", lambdas: [0.1]), timeout: 60).get()
        #expect(second.version == 2)
        #expect(!second.active)
        #expect(d!.terminate() == 0)
        d = nil
        let again = try DaemonProcess(extraArgs: args)
        c = try again.client()
        #expect(try c.call(ModelVersions.self, .init()).get().active == 1)
        var loaded = false
        for _ in 0..<100 where !loaded { loaded = again.stderr.contains("active version loaded"); usleep(20_000) }
        #expect(loaded, "\(again.stderr)")
    }

    @Test("a fitted version carries a spelling normaliser: score shows what it changed and reads a typo as the word meant; stored, restored, refused when damaged; normalise false fits none")
    func normaliser() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let args = ["--model", model.path, "--state-dir", state.path]
        var d: DaemonProcess? = try DaemonProcess(extraArgs: args)
        var c = try d!.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: Self.recordList)).get()
        let fit = try c.call(ModelFit.self, Self.fitParams(), timeout: 60).get()
        #expect(!fit.refitted)
        let refitted = try c.call(ModelFit.self, Self.fitParams { $0.refit = true }, timeout: 60).get()
        #expect(refitted.refitted && !refitted.active)
        #expect((fit.normaliserWords ?? 0) >= 4)
        #expect(FileManager.default.fileExists(atPath: state.path + "/versions/1/normaliser.json"))
        func scoreOf(_ text: String) throws -> ScoredInput? {
            try c.call(Score.self, .init(inputs: [.init(text: text)])).get().results.first
        }
        let typed = try scoreOf("my crad is LAET"), clean = try scoreOf("my card is late")
        #expect(typed?.normalised?.text == "my card is LATE")
        #expect(typed?.normalised?.corrections.map(\.to) == ["card", "LATE"])
        #expect(typed?.label == clean?.label)
        #expect(typed?.confidence == clean?.confidence)
        #expect(clean?.normalised == nil)
        // Fragility per intent, measured on validation when the version was made; risk/regions ranks by it.
        let manifest = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: state.path + "/versions/1/manifest.json"))))
        #expect(manifest["fragility"]?.objectValue?.count == 3)
        // The out-of-scope rule: the combined score, standardised on validation, against its threshold.
        #expect(manifest["oosCalibration"]?["neighbourScale"]?.doubleValue ?? 0 > 0)
        let oos = try #require(clean?.outOfScope)
        #expect(oos.flagged == (oos.score > oos.threshold))
        #expect(oos.score != oos.neighbourDistance)
        let regions = try c.call(RiskRegions.self, .init(by: .fragility)).get().regions
        #expect(regions.count == 3 && regions.allSatisfy { $0.fragility != nil && $0.fragilityRisk != nil })
        let risks = regions.compactMap(\.fragilityRisk)
        #expect(risks == risks.sorted(by: >))
        // Without a normaliser the typo is read as typed.
        let plain = try c.call(ModelFit.self, Self.fitParams { $0.normalise = false; $0.activate = true }, timeout: 60).get()
        #expect(plain.normaliserWords == nil)
        #expect(!FileManager.default.fileExists(atPath: state.path + "/versions/3/normaliser.json"))
        #expect(try scoreOf("my crad is laet")?.normalised == nil)
        // A restart restores version 1's normaliser with it.
        _ = try c.call(ModelActivate.self, .init(version: 1)).get()
        #expect(d!.terminate() == 0)
        d = nil
        let again = try DaemonProcess(extraArgs: args)
        c = try again.client()
        #expect(try scoreOf("my crad is laet")?.normalised?.text == "my card is late")
        // A damaged normaliser file: the version is refused and nothing changes.
        _ = try c.call(ModelActivate.self, .init(version: 3)).get()
        try Data("{\"format\": \"robustd-normaliser\", \"words\": [[\"card\", -3]]}".utf8).write(to: URL(fileURLWithPath: state.path + "/versions/1/normaliser.json"))
        guard case .failure(let e) = try c.call(ModelActivate.self, .init(version: 1)) else { Issue.record("activated a damaged version"); return }
        #expect(e.message.contains("normaliser.json"), "\(e.message)")
        #expect(try c.call(ModelVersions.self, .init()).get().active == 3)
        // So is a manifest whose out-of-scope calibration cannot standardise (a zero deviation).
        let path2 = state.path + "/versions/2/manifest.json"
        var m2 = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: path2)))).objectValue ?? [:]
        var cal = m2["oosCalibration"]?.objectValue ?? [:]
        cal["neighbourScale"] = .double(0)
        m2["oosCalibration"] = .object(cal)
        try Data(JSONWriter.pretty(.object(m2)).utf8).write(to: URL(fileURLWithPath: path2))
        guard case .failure(let bad) = try c.call(ModelActivate.self, .init(version: 2)) else { Issue.record("activated a bad calibration"); return }
        #expect(bad.message.contains("oosCalibration"), "\(bad.message)")
        #expect(try c.call(ModelVersions.self, .init()).get().active == 3)
    }

    @Test("fit refuses a one-class dataset, an unknown dataset, bad options, and works only with a model; λ by the folds asked, over train, or train and validation with a refit")
    func fitErrors() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let d = try DaemonProcess(extraArgs: ["--model", model.path])
        let c = try d.client()
        _ = try c.call(DatasetImportMethod.self, .init(name: "one", records: [["text": "a", "label": "x"], ["text": "b", "label": "x"]])).get()
        // Bad params as a client of any language sends them: the wire's validation.
        func code(_ p: JSONValue) throws -> Int {
            guard case .failure(let e) = try c.call("model/fit", p, timeout: 30) else { return 0 }
            return e.code.rawValue
        }
        #expect(try code(["dataset": "one"]) == -32030)
        #expect(try code(["dataset": "nope"]) == -32602)
        #expect(try code(["dataset": "one", "lambdas": [-1]]) == -32602)
        #expect(try code(["dataset": "one", "oosRecall": 1.5]) == -32602)
        #expect(try code(["dataset": "one", "validationFraction": 0.9]) == -32602)
        // folds out of range is refused and nothing is fitted.
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: Self.recordList)).get()
        #expect(try code(["dataset": "tiny", "folds": 0]) == -32602)
        #expect(try code(["dataset": "tiny", "refit": true, "folds": 21]) == -32602)
        #expect(try c.call(ModelVersions.self, .init()).get().versions.isEmpty)
        let cv = try c.call(ModelFit.self, Self.fitParams { $0.lambdas = [1, 0.01]; $0.refit = true; $0.folds = 3 }, timeout: 60).get()
        #expect(cv.refitted)
        let report = try c.call(ModelVersions.self, .init()).get().versions.first { $0.id == cv.version }?.report.fit
        #expect(report?.crossValidationFolds == 3 && report?.crossValidationAccuracyByLambda?.count == 2)
        #expect(report.map { [1, 0.01].contains($0.lambda) } == true)
        // Without a refit the folds run over train alone; without folds, the slice chooses.
        let trainOnly = try c.call(ModelFit.self, Self.fitParams { $0.lambdas = [1, 0.01]; $0.folds = 2 }, timeout: 60).get()
        let plain = try c.call(ModelFit.self, Self.fitParams { $0.lambdas = [1, 0.01] }, timeout: 60).get()
        #expect(!trainOnly.refitted && !plain.refitted)
        let reports = try c.call(ModelVersions.self, .init()).get().versions
        #expect(reports.first { $0.id == trainOnly.version }?.report.fit?.crossValidationFolds == 2)
        #expect(reports.first { $0.id == plain.version }?.report.fit?.crossValidationFolds == nil)
        let bare = try DaemonProcess()
        guard case .failure(let e) = try bare.client().call(ModelFit.self, .init(dataset: "one")) else { Issue.record(); return }
        #expect(e.code.rawValue == -32020)
    }
}

@Suite("score through the daemon")
struct ScoreTests {
    @Test("score answers every component, valid against the schema; repeats come from the cache; bad input is named")
    func score() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let d = try DaemonProcess(extraArgs: ["--model", model.path])
        let c = try d.client()
        guard case .failure(let none) = try c.call(Score.self, .init(inputs: [.init(text: "my card")])) else { Issue.record(); return }
        #expect(none.code.rawValue == -32021)
        _ = try c.call(DatasetImportMethod.self, .init(name: "tiny", records: VersionTests.recordList)).get()
        _ = try c.call(ModelFit.self, VersionTests.fitParams(), timeout: 60).get()
        var params = Score.Params(inputs: [.init(id: "x", text: "my card is late"), .init(text: "a b c")])
        params.topK = 2
        params.perturb = .init(n: 3, seed: 1)
        let first = try c.call(Score.self, params).get()
        #expect(first.version == 1)
        #expect(first.results.first?.id == "x")
        #expect(first.results.map(\.label) == ["card_late", "abc"])
        #expect(first.results.first?.top.count == 2)
        #expect(first.results.first?.stability?.variants == 3)
        #expect(first.results.first?.cached == false)
        #expect(first.results.first?.truncated == false)
        let long = try c.call(Score.self, .init(inputs: [.init(text: String(repeating: "card ", count: 50))])).get()
        #expect(long.results.first?.truncated == true)
        let second = try c.call(Score.self, params).get()
        #expect(second.results.first?.cached == true)
        var a = first.results.first, b = second.results.first
        a?.cached = nil; b?.cached = nil
        #expect(a == b)
        // Bad params as a client of any language sends them: the wire's validation.
        func code(_ p: JSONValue) throws -> (Int, String?) {
            guard case .failure(let e) = try c.call("score", p) else { return (0, nil) }
            return (e.code.rawValue, e.data?["field"]?.stringValue)
        }
        #expect(try code(["inputs": [["text": "ok"], ["text": "  "]]]) == (-32602, "inputs[1].text"))
        #expect(try code(["inputs": []]) == (-32602, "inputs"))
        #expect(try code(["inputs": [["text": "ok"]], "topK": 0]) == (-32602, "topK"))
        #expect(try code(["inputs": [["text": "ok"]], "perturb": ["n": 99]]) == (-32602, "perturb.n"))
        let thousand = JSONValue.array((0..<1000).map { _ in ["text": "ok"] })
        #expect(try code(["inputs": thousand, "perturb": ["n": 32]]) == (-32602, "perturb.n"))
        #expect(try code(["inputs": [["id": 5, "text": "ok"]]]) == (-32602, "inputs[0].id"))
    }
}
