/// A result that writes its own JSON: the byte encoder calls it instead of going through
/// Codable's containers (whose generic machinery costs more than a small reply's whole round
/// trip). Keep it equal to the type's `Encodable` output (same keys and values, `nil`s left
/// out): JSONObjectWriterTests compares the two on seeded records.
public protocol JSONDirectEncodable: Encodable {
    func writeJSON(_ w: inout JSONObjectWriter)
}

/// Writes one JSON object's fields, nested objects included, into a buffer of its own: each
/// write is a bounds check and a copy, with none of an array's per-append uniqueness and
/// capacity bookkeeping (a `daemon/status` reply is some 30 fields, and its encoding was a
/// quarter of the daemon's user time). `finish(into:)` appends the object to the reply's bytes
/// in one copy. Not copyable: the buffer has one owner, freed when the writer ends.
public struct JSONObjectWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var capacity: Int
    private var first = true

    /// Opens an object.
    public init(capacity: Int = 512) {
        self.capacity = max(capacity, 16)
        base = .allocate(capacity: self.capacity)
        base[0] = UInt8(ascii: "{")
        count = 1
    }

    deinit { base.deallocate() }

    /// Room for `n` more bytes.
    @inline(__always) private mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(n) }
    }

    private mutating func grow(_ n: Int) {
        let newCapacity = max(capacity * 2, count + n)
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = newCapacity
    }

    @inline(__always) private mutating func put(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    /// Bytes already reserved for.
    @inline(__always) private mutating func copy(_ p: UnsafeRawBufferPointer) {
        guard let src = p.baseAddress, p.count > 0 else { return }
        (base + count).update(from: src.assumingMemoryBound(to: UInt8.self), count: p.count)
        count += p.count
    }

    private mutating func key(_ k: StaticString) {
        let n = k.utf8CodeUnitCount
        reserve(n + 4)
        if !first { base[count] = UInt8(ascii: ","); count += 1 }
        first = false
        base[count] = UInt8(ascii: "\"")
        count += 1
        (base + count).update(from: k.utf8Start, count: n)
        count += n
        base[count] = UInt8(ascii: "\"")
        base[count + 1] = UInt8(ascii: ":")
        count += 2
    }

    private mutating func int(_ i: Int) {
        reserve(20)
        if i >= 0 && i < 10 { base[count] = UInt8(ascii: "0") + UInt8(i); count += 1; return }
        JSONWriter.withDigits(Int64(i)) { copy($0) }
    }

    private mutating func bytes(_ s: String) {
        var s = s
        s.withUTF8 { reserve($0.count); copy(UnsafeRawBufferPointer($0)) }
    }

    private mutating func string(_ s: String) {
        var t = s
        t.withUTF8 { buf in
            reserve(buf.count + 2)
            // Most strings need no escape: one copy.
            if !buf.contains(where: { $0 < 0x20 || $0 == 0x22 || $0 == 0x5c }) {
                base[count] = UInt8(ascii: "\"")
                count += 1
                copy(UnsafeRawBufferPointer(buf))
                base[count] = UInt8(ascii: "\"")
                count += 1
                return
            }
            var escaped: [UInt8] = []
            JSONWriter.writeString(s, into: &escaped)
            reserve(escaped.count)
            escaped.withUnsafeBytes { copy($0) }
        }
    }

    public mutating func field(_ k: StaticString, _ v: Int) { key(k); int(v) }
    public mutating func field(_ k: StaticString, _ v: Double) {
        key(k)
        guard v.isFinite else { bytes("null"); return }
        if v == v.rounded(), abs(v) < 1e15 { int(Int(v)); return }
        // A value that is exactly a Float (model outputs) is written in Float's shortest form,
        // as JSONWriter does.
        let f = Float(v)
        bytes(Double(f) == v ? "\(f)" : "\(v)")
    }
    public mutating func field(_ k: StaticString, _ v: Bool) { key(k); bytes(v ? "true" : "false") }
    public mutating func field(_ k: StaticString, _ v: String) { key(k); string(v) }
    public mutating func field(_ k: StaticString, _ v: String?) { if let v { field(k, v) } }
    public mutating func field(_ k: StaticString, _ v: Double?) { if let v { field(k, v) } }
    /// A nested object, written into the same buffer.
    public mutating func field<T: JSONDirectEncodable>(_ k: StaticString, _ v: T) {
        key(k)
        put(UInt8(ascii: "{"))
        first = true
        v.writeJSON(&self)
        put(UInt8(ascii: "}"))
        first = false
    }

    /// Closes the object and appends it to `out`.
    public consuming func finish(into out: inout [UInt8]) {
        put(UInt8(ascii: "}"))
        out.append(contentsOf: UnsafeBufferPointer(start: base, count: count))
    }
}
