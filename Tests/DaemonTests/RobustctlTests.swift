import Foundation
import JSONRPC
import Testing

@Suite("robustctl")
struct RobustctlTests {
    @Test("status, call (argument and stdin), --json, and error exits")
    func commands() throws {
        let d = try DaemonProcess()
        let sock = ["--socket", d.socketPath]
        let (s1, out1, _) = try run(Binaries.robustctl, ["status"] + sock)
        #expect(s1 == 0)
        #expect(out1.contains("connections"))

        let (s1b, out1b, _) = try run(Binaries.robustctl, sock + ["--json", "status"])
        #expect(s1b == 0)
        #expect(out1b.contains("\"connections\""))

        let (s2, out2, _) = try run(Binaries.robustctl, ["call", "daemon/status", "--json"] + sock)
        #expect(s2 == 0)
        let status = try JSONParser.parse(out2.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(SchemaValidator.shared.validateResult(status, method: "daemon/status") == [])

        let (s3, out3, _) = try run(Binaries.robustctl, ["call", "debug/echo", "--json"] + sock, stdin: #"{"a":[1,2]}"#)
        #expect(s3 == 0)
        #expect(try JSONParser.parse(out3.trimmingCharacters(in: .whitespacesAndNewlines)) == ["a": [1, 2]])

        let (s4, _, err4) = try run(Binaries.robustctl, ["call", "debug/sleep", #"{"ms":"x"}"#] + sock)
        #expect(s4 == 1)
        #expect(err4.contains("-32602"))
        #expect(err4.contains("'ms' must be an integer"))

        let (s5, _, err5) = try run(Binaries.robustctl, ["call", "daemon/ping", "{oops"] + sock)
        #expect(s5 == 2)
        #expect(err5.contains("not valid JSON"))

        let (s6, out6, _) = try run(Binaries.robustctl, ["stop"] + sock)
        #expect(s6 == 0)
        #expect(out6.contains("stopping"))
        #expect(d.wait() == 0)
    }

    @Test("says how to start the daemon when it is not running")
    func notRunning() throws {
        let dir = TempDir()
        let (s, _, err) = try run(Binaries.robustctl, ["status", "--socket", dir.path + "/none.sock"])
        #expect(s == 2)
        #expect(err.contains("robustd is not running"))
        #expect(err.contains("robustd --socket"))
    }
}

@Suite("OpenRPC document")
struct OpenRPCTests {
    @Test("rpc.discover returns schemas/openrpc.json, and it lists exactly the registered methods")
    func discover() throws {
        let d = try DaemonProcess()
        let doc = try d.client().call("rpc.discover").get()
        #expect(doc == SchemaValidator.shared.document)
        let caps = try d.client().call("initialize", [:]).get()
        let registered = caps["capabilities"]?["experimental"]?["robustd"]?["methods"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(Set(registered) == Set(SchemaValidator.shared.methodNames))
        #expect(SchemaValidator.shared.validateResult(caps, method: "initialize") == [])
    }
}
