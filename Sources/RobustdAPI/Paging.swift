import Foundation
import JSONRPC

/// Opaque page cursors of the list methods (`feedback/list`, `finetune/list`,
/// `model/versions`, `dataset/examples`): a result carries `nextCursor` while more remains,
/// and the same call with `cursor` set to it returns the next page. Clients must not look
/// inside; the daemon encodes the position after the page's last item.
public enum PageCursor {
    /// A cursor for `fields` (the sort key of the last item served).
    public static func encode(_ method: String, _ fields: [String]) -> String {
        Data(([method] + fields).joined(separator: "\u{1F}").utf8).base64EncodedString()
    }

    /// The fields of a cursor made for `method`, or nil when it is not one.
    public static func decode(_ method: String, _ cursor: String) -> [String]? {
        guard let data = Data(base64Encoded: cursor), let text = String(data: data, encoding: .utf8) else { return nil }
        let parts = text.split(separator: "\u{1F}", omittingEmptySubsequences: false).map(String.init)
        guard parts.first == method else { return nil }
        return Array(parts.dropFirst())
    }

    /// The error for a cursor that is not one of this method's.
    public static func invalid(_ cursor: String) -> RPCError {
        .invalidParams("'cursor' is not a cursor of this method; pass the nextCursor of its previous page", field: "cursor",
                       expected: "the nextCursor of a previous page", found: "\"\(cursor.prefix(80))\"")
    }
}
