/// A result that writes its own JSON: the byte encoder calls it instead of going through
/// Codable's containers (whose generic machinery costs more than a small reply's whole round
/// trip). Keep it equal to the type's `Encodable` output (same keys and values, `nil`s left
/// out): the params fuzz target and the encoder tests compare the two.
public protocol JSONDirectEncodable: Encodable {
    func writeJSON(_ w: inout JSONObjectWriter)
}

/// Writes one JSON object's fields straight into bytes.
public struct JSONObjectWriter {
    public fileprivate(set) var out: [UInt8]
    private var first = true

    /// Opens an object at the end of `out`, which it takes over (no copy) until `finish`.
    public init(taking out: inout [UInt8]) {
        self.out = out
        out = []
        self.out.append(UInt8(ascii: "{"))
    }

    private mutating func key(_ k: StaticString) {
        if !first { out.append(UInt8(ascii: ",")) }
        first = false
        out.append(UInt8(ascii: "\""))
        k.withUTF8Buffer { out.append(contentsOf: $0) }
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
    }

    public mutating func field(_ k: StaticString, _ v: Int) { key(k); JSONWriter.writeInt(Int64(v), into: &out) }
    public mutating func field(_ k: StaticString, _ v: Double) { key(k); JSONWriter.writeDouble(v, into: &out) }
    public mutating func field(_ k: StaticString, _ v: Bool) { key(k); out.append(contentsOf: (v ? "true" : "false").utf8) }
    public mutating func field(_ k: StaticString, _ v: String) { key(k); JSONWriter.writeString(v, into: &out) }
    public mutating func field(_ k: StaticString, _ v: String?) { if let v { field(k, v) } }
    public mutating func field(_ k: StaticString, _ v: Double?) { if let v { field(k, v) } }
    /// A nested object.
    public mutating func field<T: JSONDirectEncodable>(_ k: StaticString, _ v: T) {
        key(k)
        var inner = JSONObjectWriter(taking: &out)
        v.writeJSON(&inner)
        out = inner.finish()
    }

    /// Closes the object; returns the bytes.
    public mutating func finish() -> [UInt8] {
        out.append(UInt8(ascii: "}"))
        return out
    }
}
