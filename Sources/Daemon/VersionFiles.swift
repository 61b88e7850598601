import Encoder
import Foundation
import JSONRPC
import Scoring
import Tensor

/// A version's folder in the state folder: `versions/<id>/weights.safetensors` and
/// `manifest.json`. Written into a temporary folder, fsynced, then renamed into place, so a
/// half-written version never exists under its final name.
enum VersionFiles {
    static func folder(_ stateDir: String, _ id: Int) -> String { stateDir + "/versions/\(id)" }

    static func write(_ v: ModelVersion, manifest extra: [String: JSONValue], stateDir: String) throws {
        let root = stateDir + "/versions"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let tmp = root + "/.\(v.id).tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: tmp)
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        let tensors = v.tensors.map { t in (t.name, Tensor(shape: t.shape, values: t.values)) }
        try SafeTensorsWriter.write(tensors, to: tmp + "/weights.safetensors", metadata: ["format": "robustd-version", "version": String(v.id)])
        var manifest = extra
        manifest["id"] = .int(Int64(v.id))
        manifest["labels"] = .array(v.labels.map { .string($0) })
        manifest["temperature"] = .double(v.temperature)
        manifest["oosThreshold"] = .double(Double(v.oosThreshold))
        manifest["neighboursK"] = .int(Int64(v.outOfScope.k))
        try AtomicFile.write(Array(JSONWriter.pretty(.object(manifest)).utf8) + [0x0a], to: tmp + "/manifest.json")
        let final = folder(stateDir, v.id)
        try? FileManager.default.removeItem(atPath: final)
        guard rename(tmp, final) == 0 else { throw ModelError("cannot move the version into place: \(String(cString: strerror(errno)))", file: final) }
        let dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    static func read(id: Int, stateDir: String) throws -> ModelVersion {
        let dir = folder(stateDir, id)
        guard let data = FileManager.default.contents(atPath: dir + "/manifest.json") else {
            throw ModelError("missing", file: dir + "/manifest.json")
        }
        let m = try JSONParser.parse(Array(data))
        guard let labels = m["labels"]?.arrayValue?.compactMap(\.stringValue), let T = m["temperature"]?.doubleValue,
              let threshold = m["oosThreshold"]?.doubleValue else {
            throw ModelError("incomplete manifest", file: dir + "/manifest.json")
        }
        let file = try SafeTensorsFile(path: dir + "/weights.safetensors")
        return try ModelVersion.restore(id: id, labels: labels, temperature: T, oosThreshold: Float(threshold),
                                        k: Int(m["neighboursK"]?.intValue ?? 5)) { name, shape in
            guard let e = file.entries[name] else { throw ModelError("missing", file: "weights.safetensors", tensor: name) }
            let t = try file.tensor(name, shape: shape ?? e.shape)
            return t.values
        }
    }
}
