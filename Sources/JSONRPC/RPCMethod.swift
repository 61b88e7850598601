import JSON
/// A request type: its method name (written once, here), its params and its result.
///
/// ```swift
/// public enum Ping: RPCRequest {
///     public static let name = "daemon/ping"
///     public typealias Params = EmptyParams
///     public typealias Result = EmptyResult
/// }
/// ```
public protocol RPCRequest {
    associatedtype Params: Codable & Sendable
    associatedtype Result: Codable & Sendable
    static var name: String { get }
}

/// A notification type (no reply).
public protocol RPCNotification {
    associatedtype Params: Codable & Sendable
    static var name: String { get }
}

/// Params of a method that takes none. Absent params, `{}` and `[]` are all accepted.
public struct EmptyParams: Codable, Sendable, Equatable, JSONDirectEncodable {
    public init() {}
    public init(from decoder: any Decoder) throws {}
    public func encode(to encoder: any Encoder) throws {
        _ = encoder.container(keyedBy: JSONValueDecoder.IndexKey.self)
    }
    /// `{}` without Codable's containers (ping's whole result).
    public func writeJSON(_ w: inout JSONObjectWriter) {}
}

/// The result `{}`.
public typealias EmptyResult = EmptyParams

extension JSONValue {
    /// Decodes JSON-RPC params into a typed value; absent params decode as `{}` so that a
    /// type whose fields are all optional accepts them, and required fields are named when missing.
    public func decodeParams<P: Decodable>(_ type: P.Type) throws(RPCError) -> P {
        do {
            return try JSONValueDecoder().decode(P.self, from: self)
        } catch let e as JSONDecodingError {
            throw RPCError.invalidParams(e)
        } catch let e as RPCErrorConvertible {
            throw e.rpcError
        } catch {
            throw RPCError.invalidParams("\(error)")
        }
    }

    /// Encodes a typed value into JSON.
    public static func encoding<T: Encodable>(_ value: T) throws(RPCError) -> JSONValue {
        do {
            return try JSONValueEncoder().encode(value)
        } catch {
            throw RPCError.internalError("could not encode \(T.self): \(error)")
        }
    }
}

/// A string enum that names its allowed values in decoding errors ("one of: a, b").
public protocol RPCEnum: RawRepresentable<String>, CaseIterable, Codable, Sendable {}

extension RPCEnum {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let raw = try c.decode(String.self)
        guard let v = Self(rawValue: raw) else {
            throw JSONDecodingError(path: JSONDecodingError.render(decoder.codingPath),
                                    expected: "one of: " + Self.allCases.map(\.rawValue).joined(separator: ", "),
                                    found: "\"\(raw)\"")
        }
        self = v
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}
