import JSON
/// A request id: JSON-RPC allows a string or a number (LSP: integer or string).
public enum RequestID: Hashable, Sendable, CustomStringConvertible, Codable {
    case int(Int64)
    case string(String)

    public var json: JSONValue {
        switch self {
        case .int(let i): return .int(i)
        case .string(let s): return .string(s)
        }
    }

    public init?(json: JSONValue) {
        switch json {
        case .int(let i): self = .int(i)
        case .string(let s): self = .string(s)
        case .double(let d) where d.rounded() == d && abs(d) < 9e15: self = .int(Int64(d))
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .int(let i): return String(i)
        case .string(let s): return "\"\(s)\""
        }
    }

    public init(from decoder: any Decoder) throws {
        let v = try JSONValue(from: decoder)
        guard let id = RequestID(json: v) else {
            throw JSONDecodingError(path: "", expected: "an integer or a string", found: v.foundDescription)
        }
        self = id
    }

    public func encode(to encoder: any Encoder) throws { try json.encode(to: encoder) }
}

/// One JSON-RPC 2.0 message.
public enum Message: Sendable, Equatable {
    case request(id: RequestID, method: String, params: JSONValue?)
    case notification(method: String, params: JSONValue?)
    case response(id: RequestID?, result: Result<JSONValue, RPCError>)

    /// A message that failed validation, with the id if one could be recovered (so a reply
    /// can still be sent to it).
    public struct Invalid: Error, Sendable, Equatable {
        public var id: RequestID?
        public var error: RPCError
    }

    /// Validates one decoded JSON value as a JSON-RPC 2.0 message.
    public static func from(_ v: JSONValue) -> Result<Message, Invalid> {
        guard case .object(let o) = v else {
            return .failure(Invalid(id: nil, error: .invalidRequest("a message must be a JSON object, got \(v.typeName)")))
        }
        var id: RequestID? = nil
        let hasID = o["id"] != nil
        if let rawID = o["id"], !rawID.isNull {
            guard let parsed = RequestID(json: rawID) else {
                return .failure(Invalid(id: nil, error: .invalidRequest("'id' must be an integer or a string, got \(rawID.foundDescription)")))
            }
            id = parsed
        }
        guard o["jsonrpc"] == .string("2.0") else {
            let seen = o["jsonrpc"].map { $0.foundDescription } ?? "nothing"
            return .failure(Invalid(id: id, error: .invalidRequest("'jsonrpc' must be \"2.0\", got \(seen)")))
        }
        if let m = o["method"] {
            guard case .string(let method) = m else {
                return .failure(Invalid(id: id, error: .invalidRequest("'method' must be a string, got \(m.foundDescription)")))
            }
            var params: JSONValue? = nil
            if let p = o["params"] {
                switch p {
                case .object, .array: params = p
                case .null: params = nil
                default:
                    return .failure(Invalid(id: id, error: .invalidRequest("'params' must be an object or an array, got \(p.foundDescription)")))
                }
            }
            if hasID {
                guard let id else {
                    return .failure(Invalid(id: nil, error: .invalidRequest("'id' must not be null in a request")))
                }
                return .success(.request(id: id, method: method, params: params))
            }
            return .success(.notification(method: method, params: params))
        }
        if let r = o["result"] {
            return .success(.response(id: id, result: .success(r)))
        }
        if let e = o["error"] {
            guard let code = e["code"]?.intValue, let message = e["message"]?.stringValue else {
                return .failure(Invalid(id: id, error: .invalidRequest("'error' must have an integer 'code' and a string 'message'")))
            }
            return .success(.response(id: id, result: .failure(RPCError(RPCErrorCode(Int(code)), message, data: e["data"]))))
        }
        return .failure(Invalid(id: id, error: .invalidRequest("a message needs 'method' (request or notification) or 'result'/'error' (response)")))
    }

    /// The message as a JSON value.
    public var json: JSONValue {
        switch self {
        case .request(let id, let method, let params):
            var o: [String: JSONValue] = ["jsonrpc": "2.0", "id": id.json, "method": .string(method)]
            if let params { o["params"] = params }
            return .object(o)
        case .notification(let method, let params):
            var o: [String: JSONValue] = ["jsonrpc": "2.0", "method": .string(method)]
            if let params { o["params"] = params }
            return .object(o)
        case .response(let id, let result):
            var o: [String: JSONValue] = ["jsonrpc": "2.0", "id": id?.json ?? .null]
            switch result {
            case .success(let r): o["result"] = r
            case .failure(let e): o["error"] = e.json
            }
            return .object(o)
        }
    }

