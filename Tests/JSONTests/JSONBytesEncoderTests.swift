@testable import JSON
import RobustdTestSupport
import Testing

@Suite("JSONBytesEncoder: straight to bytes, the same JSON as the tree encoder")
struct JSONBytesEncoderTests {
    struct Inner: Codable, Equatable { var a: Int; var b: String?; var c: [Double] }
    enum Kind: String, Codable { case x, y }
    struct Outer: Codable, Equatable {
        var name: String
        var inner: Inner
        var list: [Inner]
        var kind: Kind
        var maybe: Inner?
        var floats: [Float]
        var map: [String: Double]
        var flag: Bool
        var big: UInt64
        var nested: [[Int]]
        var json: JSONValue
    }
    /// Fields merged from two keyed containers, a nested container left open, a super encoder.
    struct Merged: Encodable {
        var inner: Inner
        enum K: String, CodingKey { case extra, open, after, sup }
        func encode(to encoder: any Encoder) throws {
            try inner.encode(to: encoder)
            var c = encoder.container(keyedBy: K.self)
            try c.encode(1.5, forKey: .extra)
            var n = c.nestedContainer(keyedBy: K.self, forKey: .open)
            try n.encode("inside", forKey: .extra)
            var u = n.nestedUnkeyedContainer(forKey: .after)
            try u.encode(1); try u.encode("two"); try u.encodeNil()
            try c.encode(true, forKey: .after)
            try "s".encode(to: c.superEncoder(forKey: .sup))
        }
    }

    func same<T: Encodable>(_ v: T) throws {
        let bytes = try JSONBytesEncoder().bytes(v)
        let parsed = try JSONParser.parse(bytes)
        let tree = try JSONValueEncoder().encode(v)
        // The same document (numbers compared as JSON text: 1 and 1.0 are one number).
        #expect(JSONWriter.string(parsed) == JSONWriter.string(tree), "\(String(decoding: bytes, as: UTF8.self))")
    }

    @Test("nested structs, optionals left out, enums, dictionaries, big integers, non-finite numbers, JSON values")
    func equivalence() throws {
        let v = Outer(name: "q\"uo\\te\n\u{1}é", inner: Inner(a: -3, b: nil, c: [0.5, .infinity, 1e300]),
                      list: [Inner(a: 1, b: "b", c: []), Inner(a: 2, b: nil, c: [-0.25])], kind: .y, maybe: nil,
                      floats: [0.1, 1, -2.5e-8, .nan, 3.4e38], map: ["k": 1, "l": 2.25], flag: false, big: UInt64.max, nested: [[1, 2], [], [3]],
                      json: ["a": [1, "x", nil, true], "b": 2.5])
        try same(v)
        try same(Optional<Inner>.none)
        try same([Kind.x, .y])
        try same(Merged(inner: Inner(a: 7, b: "z", c: [1])))
        let m = try JSONParser.parse(try JSONBytesEncoder().bytes(Merged(inner: Inner(a: 7, b: nil, c: []))))
        #expect(m["open"]?["after"] == [1, "two", nil])
        #expect(m["after"] == true && m["sup"] == "s" && m["a"] == 7)
    }

    @Test("a Float is written in its shortest form, and parses back to the same Float")
    func floats() throws {
        var rng = SplitMix(seed: 3)
        let values = (0..<2000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }.filter(\.isFinite)
        let bytes = try JSONBytesEncoder().bytes(values)
        let back = try JSONParser.parse(bytes).arrayValue!.map { Float($0.doubleValue!) }
        #expect(back.map(\.bitPattern) == values.map(\.bitPattern))
        #expect(String(decoding: try JSONBytesEncoder().bytes([Float(0.1)]), as: UTF8.self) == "[0.1]")
    }

    @Test("integers of every size, written digit by digit, parse back exactly")
    func integers() throws {
        let values: [Int64] = [0, 9, 10, -1, -10, 1234567890, Int64.max, Int64.min, -9_007_199_254_740_993]
        let bytes = try JSONBytesEncoder().bytes(values)
        #expect(try JSONParser.parse(bytes).arrayValue?.map(\.intValue) == values.map { Optional($0) })
        #expect(JSONWriter.string(.int(Int64.min)) == "-9223372036854775808")
    }

    @Test("appends to what the buffer holds")
    func appends() throws {
        var out = Array("[1,".utf8)
        try JSONBytesEncoder().encode(Inner(a: 1, b: "x", c: []), into: &out)
        out.append(UInt8(ascii: "]"))
        #expect(try JSONParser.parse(out) == [1, ["a": 1, "b": "x", "c": []]])
    }
}
