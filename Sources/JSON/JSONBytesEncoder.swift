/// Encodes `Encodable` values straight into UTF-8 JSON bytes, with no ``JSONValue`` tree in
/// between: the reply path's encoder.
///
/// Output is compact; keys come in the order the type encodes them (``JSONWriter`` sorts the
/// keys of a tree; both parse the same). `nil` optionals are left out (synthesised
/// `encodeIfPresent`), non-finite numbers become `null`, and a `Float` or a `Double` that is
/// exactly a `Float` is written in its shortest form, as ``JSONWriter`` does. A type may ask
/// for a second keyed container on the same encoder (fields merged into one object), and may
/// leave a nested container open until its next write: it is closed then.
public struct JSONBytesEncoder {
    public init() {}

    /// Appends the JSON of `value` to `out`.
    public func encode<T: Encodable>(_ value: T, into out: inout [UInt8]) throws {
        if let direct = value as? any JSONDirectEncodable {
            var w = JSONObjectWriter()
            direct.writeJSON(&w)
            w.finish(into: &out)
            return
        }
        let sink = Sink(out)
        out = []
        defer { out = sink.out }
        try sink.encode(value, path: [])
        if let e = sink.failure { throw e }
    }

    /// The JSON of `value` as text (for a stored record, say).
    public func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try bytes(value), as: UTF8.self)
    }

    /// The JSON of `value`.
    public func bytes<T: Encodable>(_ value: T) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        try encode(value, into: &out)
        return out
    }
}

/// The output buffer and the first misuse seen.
final class Sink {
    // Only the encoding thread touches a sink: no need for dynamic exclusivity checks on
    // every append (they were a tenth of a small reply's cost).
    @exclusivity(unchecked) var out: [UInt8]
    var failure: EncodingError?
    init(_ out: [UInt8]) { self.out = out }

    func fail(_ path: [any CodingKey], _ why: String) {
        if failure == nil { failure = .invalidValue((), .init(codingPath: path, debugDescription: why)) }
    }

    /// Writes one value: scalars and common arrays directly, anything else through its
    /// `encode(to:)` with a fresh encoder whose container is closed when it returns.
    func encode<T: Encodable>(_ value: T, path: [any CodingKey]) throws {
        // Type comparisons first: cheaper than dynamic casts, and the common case.
        if T.self == String.self { JSONWriter.writeString(unsafeBitCast(value, to: String.self), into: &out); return }
        if T.self == Int.self { JSONWriter.writeInt(Int64(unsafeBitCast(value, to: Int.self)), into: &out); return }
        if T.self == Double.self { JSONWriter.writeDouble(unsafeBitCast(value, to: Double.self), into: &out); return }
        if T.self == Bool.self { out.append(contentsOf: (unsafeBitCast(value, to: Bool.self) ? "true" : "false").utf8); return }
        if T.self == Float.self { writeFloat(unsafeBitCast(value, to: Float.self)); return }
        if T.self == JSONValue.self { JSONWriter.write(value as! JSONValue, into: &out); return }
        if T.self == [Float].self {
            out.append(UInt8(ascii: "["))
            for (i, x) in (value as! [Float]).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                writeFloat(x)
            }
            out.append(UInt8(ascii: "]"))
            return
        }
        if T.self == [String].self {
            out.append(UInt8(ascii: "["))
            for (i, x) in (value as! [String]).enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.writeString(x, into: &out)
            }
            out.append(UInt8(ascii: "]"))
            return
        }
        let e = StreamEncoder(sink: self, codingPath: path)
        try value.encode(to: e)
        e.finish()
    }

    func writeFloat(_ f: Float) {
        guard f.isFinite else { out.append(contentsOf: "null".utf8); return }
        if f == f.rounded(), abs(f) < 1e15 { out.append(contentsOf: String(Int64(f)).utf8); return }
        out.append(contentsOf: f.description.utf8)
    }

    func writeInteger<I: BinaryInteger>(_ v: I) {
        if let i = Int64(exactly: v) { JSONWriter.writeInt(i, into: &out) } else { out.append(contentsOf: String(v).utf8) }
    }
}

/// The encoder one value sees; it writes its container's opening byte when the container is
/// asked for and the closing one in `finish()`.
final class StreamEncoder: Encoder {
    enum State { case empty, object, array, value }
    let sink: Sink
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    @exclusivity(unchecked) var state = State.empty
    /// Members written so far (for the commas).
    @exclusivity(unchecked) var count = 0
    /// A nested container still open: closed before the next write here.
    @exclusivity(unchecked) var pending: StreamEncoder?

    init(sink: Sink, codingPath: [any CodingKey]) {
        self.sink = sink
        self.codingPath = codingPath
    }

    func finish() {
        closePending()
        switch state {
        case .empty: sink.out.append(contentsOf: "{}".utf8)
        case .object: sink.out.append(UInt8(ascii: "}"))
        case .array: sink.out.append(UInt8(ascii: "]"))
        case .value: break
        }
    }

    func closePending() {
        if let p = pending { pending = nil; p.finish() }
    }

    /// Starts the next member: closes an open nested container, writes the comma.
    func nextMember() {
        closePending()
        if count > 0 { sink.out.append(UInt8(ascii: ",")) }
        count += 1
    }

