import Testing
import JSON
@testable import JSONRPC
import RobustdTestSupport

@Suite("Messages and typed params")
struct MessageTests {
    func parse(_ s: String) -> Payload { Payload.parse(Array(s.utf8)) }

    @Test("classifies requests, notifications and responses")
    func kinds() {
        #expect(parse(#"{"jsonrpc":"2.0","id":1,"method":"m"}"#) == .single(.success(.request(id: .int(1), method: "m", params: nil))))
        #expect(parse(#"{"jsonrpc":"2.0","id":"x","method":"m","params":[1]}"#) == .single(.success(.request(id: .string("x"), method: "m", params: [1]))))
        #expect(parse(#"{"jsonrpc":"2.0","method":"n"}"#) == .single(.success(.notification(method: "n", params: nil))))
        #expect(parse(#"{"jsonrpc":"2.0","id":3,"result":null}"#) == .single(.success(.response(id: .int(3), result: .success(.null)))))
    }

    @Test("invalid requests keep their id when it can be recovered", arguments: [
        (#"{"jsonrpc":"1.0","id":7,"method":"m"}"#, RequestID?.some(.int(7)), "jsonrpc"),
        (#"{"jsonrpc":"2.0","id":7,"method":5}"#, .some(.int(7)), "'method' must be a string"),
        (#"{"jsonrpc":"2.0","id":7,"method":"m","params":3}"#, .some(.int(7)), "'params' must be an object or an array"),
        (#"{"jsonrpc":"2.0","id":{},"method":"m"}"#, nil, "'id' must be"),
        (#"{"jsonrpc":"2.0","id":null,"method":"m"}"#, nil, "must not be null"),
        (#"{"jsonrpc":"2.0","id":1}"#, .some(.int(1)), "needs 'method'"),
        (#"[1]"#, nil, "JSON object"),
    ])
    func invalid(text: String, id: RequestID?, fragment: String) {
        let items: [Result<Message, Message.Invalid>]
        switch parse(text) {
        case .single(let r): items = [r]
        case .batch(let b): items = b
        }
        guard case .failure(let inv) = items[0] else { Issue.record("accepted \(text)"); return }
        #expect(inv.id == id)
        #expect(inv.error.code == .invalidRequest)
        #expect(inv.error.message.contains(fragment), "\(inv.error.message)")
    }

    @Test("parse errors and empty batches are single failures")
    func parseErrors() {
        guard case .single(.failure(let e)) = parse("{oops") else { Issue.record(); return }
        #expect(e.error.code == .parseError)
        guard case .single(.failure(let b)) = parse("[]") else { Issue.record(); return }
        #expect(b.error.code == .invalidRequest)
    }

    @Test("responses serialise envelope-first and round-trip")
    func encodeResponse() throws {
        let m = Message.response(id: .int(5), result: .failure(RPCError(.invalidParams, "bad", data: ["field": "x"])))
        #expect(String(decoding: m.bytes, as: UTF8.self) == #"{"jsonrpc":"2.0","id":5,"error":{"code":-32602,"data":{"field":"x"},"message":"bad"}}"#)
        let back = Message.from(try JSONParser.parse(m.bytes))
        #expect(back == .success(m))
    }

    enum Mode: String, RPCEnum { case head, lora }
    struct Params: Codable, Equatable {
        struct Input: Codable, Equatable { var id: String?; var text: String }
        var inputs: [Input]
        var k: Int?
        var mode: Mode?
        var threshold: Double?
    }

    @Test("typed params decode, and a mismatch names the field and the expected form")
    func typedParams() throws {
        let ok: JSONValue = ["inputs": [["text": "hi"], ["id": "b", "text": "yo"]], "k": 3, "mode": "lora", "threshold": 1]
        #expect(try ok.decodeParams(Params.self) == Params(inputs: [.init(id: nil, text: "hi"), .init(id: "b", text: "yo")], k: 3, mode: .lora, threshold: 1))

        func error(_ v: JSONValue) -> RPCError? {
            do { _ = try v.decodeParams(Params.self); return nil } catch { return error }
        }
        let e1 = error(["inputs": [["text": "a"], ["text": 5]]])
        #expect(e1?.code == .invalidParams)
        #expect(e1?.data?["field"] == "inputs[1].text")
        #expect(e1?.data?["expected"] == "a string")
        #expect(e1?.data?["found"] == "number 5")

        let e2 = error(["k": 1])
        #expect(e2?.data?["field"] == "inputs")
        #expect(e2?.message.contains("required") == true)

        let e3 = error(["inputs": [], "mode": "full"])
        #expect(e3?.data?["field"] == "mode")
        #expect(e3?.data?["expected"] == "one of: head, lora")

        let e4 = error(["inputs": [], "k": 1.5])
        #expect(e4?.data?["expected"] == "an integer")
        let e5 = error(["inputs": [], "k": 1e20])
        #expect(e5?.data?["field"] == "k")
        let e6 = error(.array([1]))
        #expect(e6?.data?["expected"] == "an object")
    }

    @Test("absent params decode as an empty object")
    func emptyParams() throws {
        _ = try JSONValue.object([:]).decodeParams(EmptyParams.self)
        _ = try JSONValue.array([]).decodeParams(EmptyParams.self)
    }

    @Test("the encoder omits nil fields and writes nested values")
    func encoder() throws {
        let p = Params(inputs: [.init(id: nil, text: "t")], k: nil, mode: .head, threshold: 0.5)
        let v = try JSONValue.encoding(p)
        #expect(v == ["inputs": [["text": "t"]], "mode": "head", "threshold": 0.5])
        #expect(try v.decodeParams(Params.self) == p)
    }
}
