/// Why a JSON value did not decode into a typed value: the field's path and what was expected.
public struct JSONDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Dotted path to the field, e.g. `inputs[2].text`; empty for the value itself.
    public var path: String
    /// The expected form, e.g. `string`, `integer`, `one of: head, lora`.
    public var expected: String
    /// What was there instead, e.g. `number 5`, `missing`.
    public var found: String

    public var description: String {
        let at = path.isEmpty ? "params" : "'\(path)'"
        return found == "missing" ? "\(at) is required (\(expected))" : "\(at) must be \(expected), got \(found)"
    }

    public init(path: String, expected: String, found: String) {
        self.path = path
        self.expected = expected
        self.found = found
    }

    /// A coding path as `inputs[2].text`.
    public static func render(_ codingPath: [any CodingKey]) -> String {
        var s = ""
        for k in codingPath {
            if let i = k.intValue { s += "[\(i)]" } else { s += s.isEmpty ? k.stringValue : ".\(k.stringValue)" }
        }
        return s
    }
}

/// Decodes `Decodable` values from a ``JSONValue`` tree, with errors that name the field.
public struct JSONValueDecoder {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        do {
            return try T(from: Impl(value: value, codingPath: []))
        } catch let e as JSONDecodingError {
            throw e
        } catch let e as DecodingError {
            throw Self.convert(e)
        }
    }

    /// Decodes `T` from JSON text (a stored record, say): parse errors and shape errors alike throw.
    public func decode<T: Decodable>(_ type: T.Type, fromJSON text: String) throws -> T {
        try decode(type, from: JSONParser.parse(text))
    }

    static func convert(_ e: DecodingError) -> JSONDecodingError {
        switch e {
        case .typeMismatch(let t, let ctx):
            return JSONDecodingError(path: JSONDecodingError.render(ctx.codingPath), expected: "\(t)", found: ctx.debugDescription)
        case .valueNotFound(let t, let ctx):
            return JSONDecodingError(path: JSONDecodingError.render(ctx.codingPath), expected: "\(t)", found: "null")
        case .keyNotFound(let k, let ctx):
            return JSONDecodingError(path: JSONDecodingError.render(ctx.codingPath + [k]), expected: "a value", found: "missing")
        case .dataCorrupted(let ctx):
            return JSONDecodingError(path: JSONDecodingError.render(ctx.codingPath), expected: ctx.debugDescription, found: "an invalid value")
        @unknown default:
            return JSONDecodingError(path: "", expected: "valid params", found: "\(e)")
        }
    }

    final class Impl: Decoder {
        let value: JSONValue
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        init(value: JSONValue, codingPath: [any CodingKey]) {
            self.value = value
            self.codingPath = codingPath
        }

        func mismatch(_ expected: String) -> JSONDecodingError {
            JSONDecodingError(path: JSONDecodingError.render(codingPath), expected: expected, found: value.foundDescription)
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            guard case .object(let o) = value else { throw mismatch("an object") }
            return KeyedDecodingContainer(Keyed<Key>(object: o, codingPath: codingPath))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
            guard case .array(let a) = value else { throw mismatch("an array") }
            return Unkeyed(array: a, codingPath: codingPath)
        }

        func singleValueContainer() throws -> any SingleValueDecodingContainer { Single(impl: self) }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let object: [String: JSONValue]
        let codingPath: [any CodingKey]
        var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

        func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

        func child(_ key: Key) throws -> Impl {
            guard let v = object[key.stringValue] else {
                throw JSONDecodingError(path: JSONDecodingError.render(codingPath + [key]), expected: "a value", found: "missing")
            }
            return Impl(value: v, codingPath: codingPath + [key])
        }

        func decodeNil(forKey key: Key) throws -> Bool { object[key.stringValue]?.isNull ?? true }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            let c = try child(key)
            return try c.decodeValue(T.self)
        }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            guard let v = object[key.stringValue], !v.isNull else { return nil }
            return try Impl(value: v, codingPath: codingPath + [key]).decodeValue(T.self)
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            try child(key).container(keyedBy: type)
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            try child(key).unkeyedContainer()
        }

        func superDecoder() throws -> any Decoder { Impl(value: .object(object), codingPath: codingPath) }
        func superDecoder(forKey key: Key) throws -> any Decoder { try child(key) }
    }

    /// A coding key for an array position.
    public struct IndexKey: CodingKey {
        public var intValue: Int?
        public var stringValue: String { "\(intValue!)" }
        public init(_ i: Int) { intValue = i }
        public init?(stringValue: String) { return nil }
        public init?(intValue: Int) { self.intValue = intValue }
    }

    struct Unkeyed: UnkeyedDecodingContainer {
        let array: [JSONValue]
        let codingPath: [any CodingKey]
        var currentIndex = 0
        var count: Int? { array.count }
        var isAtEnd: Bool { currentIndex >= array.count }

        init(array: [JSONValue], codingPath: [any CodingKey]) {
            self.array = array
            self.codingPath = codingPath
        }

        mutating func next() throws -> Impl {
            guard !isAtEnd else {
                throw JSONDecodingError(path: JSONDecodingError.render(codingPath), expected: "more elements", found: "the end of the array")
            }
            defer { currentIndex += 1 }
            return Impl(value: array[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)])
        }

        mutating func decodeNil() throws -> Bool {
            if !isAtEnd, array[currentIndex].isNull { currentIndex += 1; return true }
            return false
        }

        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decodeValue(T.self) }
        mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> {
            try next().container(keyedBy: type)
        }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try next().unkeyedContainer() }
        mutating func superDecoder() throws -> any Decoder { try next() }
    }

    struct Single: SingleValueDecodingContainer {
        let impl: Impl
        var codingPath: [any CodingKey] { impl.codingPath }
        func decodeNil() -> Bool { impl.value.isNull }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try impl.decodeValue(T.self) }
    }
}

