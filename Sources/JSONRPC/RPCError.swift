import JSON
/// A JSON-RPC error code. An open set, not an enum: the daemon adds its own in -32000…-32099.
public struct RPCErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public init(_ rawValue: Int) { self.rawValue = rawValue }

    // JSON-RPC 2.0
    public static let parseError = RPCErrorCode(-32700)
    public static let invalidRequest = RPCErrorCode(-32600)
    public static let methodNotFound = RPCErrorCode(-32601)
    public static let invalidParams = RPCErrorCode(-32602)
    public static let internalError = RPCErrorCode(-32603)
    // LSP
    public static let serverNotInitialized = RPCErrorCode(-32002)
    public static let unknownErrorCode = RPCErrorCode(-32001)
    public static let requestCancelled = RPCErrorCode(-32800)
    public static let contentModified = RPCErrorCode(-32801)
    public static let serverCancelled = RPCErrorCode(-32802)
    public static let requestFailed = RPCErrorCode(-32803)

    public var description: String { String(rawValue) }

    public init(from decoder: any Decoder) throws { rawValue = try decoder.singleValueContainer().decode(Int.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// A JSON-RPC error object: a code, a one-line message, and `data` that tells a person what to fix.
public struct RPCError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var code: RPCErrorCode
    public var message: String
    public var data: JSONValue?

    public init(_ code: RPCErrorCode, _ message: String, data: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.data = data
    }

    public var description: String { "\(message) (\(code))" }

    public var json: JSONValue {
        var o: [String: JSONValue] = ["code": .int(Int64(code.rawValue)), "message": .string(message)]
        if let data { o["data"] = data }
        return .object(o)
    }

    public static func parseError(_ message: String, offset: Int? = nil) -> RPCError {
        RPCError(.parseError, "Parse error: \(message)", data: offset.map { ["offset": .int(Int64($0))] })
    }

    public static func invalidRequest(_ message: String, data: JSONValue? = nil) -> RPCError {
        RPCError(.invalidRequest, "Invalid request: \(message)", data: data)
    }

    public static func methodNotFound(_ method: String) -> RPCError {
        RPCError(.methodNotFound, "Method not found: \(method)",
                 data: ["method": .string(method), "hint": "rpc.discover lists every method"])
    }

    public static func invalidParams(_ message: String, field: String? = nil, expected: String? = nil, found: String? = nil) -> RPCError {
        var d: [String: JSONValue] = [:]
        if let field { d["field"] = .string(field) }
        if let expected { d["expected"] = .string(expected) }
        if let found { d["found"] = .string(found) }
        return RPCError(.invalidParams, "Invalid params: \(message)", data: d.isEmpty ? nil : .object(d))
    }

    public static func invalidParams(_ e: JSONDecodingError) -> RPCError {
        invalidParams(e.description, field: e.path, expected: e.expected, found: e.found)
    }

    public static func internalError(_ message: String) -> RPCError {
        RPCError(.internalError, "Internal error: \(message)")
    }

    public static let cancelled = RPCError(.requestCancelled, "Request cancelled")
    public static let notInitialized = RPCError(.serverNotInitialized, "Server not initialized: send 'initialize' first")
}

/// An error that knows how it should look on the wire. Anything else becomes -32603.
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}

extension RPCError: RPCErrorConvertible {
    public var rpcError: RPCError { self }
}
