@testable import JSON
import RobustdTestSupport
import Testing

@Suite("JSONObjectWriter: a JSONDirectEncodable type writes the JSON its Encodable conformance does")
struct JSONObjectWriterTests {
    struct Inner: Codable, JSONDirectEncodable {
        var n: Int
        var s: String?
        func writeJSON(_ w: inout JSONObjectWriter) { w.field("n", n); w.field("s", s) }
    }
    struct Record: Codable, JSONDirectEncodable {
        var name: String
        var count: Int
        var ratio: Double
        var maybe: Double?
        var flag: Bool
        var note: String?
        var inner: Inner
        var last: Inner
        func writeJSON(_ w: inout JSONObjectWriter) {
            w.field("name", name); w.field("count", count); w.field("ratio", ratio); w.field("maybe", maybe)
            w.field("flag", flag); w.field("note", note); w.field("inner", inner); w.field("last", last)
        }
    }

    static func text(_ g: inout SplitMix) -> String {
        // Plain, escapes (quote, backslash, control characters), non-ASCII, long (past the writer's first buffer).
        let pieces = ["a", "robustd", "\"", "\\", "\n", "\t", "\u{1}", "\u{1f}", "é", "日本", "🙂", "/", " "]
        let n = Int(g.next() % 8 == 0 ? 200 + g.next() % 900 : g.next() % 12)
        return String((0..<n).map { _ in pieces[Int(g.next() % UInt64(pieces.count))] }.joined())
    }

    static func number(_ g: inout SplitMix) -> Double {
        switch g.next() % 7 {
        case 0: return Double(Int64(bitPattern: g.next()) >> 12)
        case 1: return Double(Float(bitPattern: UInt32(truncatingIfNeeded: g.next()) & 0x7f7f_ffff))
        case 2: return Double(bitPattern: g.next() & 0x7fef_ffff_ffff_ffff) * (g.next() % 2 == 0 ? 1 : -1)
        case 3: return [Double.nan, .infinity, -.infinity, 0, -0.0, 1e15, 1e15 - 1, 0.1][Int(g.next() % 8)]
        case 4: return Double(g.next() % 100_000) / 1000
        default: return Double(g.next() % 10)
        }
    }

    /// The Encodable side: JSONValueEncoder goes through `encode(to:)`, never `writeJSON`.
    /// Non-finite numbers are `null` on both sides.
    static func codable(_ r: Record) throws -> JSONValue { try JSONValueEncoder().encode(r) }

    @Test("2,000 seeded records: the direct bytes parse to the Encodable tree, keys in declaration order")
    func sameAsCodable() throws {
        var g = SplitMix(seed: 20261204)
        for i in 0..<2000 {
            let r = Record(name: Self.text(&g), count: Int(Int64(bitPattern: g.next()) >> Int(g.next() % 63)),
                           ratio: Self.number(&g), maybe: g.next() % 2 == 0 ? nil : Self.number(&g), flag: g.next() % 2 == 0,
                           note: g.next() % 3 == 0 ? nil : Self.text(&g), inner: Inner(n: Int(g.next() % 1000), s: g.next() % 2 == 0 ? nil : Self.text(&g)),
                           last: Inner(n: -Int(g.next() % 1000), s: nil))
            var out: [UInt8] = Array("prefix:".utf8)
            try JSONBytesEncoder().encode(r, into: &out)
            #expect(Array(out.prefix(7)) == Array("prefix:".utf8))
            let direct = try JSONParser.parse(Array(out.dropFirst(7)))
            // The tree's text read back as the direct bytes are, then both written canonically (the
            // parser reads 5 as an integer where the tree keeps a Double, 4.4709834e+15 as a Double
            // that is no longer exactly a Float).
            let expected = try JSONParser.parse(JSONWriter.string(try Self.codable(r)))
            #expect(JSONWriter.string(direct) == JSONWriter.string(expected), "record \(i): \(String(decoding: out.dropFirst(7), as: UTF8.self))")
            let keys = String(decoding: out, as: UTF8.self)
            #expect(keys.range(of: "\"name\":")!.lowerBound < keys.range(of: "\"last\":")!.lowerBound)
        }
    }

    @Test("numbers are written as JSONWriter writes them: integers without a point, Floats in their shortest form")
    func numberForms() throws {
        func written(_ d: Double) throws -> String {
            let r = Record(name: "", count: 0, ratio: d, maybe: nil, flag: false, note: nil, inner: .init(n: 0), last: .init(n: 0))
            let text = try JSONBytesEncoder().string(r)
            let start = text.range(of: "\"ratio\":")!.upperBound
            return String(text[start...].prefix { $0 != "," })
        }
        #expect(try written(3) == "3")
        #expect(try written(-42) == "-42")
        #expect(try written(Double(Float(0.03535237))) == "0.03535237")
        #expect(try written(0.1) == "0.1")
        #expect(try written(.nan) == "null")
        #expect(try written(1e20) == "1e+20")
        var tree: [UInt8] = []
        JSONWriter.writeDouble(1e20, into: &tree)
        #expect(String(decoding: tree, as: UTF8.self) == "1e+20")
    }
}
