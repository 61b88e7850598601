import JSON
@testable import JSONRPC
import Scoring
import Testing

/// The request scanner reads common requests without the envelope's object; it must never
/// decide differently from the general path (parse, then validate the object).
@Suite("Request scanner")
struct RequestScannerTests {
    static func general(_ bytes: [UInt8]) -> Result<Message, Message.Invalid> {
        guard let v = try? JSONParser.parse(bytes) else { return .failure(.init(id: nil, error: .parseError("x"))) }
        return Message.from(v)
    }

    static func scan(_ bytes: [UInt8]) -> Message? { bytes.withUnsafeBytes { RequestScanner.scan($0, maxDepth: JSONParser.defaultMaxDepth) } }

    static let taken = [
        #"{"jsonrpc":"2.0","id":1,"method":"daemon/ping"}"#,
        #"{"method":"daemon/status","id":42,"jsonrpc":"2.0"}"#,
        #"  { "jsonrpc" : "2.0" , "id" : "abc-1" , "method" : "score" , "params" : {"inputs":[{"text":"é\n\"x\""}]} }  "#,
        #"{"jsonrpc":"2.0","id":-7,"method":"x","params":[1,2,{"a":null}]}"#,
        #"{"jsonrpc":"2.0","method":"$/cancelRequest","params":{"id":3}}"#,
        #"{"jsonrpc":"2.0","id":0,"method":"m","params":{}}"#,
        "{\"jsonrpc\":\"2.0\",\r\n\t\"id\":999999999999999,\"method\":\"m\"}",
    ]

    static let leftToTheGeneralPath = [
        #"{"jsonrpc":"2.0","id":1,"method":"daemon\/ping"}"#,          // an escape
        #"{"jsonrpc":"2.0","id":1,"method":"m","extra":true}"#,         // another key
        #"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,               // a repeated key
        #"{"jsonrpc":"2.0","id":null,"method":"m"}"#,                   // a null id
        #"{"jsonrpc":"2.0","id":1.5,"method":"m"}"#,                    // a fractional id
        #"{"jsonrpc":"2.0","id":1e3,"method":"m"}"#,
        #"{"jsonrpc":"2.0","id":01,"method":"m"}"#,                     // a leading zero (invalid JSON)
        #"{"jsonrpc":"2.0","id":1234567890123456,"method":"m"}"#,       // 16 digits
        #"{"jsonrpc":"\u0032.0","id":1,"method":"m"}"#,
        #"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
        #"{"id":1,"method":"m"}"#,
        #"{"jsonrpc":"2.0","id":1,"method":"ménage"}"#,
        #"{"jsonrpc":"2.0","id":1,"method":"m"} x"#,
        #"{"jsonrpc":"2.0","id":1,"method":"m","params":null}"#,
        #"{"jsonrpc":"2.0","id":1,"method":"m","params":3}"#,
        #"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":}}"#,
        #"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        #"{"jsonrpc":"2.0","id":1,"method":7}"#,
        #"[{"jsonrpc":"2.0","id":1,"method":"m"}]"#,
        #"{}"#, "", "{", #"{"jsonrpc":"2.0","id":1,"method":"m""#,
    ]

    @Test("common requests are read by the scanner, exactly as the general path reads them")
    func common() throws {
        for text in Self.taken {
            let bytes = Array(text.utf8)
            let fast = try #require(Self.scan(bytes), "\(text)")
            #expect(Self.general(bytes) == .success(fast), "\(text)")
        }
    }

    @Test("anything unusual is left to the general path, which still answers as before")
    func unusual() {
        for text in Self.leftToTheGeneralPath {
            let bytes = Array(text.utf8)
            #expect(Self.scan(bytes) == nil, "\(text)")
            if let v = try? JSONParser.parse(bytes), case .object = v {
                #expect(Payload.parse(bytes) == .single(Message.from(v)), "\(text)")
            }
        }
    }

    @Test("mutated requests: whenever the scanner reads one, the general path reads the same message")
    func mutations() {
        var rng = SeededRandom(seed: 5)
        let alphabet = Array(#"{}[]":,\ 0123456789-.eE"abcdijmnoprstu/$2é"#.utf8)
        var read = 0
        for round in 0..<20_000 {
            var bytes = Array(Self.taken[round % Self.taken.count].utf8)
            for _ in 0..<(1 + Int(rng.next() % 3)) {
                let at = Int(rng.next() % UInt64(bytes.count + 1))
                switch rng.next() % 3 {
                case 0 where at < bytes.count: bytes.remove(at: at)
                case 1: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                default: if at < bytes.count { bytes[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                }
            }
            guard let fast = Self.scan(bytes) else { continue }
            read += 1
            #expect(Self.general(bytes) == .success(fast), "\(String(decoding: bytes, as: UTF8.self))")
        }
        #expect(read > 1000)
    }
}
