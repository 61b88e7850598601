import Testing
@testable import JSON
import RobustdTestSupport

@Suite("JSON parser and writer")
struct JSONParserTests {
    @Test("round-trips values through the writer")
    func roundTrip() throws {
        let texts = [
            #"{"a":[1,-2,3.5,1e-07,true,false,null],"b":{"c":"d\n\"e\"\\"},"u":"é😀"}"#,
            "[]", "{}", "0", "-0.25", #""\u0001""#, "9223372036854775807",
        ]
        for t in texts {
            let v = try JSONParser.parse(t)
            #expect(try JSONParser.parse(JSONWriter.string(v)) == v, "\(t)")
        }
    }

    @Test("keeps integers exact and makes other numbers doubles")
    func numbers() throws {
        #expect(try JSONParser.parse("42") == .int(42))
        #expect(try JSONParser.parse("-9223372036854775808") == .int(Int64.min))
        #expect(try JSONParser.parse("9223372036854775808") == .double(9223372036854775808))
        #expect(try JSONParser.parse("1.5e3") == .double(1500))
    }

    @Test("decodes escapes and surrogate pairs")
    func escapes() throws {
        #expect(try JSONParser.parse(#""\ud83d\ude00 \u00e9 \/ \t""#) == .string("😀 é / \t"))
    }

    @Test("rejects malformed JSON with the place and the reason", arguments: [
        ("{", "end of input"),
        ("[1,]", "expected a value"),
        ("{\"a\" 1}", "expected ':'"),
        ("{\"a\":1,}", "expected a string key"),
        ("01", "leading zero"),
        ("1.", "digit after '.'"),
        ("-", "expected a digit"),
        ("tru", "literal"),
        ("\"abc", "unterminated"),
        ("\"a\tb\"", "control character"),
        ("\"\\x\"", "invalid escape"),
        ("\"\\ud800\"", "surrogate"),
        ("\"\\udc00\"", "surrogate"),
        ("{} x", "after the JSON value"),
        ("1e999", "out of range"),
        ("", "end of input"),
    ])
    func malformed(text: String, fragment: String) {
        do {
            _ = try JSONParser.parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.reason.contains(fragment), "\(text): \(error)")
        }
    }

    @Test("rejects invalid UTF-8 inside strings")
    func invalidUTF8() {
        for bytes: [UInt8] in [[0x22, 0xff, 0x22], [0x22, 0xc3, 0x22], [0x22, 0xed, 0xa0, 0x80, 0x22], [0x22, 0x5c, 0x6e, 0xfe, 0x22]] {
            #expect(throws: JSONParseError.self) { try JSONParser.parse(bytes) }
        }
    }

    @Test("refuses deep nesting instead of overflowing the stack")
    func deepNesting() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(deep) }
        let ok = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect((try? JSONParser.parse(ok)) != nil)
    }

    @Test("survives random bytes")
    func garbage() {
        var rng = SplitMix(seed: 7)
        for _ in 0..<2000 {
            let n = Int(rng.next() % 64)
            let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = try? JSONParser.parse(bytes)
        }
        // Mutations of a valid document: flip one byte at a time.
        let base = Array(#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[1,2,"é"]}}"#.utf8)
        for i in base.indices {
            var m = base
            m[i] = UInt8(truncatingIfNeeded: rng.next())
            _ = try? JSONParser.parse(m)
        }
    }

    @Test("writes control characters escaped and keys sorted")
    func writer() {
        #expect(JSONWriter.string(["b": 1, "a": .string("x\u{1}\"")]) == #"{"a":"x\u0001\"","b":1}"#)
        #expect(JSONWriter.string(.double(.nan)) == "null")
    }
}

/// A small deterministic generator for fuzz loops.
