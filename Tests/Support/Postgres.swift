import Foundation
import Store

/// The PostgreSQL server the fleet tests use: `ROBUSTD_TEST_POSTGRES` (scripts/test and .ci/run
/// start a private cluster and set it). Without it the PostgreSQL cases are skipped, except
/// under CI, where a missing server is a failure.
public enum TestPostgres {
    public static var url: String? { ProcessInfo.processInfo.environment["ROBUSTD_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 } }
    public static var required: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// A new, empty database on the test server; its URL.
    public static func freshDatabase() throws -> (url: String, drop: () -> Void) {
        guard let base = url else { throw StoreError(.unavailable, "ROBUSTD_TEST_POSTGRES is not set") }
        let name = "robustd_test_\(UInt64.random(in: 0...UInt64.max) % 1_000_000_000_000)"
        let admin = try PostgresConnection(url: base)
        try admin.query("CREATE DATABASE \(name)")
        let dbURL = replacingDatabase(in: base, with: name)
        return (dbURL, {
            _ = try? admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        })
    }

    /// postgresql://user@/robustd?host=… → postgresql://user@/NAME?host=…
    public static func replacingDatabase(in url: String, with name: String) -> String {
        PostgresConnection.replacingDatabase(in: url, with: name)
    }
}


/// A private PostgreSQL cluster of a test's own (scripts/pg-cluster), for tests that stop and
/// restart the server; stopped and removed at deinit.
public final class PrivateCluster {
    public let dir: String
    public private(set) var url = ""
    let script: String

    public init(packageRoot: String) throws {
        dir = "/tmp/rbd-pg-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        script = packageRoot + "/scripts/pg-cluster"
        url = try run(["start", dir]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @discardableResult
    func run(_ args: [String]) throws -> String {
        // posix_spawn and waitpid, output to files: the server the script starts lives on (a
        // pipe would never reach EOF), and Foundation's Process did not always reap the child.
        let outPath = "/tmp/rbd-pgout-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: outPath); try? FileManager.default.removeItem(atPath: outPath + ".err") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, outPath + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv = ["/bin/bash", script] + args
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", &actions, nil, &cargs, environ)
        guard rc == 0 else { throw StoreError(.unavailable, "cannot run pg-cluster: \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let o = FileManager.default.contents(atPath: outPath) ?? Data()
        let e = FileManager.default.contents(atPath: outPath + ".err") ?? Data()
        let exited = (status & 0x7f) == 0 && ((status >> 8) & 0xff) == 0
        guard exited else {
            throw StoreError(.unavailable, "pg-cluster \(args.joined(separator: " ")) failed: \(String(decoding: e, as: UTF8.self))")
        }
        return String(decoding: o, as: UTF8.self)
    }

    /// Stops the server (fast shutdown: connections are cut, as a crash or a restart would).
    public func stop() throws { try run(["stop", dir]) }
    /// Starts it again on the same socket.
    public func start() throws { url = try run(["start", dir]).trimmingCharacters(in: .whitespacesAndNewlines) }

    deinit {
        _ = try? run(["stop", dir])
        try? FileManager.default.removeItem(atPath: dir)
    }
}
