import Daemon
import Encoder
import Foundation
import JSON

extension FuzzTargets {
    /// The configuration file (robustd.toml's TOML subset, its keys and their checks).
    /// Invariants: no crash or hang; a refused file is refused with a message and the number of
    /// a line of the text.
    public static func config(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = bytes.count(where: { $0 == 0x0A }) + 1
        do throws(ConfigFile.Problem) {
            _ = try ConfigFile.parse(text)
        } catch {
            precondition(error.line >= 1 && error.line <= lines && !error.message.isEmpty, "problem \(error) in a text of \(lines) lines")
        }
    }

    /// A model folder's files: with the first byte even, the rest is a safetensors file; odd, a
    /// config.json. Invariants: a damaged file is refused with a ModelError, never a crash or
    /// an allocation its sizes ask for; every tensor a file lists reads back at its shape.
    public static func safetensors(_ bytes: [UInt8]) {
        guard let mode = bytes.first else { return }
        let body = Array(bytes.dropFirst())
        if mode & 1 == 1 {
            guard let json = try? JSONParser.parse(body) else { return }
            if let c = try? BertConfig(json: json) {
                precondition(c.hiddenSize % c.heads == 0 && c.parameterCount > 0, "an accepted config: \(c)")
            }
            return
        }
        let path = scratchFile
        guard FileManager.default.createFile(atPath: path, contents: Data(body)) else { return }
        guard let file = try? SafeTensorsFile(path: path) else { return }
        for e in file.entries.values {
            precondition(e.begin >= 0 && e.begin <= e.end && e.end <= body.count, "tensor \(e.name) at \(e.begin)..<\(e.end) of \(body.count) bytes")
            if let t = try? file.tensor(e.name, shape: e.shape) {
                precondition(t.shape == e.shape, "tensor \(e.name) read at \(t.shape), listed at \(e.shape)")
            }
        }
    }

    /// One file per process for the safetensors target (in memory where /dev/shm exists).
    static let scratchFile: String = {
        let dir = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        return "\(dir)/robustd-fuzz-\(getpid()).safetensors"
    }()
}
