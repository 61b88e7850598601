import Foundation
import JSONRPC

/// Opaque page cursors of the list methods (`feedback/list`, `finetune/list`,
/// `model/versions`, `dataset/examples`): a result carries `nextCursor` while more remains,
/// and the same call with `cursor` set to it returns the next page. Clients must not look
/// inside; the daemon encodes the position after the page's last item.
public enum PageCursor {
    /// A cursor for the position after a page's last item (its sort key, as integers).
    public static func encode(_ method: String, _ position: [Int]) -> String {
        Data(([method] + position.map(String.init)).joined(separator: "\u{1F}").utf8).base64EncodedString()
    }

    /// The position a cursor of `method` holds (`count` integers); nil without a cursor.
    /// - Throws: -32602 naming `cursor` when it is not one of this method's.
    public static func decode(_ method: String, _ cursor: String?, count: Int) throws(RPCError) -> [Int]? {
        guard let cursor else { return nil }
        guard let data = Data(base64Encoded: cursor), let text = String(data: data, encoding: .utf8) else { throw invalid(cursor) }
        let parts = text.split(separator: "\u{1F}", omittingEmptySubsequences: false)
        let values = parts.dropFirst().compactMap { Int($0) }
        guard parts.first.map(String.init) == method, parts.count == count + 1, values.count == count else { throw invalid(cursor) }
        return values
    }

    /// The error for a cursor that is not one of this method's.
    public static func invalid(_ cursor: String) -> RPCError {
        .invalidParams("'cursor' is not a cursor of this method; pass the nextCursor of its previous page", field: "cursor",
                       expected: "the nextCursor of a previous page", found: "\"\(cursor.prefix(80))\"")
    }
}
