import Foundation
import Store
import Testing
@testable import Daemon

/// The checks docs/reliability.md's security review points to that are not end to end.
@Suite("Security: paths from the shared store")
struct SecurityTests {
    @Test("a version file named by the shared store can only land inside the version's folder")
    func versionFilePaths() throws {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/./b", "", "a b", "adapter/\u{0}x", String(repeating: "a", count: 201), "é"] {
            #expect(!VersionFiles.isSafeRelativePath(bad), "\(bad.debugDescription) accepted")
        }
        for good in ["manifest.json", "weights.safetensors", "adapter/adapter_config.json", "a-b_c.d"] {
            #expect(VersionFiles.isSafeRelativePath(good))
        }
        let state = TempDir()
        let escape = VersionFile(path: "../../escaped", bytes: [1, 2, 3], sha256: SHA256.hex([1, 2, 3]))
        #expect(throws: (any Error).self) { try VersionFiles.install([escape], id: 7, stateDir: state.path) }
        #expect(!FileManager.default.fileExists(atPath: state.path + "/escaped") && !FileManager.default.fileExists(atPath: state.path + "/../escaped"))
        #expect(!FileManager.default.fileExists(atPath: VersionFiles.folder(state.path, 7)))
        let left = (try? FileManager.default.contentsOfDirectory(atPath: state.path + "/versions")) ?? []
        #expect(left.isEmpty, "a refused install leaves \(left)")
    }
}
