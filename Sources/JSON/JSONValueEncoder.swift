/// Encodes `Encodable` values into a ``JSONValue`` tree.
///
/// `nil` optionals are left out of objects (as synthesised `encodeIfPresent` asks); non-finite
/// doubles become `null`, since JSON has no NaN or infinity.
public struct JSONValueEncoder {
    public init() {}

    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        if let v = value as? JSONValue { return v }
        let impl = Impl(codingPath: [])
        try impl.encodeValue(value)
        return impl.storage
    }

    /// A node under construction. Containers write into their parent node by reference, so
    /// nested containers can be filled in any order.
    final class Node {
        enum Kind { case unset, object, array, value }
        var kind: Kind = .unset
        var object: [String: Node] = [:]
        var array: [Node] = []
        var value: JSONValue = .null

        var json: JSONValue {
            switch kind {
            case .unset: return .object([:])
            case .value: return value
            case .object: return .object(object.mapValues { $0.json })
            case .array: return .array(array.map { $0.json })
            }
        }
    }

    final class Impl: Encoder {
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        let node: Node

        init(codingPath: [any CodingKey], node: Node = Node()) {
            self.codingPath = codingPath
            self.node = node
        }

        var storage: JSONValue {
            get { node.json }
            set { node.kind = .value; node.value = newValue }
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            if node.kind != .object { node.kind = .object; node.object = [:] }
            return KeyedEncodingContainer(Keyed<Key>(node: node, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            if node.kind != .array { node.kind = .array; node.array = [] }
            return Unkeyed(node: node, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer { Single(impl: self) }

        func encodeValue<T: Encodable>(_ value: T) throws {
            switch value {
            case let v as String: storage = .string(v)
            case let v as Bool: storage = .bool(v)
            case let v as Int: storage = .int(Int64(v))
            case let v as Int64: storage = .int(v)
            case let v as Int32: storage = .int(Int64(v))
            case let v as UInt32: storage = .int(Int64(v))
            case let v as UInt64: storage = v <= UInt64(Int64.max) ? .int(Int64(v)) : .double(Double(v))
            case let v as UInt: storage = v <= UInt(Int64.max) ? .int(Int64(v)) : .double(Double(v))
            case let v as Double: storage = v.isFinite ? .double(v) : .null
            case let v as Float: storage = v.isFinite ? .double(Double(v)) : .null
            case let v as JSONValue: storage = v
            default: try value.encode(to: self)
            }
        }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let node: Node
        let codingPath: [any CodingKey]

        func child(_ key: Key) -> Impl {
            let n = Node()
            node.object[key.stringValue] = n
            return Impl(codingPath: codingPath + [key], node: n)
        }

        mutating func encodeNil(forKey key: Key) throws { child(key).storage = .null }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { try child(key).encodeValue(value) }
        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type, forKey key: Key) -> KeyedEncodingContainer<N> {
            child(key).container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { child(key).unkeyedContainer() }
        mutating func superEncoder() -> any Encoder { Impl(codingPath: codingPath, node: node) }
        mutating func superEncoder(forKey key: Key) -> any Encoder { child(key) }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let node: Node
        let codingPath: [any CodingKey]
        var count: Int { node.array.count }

        func next() -> Impl {
            let n = Node()
            let key = JSONValueDecoder.IndexKey(node.array.count)
            node.array.append(n)
            return Impl(codingPath: codingPath + [key], node: n)
        }

        mutating func encodeNil() throws { next().storage = .null }
        mutating func encode<T: Encodable>(_ value: T) throws { try next().encodeValue(value) }
        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type) -> KeyedEncodingContainer<N> {
            next().container(keyedBy: keyType)
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { next().unkeyedContainer() }
        mutating func superEncoder() -> any Encoder { next() }
    }

    struct Single: SingleValueEncodingContainer {
        let impl: Impl
        var codingPath: [any CodingKey] { impl.codingPath }
        mutating func encodeNil() throws { impl.storage = .null }
        mutating func encode<T: Encodable>(_ value: T) throws { try impl.encodeValue(value) }
    }
}