extension JSONValueDecoder.Impl {
    /// Decodes the primitive types directly (with range checks); everything else through `init(from:)`.
    func decodeValue<T: Decodable>(_ type: T.Type) throws -> T {
        switch type {
        case is String.Type:
            guard case .string(let s) = value else { throw mismatch("a string") }
            return s as! T
        case is Bool.Type:
            guard case .bool(let b) = value else { throw mismatch("a boolean") }
            return b as! T
        case is Double.Type:
            guard let d = value.doubleValue else { throw mismatch("a number") }
            return d as! T
        case is Float.Type:
            guard let d = value.doubleValue else { throw mismatch("a number") }
            return Float(d) as! T
        case is Int.Type: return Int(try integer(Int.self)) as! T
        case is Int64.Type: return try integer(Int64.self) as! T
        case is Int32.Type: return Int32(try integer(Int32.self)) as! T
        case is UInt.Type: return UInt(try integer(UInt.self)) as! T
        case is UInt32.Type: return UInt32(try integer(UInt32.self)) as! T
        case is UInt64.Type: return UInt64(try integer(UInt64.self)) as! T
        case is JSONValue.Type: return value as! T
        default: return try T(from: self)
        }
    }

    private func integer<I: FixedWidthInteger>(_ t: I.Type) throws -> Int64 {
        guard let i = value.intValue else { throw mismatch("an integer") }
        guard i >= Int64(clamping: I.min), i <= Int64(clamping: I.max) else {
            throw mismatch("an integer between \(I.min) and \(I.max)")
        }
        return i
    }
}

extension JSONValue {
    /// "number 5", "string \"x\"", "null": what an error message says was found.
    public var foundDescription: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return "boolean \(b)"
        case .int, .double: return "number \(JSONWriter.string(self))"
        case .string: return "string \(briefDescription)"
        case .array, .object: return briefDescription
        }
    }
}
