import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdTestSupport
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

    @Test("replay is deterministic by seed and reports each error once; score, flag, feedback, regions and metrics subcommands")
    func replayAndDaily() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        _ = try c.call(DatasetImportMethod.self, .init(name: "traffic", records: VersionTests.recordList)).get()
        let sock = ["--socket", d.socketPath]
        func replay(_ seed: String) throws -> JSONValue {
            let (s, o, e) = try run(Binaries.robustctl, ["replay", "--dataset", "traffic", "--seed", seed, "--feedback-rate", "1", "--typo-rate", "0.5", "--json"] + sock)
            #expect(s == 0, "\(e)")
            return try JSONParser.parse(o.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        let a = try replay("3"), b = try replay("3"), other = try replay("4")
        #expect(a["scored"] == 30 && b["scored"] == 30)
        #expect(a["inputsDigest"] == b["inputsDigest"])
        #expect(a["inputsDigest"] != other["inputsDigest"])
        #expect(a["wrong"] == b["wrong"])
        // The second run of the same seed reports nothing new: the idempotency keys match.
        #expect(b["reported"] == 0 && b["alreadyReported"] == a["reported"])
        let (s1, o1, _) = try run(Binaries.robustctl, ["score", "my card is late", "a b c"] + sock)
        #expect(s1 == 0 && o1.split(separator: "\n").count == 2)
        let (s2, o2, _) = try run(Binaries.robustctl, ["flag"] + sock, stdin: "my card is late\nzzz qqq\n")
        #expect(s2 == 0 && o2.contains("of 2 flagged"))
        let (s3, o3, _) = try run(Binaries.robustctl, ["feedback", "--text", "the card ?", "--kind", "complaint", "--correct", "card_what"] + sock)
        #expect(s3 == 0 && o3.contains("recorded #"))
        let (s4, o4, _) = try run(Binaries.robustctl, ["regions", "--limit", "3"] + sock)
        #expect(s4 == 0 && o4.contains("intent:"))
        let (s5, o5, _) = try run(Binaries.robustctl, ["metrics", "requests"] + sock)
        #expect(s5 == 0 && o5.contains("requests.1m"))
        let (s6, o6, _) = try run(Binaries.robustctl, ["metrics", "--prometheus"] + sock)
        #expect(s6 == 0 && o6.contains("robustd_scored_inputs_total"))
        let (s7, _, e7) = try run(Binaries.robustctl, ["replay", "--dataset", "nope"] + sock)
        #expect(s7 == 1 && e7.contains("no dataset named"))
        let (s8, _, e8) = try run(Binaries.robustctl, ["regions", "--socket", d.dir.path + "/none.sock"])
        #expect(s8 == 2 && e8.contains("robustd --socket"))
    }
}
