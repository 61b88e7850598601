import JSON
import JSONRPC

/// The OpenRPC document, schemas/openrpc.json: the protocol's single source of truth, compiled
/// into this module by SwiftPM (`embedInCode`) and parsed once, on first use.
public enum OpenRPCSchema {
    /// The document's bytes, as in schemas/openrpc.json.
    public static var bytes: [UInt8] { PackageResources.openrpc_json }

    /// The parsed document.
    public static func document() throws(RPCError) -> JSONValue {
        switch parsed {
        case .success(let v): return v
        case .failure(let e): throw RPCError.internalError("the embedded OpenRPC document does not parse: \(e)")
        }
    }

    private static let parsed: Result<JSONValue, JSONParseError> = {
        do throws(JSONParseError) { return .success(try JSONParser.parse(PackageResources.openrpc_json)) } catch { return .failure(error) }
    }()
}