    /// Serialises the message. Responses are written envelope-first
    /// (`{"jsonrpc":"2.0","id":…,"result":…}`) without building an intermediate object.
    public func encode(into out: inout [UInt8]) {
        switch self {
        case .response(let id, let result):
            out.append(contentsOf: #"{"jsonrpc":"2.0","id":"#.utf8)
            JSONWriter.write(id?.json ?? .null, into: &out)
            switch result {
            case .success(let r):
                out.append(contentsOf: #","result":"#.utf8)
                JSONWriter.write(r, into: &out)
            case .failure(let e):
                out.append(contentsOf: #","error":"#.utf8)
                JSONWriter.write(e.json, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        default:
            JSONWriter.write(json, into: &out)
        }
    }

    /// A success response whose result is encoded straight into the bytes (no JSON tree).
    public static func encodeResponse<T: Encodable>(id: RequestID?, result: T, into out: inout [UInt8]) throws {
        out.append(contentsOf: #"{"jsonrpc":"2.0","id":"#.utf8)
        JSONWriter.write(id?.json ?? .null, into: &out)
        out.append(contentsOf: #","result":"#.utf8)
        try JSONBytesEncoder().encode(result, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    /// A notification whose params are encoded straight into the bytes.
    public static func encodeNotification<T: Encodable>(method: String, params: T, into out: inout [UInt8]) throws {
        out.append(contentsOf: #"{"jsonrpc":"2.0","method":"#.utf8)
        JSONWriter.writeString(method, into: &out)
        out.append(contentsOf: #","params":"#.utf8)
        try JSONBytesEncoder().encode(params, into: &out)
        out.append(UInt8(ascii: "}"))
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }
}

/// What one frame's payload holds: a single message or a batch, each element already validated.
public enum Payload: Sendable, Equatable {
    case single(Result<Message, Message.Invalid>)
    case batch([Result<Message, Message.Invalid>])

    /// Parses and validates a frame. A JSON syntax error or an empty batch is itself a
    /// failed single message (the reply has id null).
    public static func parse(_ bytes: [UInt8], maxDepth: Int = JSONParser.defaultMaxDepth) -> Payload {
        if let fast = bytes.withUnsafeBytes({ RequestScanner.scan($0, maxDepth: maxDepth) }) { return .single(.success(fast)) }
        let value: JSONValue
        do {
            value = try JSONParser.parse(bytes, maxDepth: maxDepth)
        } catch {
            return .single(.failure(Message.Invalid(id: nil, error: .parseError(error.reason, offset: error.offset))))
        }
        if case .array(let items) = value {
            if items.isEmpty {
                return .single(.failure(Message.Invalid(id: nil, error: .invalidRequest("an empty batch"))))
            }
            return .batch(items.map(Message.from))
        }
        return .single(Message.from(value))
    }
}

/// The common request read without building the envelope's object: `{"jsonrpc":"2.0",
/// "id":…, "method":"…", "params":…}` with its keys in any order, a plain integer or string id
/// and an ASCII method name, the params parsed by ``JSONParser``. Anything else (escapes in a
/// key or a name, another key, a repeated key, a response, a batch, an error to report) gives
/// nil and goes through the general path, which decides exactly as before: this only skips
/// the dictionary, the key strings and the envelope's re-validation for messages the general
/// path would accept as they are.
enum RequestScanner {
    static func scan(_ b: UnsafeRawBufferPointer, maxDepth: Int) -> Message? {
        var i = 0
        let n = b.count
        func skip() { while i < n, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0a || b[i] == 0x0d { i += 1 } }
        /// A string without escapes whose bytes are printable ASCII; `i` is on its opening quote.
        func plainString() -> UnsafeRawBufferPointer? {
            guard i < n, b[i] == UInt8(ascii: "\"") else { return nil }
            let start = i + 1
            var j = start
            while j < n {
                let c = b[j]
                if c == UInt8(ascii: "\"") { i = j + 1; return UnsafeRawBufferPointer(rebasing: b[start..<j]) }
                if c == UInt8(ascii: "\\") || c < 0x20 || c > 0x7e { return nil }
                j += 1
            }
            return nil
        }
        func equals(_ s: UnsafeRawBufferPointer, _ k: StaticString) -> Bool {
            guard s.count == k.utf8CodeUnitCount else { return false }
            let p = k.utf8Start
            for x in 0..<s.count where s[x] != p[x] { return false }
            return true
        }
        skip()
        guard i < n, b[i] == UInt8(ascii: "{") else { return nil }
        i += 1
        var version = false, id: RequestID? = nil, method: String? = nil, params: JSONValue? = nil, sawParams = false
        skip()
        if i < n, b[i] == UInt8(ascii: "}") { return nil }
        while true {
            skip()
            guard let key = plainString() else { return nil }
            skip()
            guard i < n, b[i] == UInt8(ascii: ":") else { return nil }
            i += 1
            skip()
            if equals(key, "jsonrpc") {
                guard !version, let v = plainString(), equals(v, "2.0") else { return nil }
                version = true
            } else if equals(key, "id") {
                guard id == nil, i < n else { return nil }
                if b[i] == UInt8(ascii: "\"") {
                    guard let s = plainString() else { return nil }
                    id = .string(String(decoding: s, as: UTF8.self))
                } else {
                    // An integer: optional minus, digits (no leading zero), at most 15 of them.
                    var j = i, negative = false
                    if b[j] == UInt8(ascii: "-") { negative = true; j += 1 }
                    let first = j
                    var value: Int64 = 0
                    while j < n, b[j] >= 0x30, b[j] <= 0x39, j - first < 16 { value = value * 10 + Int64(b[j] - 0x30); j += 1 }
                    let digits = j - first
                    guard digits > 0, digits <= 15, !(digits > 1 && b[first] == 0x30) else { return nil }
                    if j < n, b[j] == UInt8(ascii: ".") || b[j] == UInt8(ascii: "e") || b[j] == UInt8(ascii: "E") { return nil }
                    id = .int(negative ? -value : value)
                    i = j
                }
            } else if equals(key, "method") {
                guard method == nil, let s = plainString() else { return nil }
                method = String(decoding: s, as: UTF8.self)
            } else if equals(key, "params") {
                guard !sawParams, i < n, b[i] == UInt8(ascii: "{") || b[i] == UInt8(ascii: "[") else { return nil }
                guard let (value, end) = try? JSONParser.parseValue(b, at: i, depth: 1, maxDepth: maxDepth) else { return nil }
                params = value; sawParams = true; i = end
            } else {
                return nil
            }
            skip()
            guard i < n else { return nil }
            if b[i] == UInt8(ascii: ",") { i += 1; continue }
            guard b[i] == UInt8(ascii: "}") else { return nil }
            i += 1
            break
        }
        skip()
        guard i == n, version, let method else { return nil }
        if let id { return .request(id: id, method: method, params: params) }
        return .notification(method: method, params: params)
    }
}