    func key(_ k: any CodingKey) {
        nextMember()
        JSONWriter.writeString(k.stringValue, into: &sink.out)
        sink.out.append(UInt8(ascii: ":"))
    }

    func child(_ key: any CodingKey) -> StreamEncoder {
        let c = StreamEncoder(sink: sink, codingPath: codingPath + [key])
        pending = c
        return c
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        switch state {
        case .empty: state = .object; sink.out.append(UInt8(ascii: "{"))
        case .object: break  // a second keyed container: same object
        default: sink.fail(codingPath, "a keyed container after another kind of container")
        }
        return KeyedEncodingContainer(Keyed<Key>(encoder: self))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        switch state {
        case .empty: state = .array; sink.out.append(UInt8(ascii: "["))
        case .array: break
        default: sink.fail(codingPath, "an unkeyed container after another kind of container")
        }
        return Unkeyed(encoder: self)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { Single(encoder: self) }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let encoder: StreamEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        var sink: Sink { encoder.sink }

        mutating func encodeNil(forKey key: Key) throws { encoder.key(key); sink.out.append(contentsOf: "null".utf8) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { encoder.key(key); sink.out.append(contentsOf: (value ? "true" : "false").utf8) }
        mutating func encode(_ value: String, forKey key: Key) throws { encoder.key(key); JSONWriter.writeString(value, into: &sink.out) }
        mutating func encode(_ value: Double, forKey key: Key) throws { encoder.key(key); JSONWriter.writeDouble(value, into: &sink.out) }
        mutating func encode(_ value: Float, forKey key: Key) throws { encoder.key(key); sink.writeFloat(value) }
        mutating func encode(_ value: Int, forKey key: Key) throws { encoder.key(key); JSONWriter.writeInt(Int64(value), into: &sink.out) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { encoder.key(key); sink.writeInteger(value) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            encoder.key(key)
            try sink.encode(value, path: codingPath + [key])
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            encoder.key(key)
            return encoder.child(key).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            encoder.key(key)
            return encoder.child(key).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder { superEncoder(forKey: Key(stringValue: "super")!) }
        mutating func superEncoder(forKey key: Key) -> any Encoder {
            encoder.key(key)
            return encoder.child(key)
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let encoder: StreamEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        var count: Int { encoder.count }
        var sink: Sink { encoder.sink }

        mutating func encodeNil() throws { encoder.nextMember(); sink.out.append(contentsOf: "null".utf8) }
        mutating func encode(_ value: Bool) throws { encoder.nextMember(); sink.out.append(contentsOf: (value ? "true" : "false").utf8) }
        mutating func encode(_ value: String) throws { encoder.nextMember(); JSONWriter.writeString(value, into: &sink.out) }
        mutating func encode(_ value: Double) throws { encoder.nextMember(); JSONWriter.writeDouble(value, into: &sink.out) }
        mutating func encode(_ value: Float) throws { encoder.nextMember(); sink.writeFloat(value) }
        mutating func encode(_ value: Int) throws { encoder.nextMember(); JSONWriter.writeInt(Int64(value), into: &sink.out) }
        mutating func encode<T: Encodable>(_ value: T) throws {
            let path = codingPath + [JSONValueDecoder.IndexKey(encoder.count)]
            encoder.nextMember()
            try sink.encode(value, path: path)
        }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let key = JSONValueDecoder.IndexKey(encoder.count)
            encoder.nextMember()
            return encoder.child(key).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let key = JSONValueDecoder.IndexKey(encoder.count)
            encoder.nextMember()
            return encoder.child(key).unkeyedContainer()
        }
        mutating func superEncoder() -> any Encoder {
            let key = JSONValueDecoder.IndexKey(encoder.count)
            encoder.nextMember()
            return encoder.child(key)
        }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: StreamEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        var sink: Sink { encoder.sink }

        func begin() -> Bool {
            guard encoder.state == .empty else { sink.fail(codingPath, "a single value encoded twice"); return false }
            encoder.state = .value
            return true
        }
        mutating func encodeNil() throws { if begin() { sink.out.append(contentsOf: "null".utf8) } }
        mutating func encode(_ value: Bool) throws { if begin() { sink.out.append(contentsOf: (value ? "true" : "false").utf8) } }
        mutating func encode(_ value: String) throws { if begin() { JSONWriter.writeString(value, into: &sink.out) } }
        mutating func encode(_ value: Double) throws { if begin() { JSONWriter.writeDouble(value, into: &sink.out) } }
        mutating func encode(_ value: Float) throws { if begin() { sink.writeFloat(value) } }
        mutating func encode(_ value: Int) throws { if begin() { JSONWriter.writeInt(Int64(value), into: &sink.out) } }
        mutating func encode(_ value: Int8) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: Int16) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: Int32) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: Int64) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: UInt) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: UInt8) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: UInt16) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: UInt32) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode(_ value: UInt64) throws { if begin() { sink.writeInteger(value) } }
        mutating func encode<T: Encodable>(_ value: T) throws { if begin() { try sink.encode(value, path: codingPath) } }
    }
}
