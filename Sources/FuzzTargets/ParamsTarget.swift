import JSON
import JSONRPC
import RobustdAPI

extension FuzzTargets {
    /// Params and results of every method and notification (RobustdAPI.MethodIndex): the first
    /// byte picks a type, the rest is parsed as JSON and decoded into it the way the router
    /// decodes params. Invariants: a value that does not decode is refused with -32602 (invalid
    /// params) and a message, never a crash; one that decodes encodes the same through the tree
    /// encoder and the byte encoder the replies use, and decodes again to the same JSON.
    public static func params(_ bytes: [UInt8]) {
        guard let pick = bytes.first, let value = try? JSONParser.parse(Array(bytes.dropFirst())) else { return }
        let requests = MethodIndex.requests, notifications = MethodIndex.notifications
        var k = Int(pick) % (2 * requests.count + notifications.count)
        if k < requests.count { return requests[k].fuzzParams(value) }
        k -= requests.count
        if k < requests.count { return requests[k].fuzzResult(value) }
        k -= requests.count
        notifications[k].fuzzParams(value)
    }

    static func checkParams<P: Codable>(_ t: P.Type, _ value: JSONValue, method: String) {
        do throws(RPCError) {
            let p = try value.decodeParams(P.self)
            roundTrip(value: p, method: method)
        } catch {
            precondition(error.code == RPCErrorCode.invalidParams && !error.message.isEmpty,
                         "\(method): params refused with \(error.code) \(error.message)")
        }
    }

    static func roundTrip<T: Codable>(_ t: T.Type, _ value: JSONValue) {
        guard let v = try? JSONValueDecoder().decode(T.self, from: value) else { return }
        roundTrip(value: v, method: "\(T.self)")
    }

    static func roundTrip<T: Codable>(value v: T, method: String) {
        let tree: JSONValue, bytes: [UInt8]
        do {
            tree = try JSONValueEncoder().encode(v)
            bytes = try JSONBytesEncoder().bytes(v)
        } catch {
            preconditionFailure("\(method): a decoded value does not encode: \(error)")
        }
        guard let parsed = try? JSONParser.parse(bytes) else {
            preconditionFailure("\(method): the byte encoder wrote JSON that does not parse: \(String(decoding: bytes, as: UTF8.self))")
        }
        precondition(same(parsed, tree), "\(method): the byte encoder wrote \(String(decoding: bytes, as: UTF8.self)), the tree encoder \(JSONWriter.string(tree))")
        guard let again = try? JSONValueDecoder().decode(T.self, from: tree), let tree2 = try? JSONValueEncoder().encode(again) else {
            preconditionFailure("\(method): its own encoding does not decode: \(JSONWriter.string(tree))")
        }
        precondition(same(tree, tree2), "\(method): not stable under decode and encode: \(JSONWriter.string(tree)) then \(JSONWriter.string(tree2))")
    }
}

extension RPCRequest {
    static func fuzzParams(_ value: JSONValue) { FuzzTargets.checkParams(Params.self, value, method: name) }
    static func fuzzResult(_ value: JSONValue) { FuzzTargets.roundTrip(Result.self, value) }
}

extension RPCNotification {
    static func fuzzParams(_ value: JSONValue) { FuzzTargets.checkParams(Params.self, value, method: name) }
}
