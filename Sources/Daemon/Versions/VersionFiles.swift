import Encoder
import Foundation
import JSON
import JSONRPC
import Scoring
import Store
import Tensor

/// A version's folder in the state folder, `versions/<id>/`:
/// - `weights.safetensors`: head, standardisation, out-of-scope statistics;
/// - `layers.safetensors`: the encoder layers the version changed, under HuggingFace BERT's
///   names (absent when it changed none);
/// - `adapter/adapter_model.safetensors` and `adapter/adapter_config.json`: LoRA adapters in
///   PEFT's layout (lora versions);
/// - `normaliser.json`: the spelling normaliser's vocabulary and settings (absent: none);
/// - `manifest.json`: labels, temperature, threshold, precision (when the version has its own),
///   lineage, report.
///
/// Written into a temporary folder, fsynced, then renamed into place, so a half-written
/// version never exists under its final name.
enum VersionFiles {
    static func folder(_ stateDir: String, _ id: Int) -> String { stateDir + "/versions/\(id)" }

    /// What a version adds to the base model: the head side, and changed encoder layers.
    struct Contents {
        var version: ModelVersion
        var layers: [Int: TrainableLayer.Parameters] = [:]
        var adapters: [Int: TrainableLayer.Adapters] = [:]
    }

    static func write(_ c: Contents, manifest extra: [String: JSONValue], stateDir: String, baseModel: String = "") throws {
        let v = c.version
        let root = stateDir + "/versions"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let tmp = root + "/.\(v.id).tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let tensors = v.tensors.map { t in (t.name, Tensor(shape: t.shape, values: t.values)) }
        try SafeTensorsWriter.write(tensors, to: tmp + "/weights.safetensors", metadata: ["format": "robustd-version", "version": String(v.id)])
        if !c.layers.isEmpty {
            let named = c.layers.keys.sorted().flatMap { c.layers[$0]!.huggingFaceTensors(layer: $0) }
            try SafeTensorsWriter.write(named, to: tmp + "/layers.safetensors", metadata: ["format": "pt", "robustd": "changed encoder layers"])
        }
        if let n = v.normaliser {
            try AtomicFile.write(Array(JSONWriter.pretty(normaliserJSON(n)).utf8) + [0x0a], to: tmp + "/normaliser.json")
        }
        if !c.adapters.isEmpty {
            try FileManager.default.createDirectory(atPath: tmp + "/adapter", withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            try writePEFT(c.adapters, to: tmp + "/adapter", baseModel: baseModel)
        }
        var manifest = extra
        manifest["id"] = .int(Int64(v.id))
        manifest["labels"] = .array(v.labels.map { .string($0) })
        manifest["temperature"] = .double(v.temperature)
        manifest["oosThreshold"] = .double(Double(v.oosThreshold))
        manifest["neighboursK"] = .int(Int64(v.outOfScope.k))
        manifest["changedLayers"] = .array(c.layers.keys.sorted().map { .int(Int64($0)) })
        if let p = v.precision { manifest["precision"] = .string(p) }
        if let c = v.oosCalibration {
            manifest["oosCalibration"] = .object(["neighbourMean": .double(c.neighbourMean), "neighbourScale": .double(c.neighbourScale),
                                                  "uncertaintyMean": .double(c.uncertaintyMean), "uncertaintyScale": .double(c.uncertaintyScale)])
        }
        if let f = v.fragility {
            manifest["fragility"] = .object(Dictionary(uniqueKeysWithValues: f.map { ($0.key, JSONValue.double($0.value)) }))
            manifest["fragilityTypoRate"] = .double(Fragility.typoRate)
        }
        // Every file's sha256, checked at each read: a truncated or altered file is refused,
        // never served.
        manifest["files"] = .object(Dictionary(uniqueKeysWithValues: try collect(folder: tmp).map { ($0.path, JSONValue.string($0.sha256)) }))
        try AtomicFile.write(Array(JSONWriter.pretty(.object(manifest)).utf8) + [0x0a], to: tmp + "/manifest.json")
        let final = folder(stateDir, v.id)
        try? FileManager.default.removeItem(atPath: final)
        guard rename(tmp, final) == 0 else { throw ModelError("cannot move the version into place: \(String(cString: strerror(errno)))", file: final) }
        let dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// LoRA adapters as PEFT saves them: `adapter_model.safetensors` with
    /// `base_model.model.encoder.layer.<n>.<module>.lora_A.weight` / `lora_B.weight`, and an
    /// `adapter_config.json` whose `target_modules` regex names exactly the adapted modules.
    static func writePEFT(_ adapters: [Int: TrainableLayer.Adapters], to dir: String, baseModel: String) throws {
        var tensors: [(String, Tensor)] = []
        let layers = adapters.keys.sorted()
        for l in layers {
            for (module, a) in zip(TrainableLayer.Adapters.modules, adapters[l]!.all) {
                let p = "base_model.model.encoder.layer.\(l).\(module)"
                tensors.append((p + ".lora_A.weight", a.a))
                tensors.append((p + ".lora_B.weight", a.b))
            }
        }
        try SafeTensorsWriter.write(tensors, to: dir + "/adapter_model.safetensors", metadata: ["format": "pt"])
        let first = adapters[layers[0]]!.query
        let regex = "encoder\\.layer\\.(" + layers.map(String.init).joined(separator: "|")
            + ")\\.(attention\\.self\\.(query|key|value)|attention\\.output\\.dense|intermediate\\.dense|output\\.dense)"
        let config: JSONValue = .object([
            "peft_type": "LORA", "task_type": "FEATURE_EXTRACTION", "base_model_name_or_path": .string(baseModel),
            "r": .int(Int64(first.rank)), "lora_alpha": .double(Double(first.alpha)), "lora_dropout": .double(0),
            "target_modules": .string(regex), "bias": "none", "fan_in_fan_out": false, "inference_mode": true,
            "init_lora_weights": true, "modules_to_save": .null, "layers_to_transform": .null, "layers_pattern": .null,
            "rank_pattern": .object([:]), "alpha_pattern": .object([:]), "use_rslora": false, "use_dora": false, "revision": .null,
        ])
        try AtomicFile.write(Array(JSONWriter.pretty(config).utf8) + [0x0a], to: dir + "/adapter_config.json")
    }

    /// The normaliser as stored: settings, and the words with their counts, sorted.
    static func normaliserJSON(_ n: Normaliser) -> JSONValue {
        let s = n.settings
        return .object([
            "format": "robustd-normaliser", "formatVersion": 1,
            "settings": .object([
                "maxCost": .double(s.maxCost), "shortMaxCost": .double(s.shortMaxCost), "shortLength": .int(Int64(s.shortLength)),
                "minLength": .int(Int64(s.minLength)), "costWeight": .double(s.costWeight), "rareCount": .int(Int64(s.rareCount)),
                "typoRatio": .double(s.typoRatio),
            ]),
            "words": .array(n.counts.keys.sorted().map { .array([.string($0), .int(Int64(n.counts[$0]!))]) }),
        ])
    }

    static func readNormaliser(_ path: String, protected: Set<String>) throws -> Normaliser? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let j = try JSONParser.parse(Array(data))
        guard j["format"]?.stringValue == "robustd-normaliser", let words = j["words"]?.arrayValue else {
            throw ModelError("not a robustd normaliser", file: path)
        }
        var s = Normaliser.Settings()
        if let o = j["settings"] {
            s.maxCost = o["maxCost"]?.doubleValue ?? s.maxCost
            s.shortMaxCost = o["shortMaxCost"]?.doubleValue ?? s.shortMaxCost
            s.shortLength = o["shortLength"]?.intValue.map(Int.init) ?? s.shortLength
            s.minLength = o["minLength"]?.intValue.map(Int.init) ?? s.minLength
            s.costWeight = o["costWeight"]?.doubleValue ?? s.costWeight
            s.rareCount = o["rareCount"]?.intValue.map(Int.init) ?? s.rareCount
            s.typoRatio = o["typoRatio"]?.doubleValue ?? s.typoRatio
        }
        var counts: [String: Int] = [:]
        for w in words {
            guard let pair = w.arrayValue, pair.count == 2, let word = pair[0].stringValue, let c = pair[1].intValue, c > 0 else {
                throw ModelError("a word entry is not [word, count > 0]", file: path)
            }
            counts[word] = Int(c)
        }
        return Normaliser(counts: counts, protected: protected, settings: s)
    }

    /// Reads a version back: its head side, and the serving weights of the layers it changed.
    /// `protected`: the base model's whole words, which the version's normaliser never corrects.
    static func read(id: Int, stateDir: String, protected: Set<String> = []) throws -> (ModelVersion, [Int: BertLayerWeights]) {
        let dir = folder(stateDir, id)
        guard let data = FileManager.default.contents(atPath: dir + "/manifest.json") else {
            throw ModelError("missing", file: dir + "/manifest.json")
        }
        let m: JSONValue
        do { m = try JSONParser.parse(Array(data)) } catch { throw ModelError("damaged (not valid JSON: \(error))", file: dir + "/manifest.json") }
        try verifyChecksums(m, dir: dir)
        guard let labels = m["labels"]?.arrayValue?.compactMap(\.stringValue), let T = m["temperature"]?.doubleValue,
              let threshold = m["oosThreshold"]?.doubleValue else {
            throw ModelError("incomplete manifest", file: dir + "/manifest.json")
        }
        let file = try SafeTensorsFile(path: dir + "/weights.safetensors")
        var version = try ModelVersion.restore(id: id, labels: labels, temperature: T, oosThreshold: Float(threshold),
                                               k: Int(m["neighboursK"]?.intValue ?? 5)) { name, shape in
            guard let e = file.entries[name] else { throw ModelError("missing", file: "weights.safetensors", tensor: name) }
            let t = try file.tensor(name, shape: shape ?? e.shape)
            return t.values
        }.withNormaliser(try readNormaliser(dir + "/normaliser.json", protected: protected))
         .withFragility(m["fragility"]?.objectValue.map { o in o.compactMapValues(\.doubleValue) })
        if let p = m["precision"] {
            guard let name = p.stringValue, Precision(rawValue: name) != nil else {
                throw ModelError("precision must be " + Precision.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or "), file: dir + "/manifest.json")
            }
            version = version.withPrecision(name)
        }
        if let c = m["oosCalibration"] {
            guard let nm = c["neighbourMean"]?.doubleValue, let ns = c["neighbourScale"]?.doubleValue, ns > 0,
                  let um = c["uncertaintyMean"]?.doubleValue, let us = c["uncertaintyScale"]?.doubleValue, us > 0 else {
                throw ModelError("oosCalibration needs neighbourMean, neighbourScale > 0, uncertaintyMean, uncertaintyScale > 0", file: dir + "/manifest.json")
            }
            version = version.withOutOfScope(calibration: OOSCalibration(neighbourMean: nm, neighbourScale: ns, uncertaintyMean: um, uncertaintyScale: us),
                                             threshold: version.oosThreshold)
        }
        var layers: [Int: BertLayerWeights] = [:]
        let changed = (m["changedLayers"]?.arrayValue ?? []).compactMap { $0.intValue.map(Int.init) }
        if !changed.isEmpty {
            let lf = try SafeTensorsFile(path: dir + "/layers.safetensors")
            for l in changed {
                let p = try TrainableLayer.Parameters(huggingFace: { (name: String) throws(ModelError) -> Tensor in
                    guard let e = lf.entries[name] else { throw ModelError("missing", file: "layers.safetensors", tensor: name) }
                    return try lf.tensor(name, shape: e.shape).copy()
                }, layer: l)
                layers[l] = p.serving
            }
        }
        return (version, layers)
    }

    /// Checks the files against the sha256s the manifest recorded (versions written before
    /// the manifest held them have none to check).
    static func verifyChecksums(_ m: JSONValue, dir: String) throws {
        guard let files = m["files"]?.objectValue else { return }
        for (rel, sum) in files.sorted(by: { $0.key < $1.key }) {
            guard isSafeRelativePath(rel), let expected = sum.stringValue else { throw ModelError("damaged (a bad files entry '\(rel)')", file: dir + "/manifest.json") }
            guard let data = FileManager.default.contents(atPath: dir + "/" + rel) else { throw ModelError("missing (the manifest lists it)", file: dir + "/" + rel) }
            guard SHA256.hex([UInt8](data)) == expected else {
                throw ModelError("damaged: its sha256 is not the one its manifest recorded (truncated or altered)", file: dir + "/" + rel)
            }
        }
    }

    /// Every file of a version's folder, with its sha256 (for the shared store).
    static func collect(stateDir: String, id: Int) throws(StoreError) -> [VersionFile] {
        let dir = folder(stateDir, id)
        guard FileManager.default.fileExists(atPath: dir) else { throw StoreError(.notFound, "version \(id) has no folder in \(stateDir)") }
        return try collect(folder: dir)
    }

    static func collect(folder dir: String) throws(StoreError) -> [VersionFile] {
        guard let e = FileManager.default.enumerator(atPath: dir) else { throw StoreError(.notFound, "no folder \(dir)") }
        var out: [VersionFile] = []
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir + "/" + rel, isDirectory: &isDir), !isDir.boolValue else { continue }
            guard let data = FileManager.default.contents(atPath: dir + "/" + rel) else { throw StoreError(.invalid, "cannot read \(dir)/\(rel)") }
            let bytes = [UInt8](data)
            out.append(VersionFile(path: rel, bytes: bytes, sha256: SHA256.hex(bytes)))
        }
        return out.sorted { $0.path < $1.path }
    }

