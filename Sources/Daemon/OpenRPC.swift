import JSON
import JSONRPC

/// The OpenRPC document (schemas/openrpc.json, embedded at build time by scripts/gen-openrpc).
public enum OpenRPC {
    /// The parsed document.
    public static func document() throws(RPCError) -> JSONValue {
        do {
            return try JSONParser.parse(OpenRPCDocument.text)
        } catch {
            throw RPCError.internalError("the embedded OpenRPC document does not parse: \(error)")
        }
    }
}
