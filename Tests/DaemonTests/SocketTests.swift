import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Testing

@Suite("Unix socket")
struct SocketTests {
    @Test("50 concurrent clients each get their own answers, all valid against the schema")
    func concurrentClients() throws {
        let d = try DaemonProcess()
        final class Failures: @unchecked Sendable {
            let lock = NSLock()
            var list: [String] = []
            func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
        }
        let failures = Failures()
        let path = d.socketPath
        let group = DispatchGroup()
        for c in 0..<50 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let client = try RPCClient.validating(path: path)
                    for i in 0..<40 {
                        let tag: JSONValue = ["client": .int(Int64(c)), "i": .int(Int64(i))]
                        let r = try client.call("debug/echo", tag, timeout: 20)
                        if r != .success(tag) { failures.add("client \(c) got \(r)") }
                    }
                    let s = try client.call("daemon/status", nil, timeout: 20)
                    guard case .success(let status) = s else { failures.add("status \(s)"); return }
                    let problems = SchemaValidator.shared.validateResult(status, method: "daemon/status")
                    if !problems.isEmpty { failures.add("\(problems)") }
                } catch { failures.add("client \(c): \(error)") }
            }.start()
        }
        group.wait()
        #expect(failures.list == [])
        let client = try d.client()
        #expect(try client.call(DaemonStatus.self).get().connections.accepted >= 51)
        #expect(d.terminate() == 0)
    }

    @Test("stdio and the socket at once: an editor session and socket clients side by side")
    func bothTransports() throws {
        let dir = TempDir()
        let sock = dir.path + "/both.sock"
        let editor = try StdioDaemon(extraArgs: ["--socket", sock])
        #expect(editor.request(1, "initialize", [:])?["result"] != nil)
        var client: RPCClient? = nil
        for _ in 0..<200 where client == nil { client = try? RPCClient.validating(path: sock); usleep(10_000) }
        let c = try #require(client)
        let connections = try c.call(DaemonStatus.self).get().connections
        #expect(connections.stdio == 1)
        #expect(connections.socket == 1)
        #expect(editor.request(2, "daemon/ping")?["result"] == [:])
        // Ending the editor's session stops the daemon and removes the socket.
        #expect(editor.request(3, "shutdown")?["result"] == .null)
        editor.send(.notification(method: "exit", params: nil))
        #expect(editor.wait() == 0)
        #expect(!FileManager.default.fileExists(atPath: sock))
    }

    @Test("the socket is 0600 in a 0700 folder, and shutdown removes it")
    func permissionsAndCleanup() throws {
        let dir = TempDir()
        let folder = dir.path + "/run"
        let d = try DaemonProcess(socketPath: folder + "/robustd.sock")
        var st = stat()
        #expect(stat(d.socketPath, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)
        #expect(stat(folder, &st) == 0)
        #expect(st.st_mode & 0o777 == 0o700)
        #expect(d.terminate() == 0)
        #expect(!FileManager.default.fileExists(atPath: d.socketPath))
    }

    @Test("SIGTERM lets a request in flight finish before the daemon exits 0")
    func gracefulStop() throws {
        let d = try DaemonProcess()
        let client = try d.client()
        let id = client.makeID()
        try client.send(.request(id: id, method: "debug/sleep", params: ["ms": 400, "steps": 4]))
        usleep(100_000)
        kill(d.pid, SIGTERM)
        let answer = try client.awaitResponse(id: id, timeout: 10)
        #expect((try? answer.get())?["stepsDone"] == 4)
        #expect(d.wait() == 0)
        #expect(!FileManager.default.fileExists(atPath: d.socketPath))
        #expect(d.stderr.contains("waiting for requests in flight"))
    }

    @Test("a second daemon on a live socket exits non-zero and says why; a stale socket file is replaced")
    func secondDaemonAndStaleSocket() throws {
        let d = try DaemonProcess()
        let (status, _, err) = try run(Binaries.robustd, ["--socket", d.socketPath, "--state-dir", d.dir.path + "/state2"])
        #expect(status != 0)
        #expect(err.contains("already listening"))
        // The first daemon still answers.
        #expect(try d.client().call("daemon/ping") == .success([:]))
        // kill -9 leaves a stale file; the next daemon replaces it.
        kill(d.pid, SIGKILL)
        _ = d.wait()
        #expect(FileManager.default.fileExists(atPath: d.socketPath))
        let again = try DaemonProcess(socketPath: d.socketPath)
        #expect(try again.client().call("daemon/ping") == .success([:]))
        #expect(again.terminate() == 0)
    }

    @Test("a path that is not a socket is never replaced")
    func notASocket() throws {
        let dir = TempDir()
        let path = dir.path + "/file.sock"
        _ = FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8))
        let (status, _, err) = try run(Binaries.robustd, ["--socket", path, "--state-dir", dir.path + "/state"])
        #expect(status != 0)
        #expect(err.contains("not a socket"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep me")
    }

    @Test("another user's connection is refused and logged, even when the file mode would let it in")
    func otherUidRefused() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else { return }
        let d = try DaemonProcess()
        // Open the path up so that only the peer-uid check stands in the way.
        chmod(d.dir.path, 0o755)
        chmod(d.socketPath, 0o666)
        let script = """
            import socket,sys
            s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(5)
            try:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"daemon/ping"}\\n'); print(repr(s.recv(100)))
            except (BrokenPipeError, ConnectionResetError):
                print(repr(b''))
            """
        let (status, out, err) = try run(URL(fileURLWithPath: "/usr/bin/setpriv"),
                                         ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, d.socketPath])
        #expect(status == 0, "\(err)")
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "b''")
        #expect(try d.client().call(DaemonStatus.self).get().connections.refused == 1)
        #expect(d.stderr.contains("refused a connection from another user"))
    }

    @Test("a client that stops reading is disconnected at its queue limit; others are not slowed")
    func stalledReader() throws {
        let d = try DaemonProcess(extraArgs: ["--max-queued-output-bytes", "1000000"])
        let stalled = try d.client()
        let big = JSONValue.string(String(repeating: "x", count: 100_000))
        // ~40 MB of replies requested; the client never reads.
        var frames: [UInt8] = []
        for i in 0..<400 { frames += FramingStyle.ndjson.frame(Message.request(id: .int(Int64(i)), method: "debug/echo", params: [big]).bytes) }
        let fd = stalled.fd
        let payload = frames
        let sender = Thread {
            var off = 0
            while off < payload.count {
                let n = payload.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { break }
                off += n
            }
        }
        sender.start()
        let other = try d.client()
        var worst = 0.0
        for _ in 0..<100 {
            let t = Date()
            #expect(try other.call("daemon/ping", timeout: 5) == .success([:]))
            worst = max(worst, Date().timeIntervalSince(t))
        }
        var dropped: Int? = nil
        for _ in 0..<200 {
            dropped = try other.call(DaemonStatus.self).get().connections.dropped
            if dropped == 1 { break }
            usleep(20_000)
        }
        #expect(dropped == 1)
        #expect(worst < 2.0)
        #expect(d.stderr.contains("not reading"))
    }

    @Test("10,000 connect/disconnect cycles leave RSS flat")
    func noLeakOnConnections() throws {
        let d = try DaemonProcess()
        func cycle(_ n: Int) throws {
            for i in 0..<n {
                let c = try d.client()
                if i % 100 == 0 { _ = try c.call(Ping.self, timeout: 5) }
            }
        }
        try cycle(1000)
        usleep(200_000)
        let before = d.rssKiB()
        try cycle(10_000)
        usleep(300_000)
        let after = d.rssKiB()
        var open: Int? = nil
        for _ in 0..<50 {
            open = try d.client().call(DaemonStatus.self).get().connections.open
            if open == 1 { break }
            usleep(20_000)
        }
        #expect(open == 1)
        #expect(after - before < 2048, "RSS grew from \(before) KiB to \(after) KiB")
    }
}