    /// A relative path a version folder may hold: no absolute path, no `..`, plain characters.
    static func isSafeRelativePath(_ p: String) -> Bool {
        guard !p.isEmpty, p.count <= 200, !p.hasPrefix("/") else { return false }
        let parts = p.split(separator: "/", omittingEmptySubsequences: false)
        return parts.allSatisfy { part in
            !part.isEmpty && part != "." && part != ".." && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        }
    }

    /// Installs files fetched from the shared store as the version's folder: written into a
    /// temporary folder, fsynced, renamed into place (a crash leaves no half folder).
    static func install(_ files: [VersionFile], id: Int, stateDir: String) throws {
        let root = stateDir + "/versions"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let tmp = root + "/.\(id).tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        for f in files where !isSafeRelativePath(f.path) {
            throw ModelError("the shared store names a file outside the version's folder", file: f.path)
        }
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        for f in files {
            let parent = (tmp + "/" + f.path as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            try AtomicFile.write(f.bytes, to: tmp + "/" + f.path)
        }
        let final = folder(stateDir, id)
        guard rename(tmp, final) == 0 else {
            let e = errno
            try? FileManager.default.removeItem(atPath: tmp)
            // Another request cached it meanwhile: that copy is as good.
            if FileManager.default.fileExists(atPath: final + "/manifest.json") { return }
            throw ModelError("cannot move the version into place: \(String(cString: strerror(e)))", file: final)
        }
        let dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// Removes temporary folders left by a write that a crash interrupted.
    static func cleanTemporaries(stateDir: String) {
        let root = stateDir + "/versions"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
            try? FileManager.default.removeItem(atPath: root + "/" + name)
        }
    }
}
