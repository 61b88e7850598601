import Foundation
import JSON
import JSONRPC
import Testing

@Suite("stdio sessions (LSP lifecycle)")
struct StdioTests {
    @Test("requests before initialize get -32002; initialize, shutdown and exit end with code 0; stdout is protocol only")
    func lifecycle() throws {
        let d = try StdioDaemon()
        let early = d.request(1, "daemon/ping")
        #expect(early?["error"]?["code"] == -32002)

        let initResult = try #require(d.request(2, "initialize", ["processId": .int(Int64(getpid())), "clientInfo": ["name": "test"], "capabilities": [:]]))
        let result = try #require(initResult["result"])
        #expect(SchemaValidator.shared.validateResult(result, method: "initialize") == [])
        #expect(result["serverInfo"]?["name"] == "robustd")
        d.send(.notification(method: "initialized", params: [:]))

        let again = d.request(3, "initialize", [:])
        #expect(again?["error"]?["code"] == -32600)

        let ping = d.request(4, "daemon/ping")
        #expect(ping?["result"] == [:])
        let status = try #require(d.request(5, "daemon/status")?["result"])
        #expect(SchemaValidator.shared.validateResult(status, method: "daemon/status") == [])
        #expect(status["connections"]?["stdio"] == 1)

        #expect(d.request(6, "shutdown")?["result"] == .null)
        #expect(d.request(7, "daemon/ping")?["error"]?["code"] == -32600)
        d.send(.notification(method: "exit", params: nil))
        #expect(d.wait() == 0)

        // Everything on stdout parses as Content-Length frames of JSON-RPC messages.
        var check = FrameDecoder(style: .contentLength)
        check.feed(d.stdoutBytes)
        var count = 0
        while let f = check.next() {
            guard case .message(let body) = f else { Issue.record("non-frame output \(f)"); break }
            #expect((try? JSONParser.parse(body))?["jsonrpc"] == "2.0")
            count += 1
        }
        #expect(count == 7)
        #expect(check.bufferedBytes == 0)
    }

    @Test("warnings reach the editor as window/logMessage; a bad header block costs only itself")
    func logMessage() throws {
        let d = try StdioDaemon()
        _ = d.request(1, "initialize", [:])
        d.sendRaw(Array("Content-Length: nine\r\n\r\n".utf8))
        var log: JSONValue? = nil
        var error: JSONValue? = nil
        while log == nil || error == nil, let m = d.receive(timeout: 5) {
            if m["method"] == "window/logMessage" { log = m["params"] }
            if m["error"] != nil { error = m["error"] }
        }
        #expect(error?["code"] == -32700)
        #expect(log?["type"] == 2)
        #expect(log?["message"]?.stringValue?.contains("bad header") == true)
        #expect(d.request(2, "daemon/ping")?["result"] == [:])
    }

    @Test("exit without shutdown ends with code 1")
    func exitWithoutShutdown() throws {
        let d = try StdioDaemon()
        _ = d.request(1, "initialize", [:])
        d.send(.notification(method: "exit", params: nil))
        #expect(d.wait() == 1)
    }

    @Test("closing stdin ends the daemon")
    func eof() throws {
        let d = try StdioDaemon()
        _ = d.request(1, "initialize", [:])
        _ = d.request(2, "shutdown")
        d.closeInput()
        #expect(d.wait() == 0)
    }

    @Test("cancellation over stdio answers -32800 at once and progress arrives under the client's token")
    func cancelAndProgress() throws {
        let d = try StdioDaemon()
        _ = d.request(1, "initialize", [:])
        d.send(.request(id: .int(2), method: "debug/sleep", params: ["ms": 200, "steps": 4, "workDoneToken": "tok"]))
        var kinds: [String] = []
        while let m = d.receive() {
            if m["method"] == "$/progress" {
                #expect(m["params"]?["token"] == "tok")
                kinds.append(m["params"]?["value"]?["kind"]?.stringValue ?? "?")
            }
            if m["id"] == 2 { #expect(m["result"]?["stepsDone"] == 4); break }
        }
        #expect(kinds.first == "begin")
        #expect(kinds.last == "end")
        #expect(kinds.filter { $0 == "report" }.count == 4)

        let started = Date()
        d.send(.request(id: .int(3), method: "debug/sleep", params: ["ms": 30_000, "steps": 3000]))
        usleep(100_000)
        d.send(.notification(method: "$/cancelRequest", params: ["id": 3]))
        var answer: JSONValue?
        while let m = d.receive() { if m["id"] == 3 { answer = m; break } }
        #expect(answer?["error"]?["code"] == -32800)
        #expect(Date().timeIntervalSince(started) < 5)
        // The compute thread observed the cancellation and is free again.
        var running: JSONValue? = nil
        for _ in 0..<50 {
            running = d.request(10, "daemon/status")?["result"]?["queues"]?["computeRunning"]
            if running == 0 { break }
            usleep(20_000)
        }
        #expect(running == 0)
    }

    @Test("a session read from a regular file works (stdin bridged)")
    func fileInput() throws {
        let dir = TempDir()
        let input = dir.path + "/in.txt"
        var bytes: [UInt8] = []
        for m: Message in [.request(id: .int(1), method: "initialize", params: [:]), .request(id: .int(2), method: "daemon/ping", params: nil),
                           .request(id: .int(3), method: "shutdown", params: nil), .notification(method: "exit", params: nil)] {
            bytes += FramingStyle.contentLength.frame(m.bytes)
        }
        _ = FileManager.default.createFile(atPath: input, contents: Data(bytes))
        let p = Process()
        p.executableURL = Binaries.robustd
        p.arguments = ["--stdio", "--state-dir", dir.path + "/state"]
        p.standardInput = FileHandle(forReadingAtPath: input)
        let out = Foundation.Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        var dec = FrameDecoder(style: .contentLength)
        dec.feed(Array(data))
        var ids: [JSONValue] = []
        while case .message(let b)? = dec.next() { ids.append((try JSONParser.parse(b))["id"] ?? .null) }
        #expect(ids == [1, 2, 3])
    }
}
