import JSON

/// Newline-delimited JSON: one object per line; blank lines skipped. String, number and
/// boolean values become text (so a numeric label "3" works); nested values are refused.
public enum JSONLReader {
    public static func records(_ text: String) throws(ReadError) -> [RawRecord] {
        var out: [RawRecord] = []
        var line = 0
        // Lines end at LF or CRLF; a CRLF is one Character in Swift, so split on both.
        for trimmed in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            line += 1
            if trimmed.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            let value: JSONValue
            do { value = try JSONParser.parse(Array(trimmed.utf8)) } catch {
                throw ReadError(line: line, problem: "not valid JSON: \(error.reason) at byte \(error.offset)")
            }
            out.append(try record(value, line: line))
        }
        return out
    }

    /// One record from a JSON object (also used for inline records sent over the wire).
    public static func record(_ value: JSONValue, line: Int) throws(ReadError) -> RawRecord {
        guard case .object(let o) = value else { throw ReadError(line: line, problem: "expected a JSON object, got \(value.typeName)") }
        var fields: [String: String] = [:]
        for (k, v) in o {
            switch v {
            case .string(let s): fields[k] = s
            case .int, .double, .bool: fields[k] = JSONWriter.string(v)
            case .null: continue
            case .array, .object: throw ReadError(line: line, problem: "field '\(k)' is \(v.typeName); only strings, numbers and booleans are read")
            }
        }
        return RawRecord(line: line, fields: fields)
    }
}
