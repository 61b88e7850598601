/// One record read from a file, with the line it starts on (1-based) for error messages.
public struct RawRecord: Sendable, Equatable {
    public var line: Int
    public var fields: [String: String]
    public init(line: Int, fields: [String: String]) {
        self.line = line
        self.fields = fields
    }
}

/// Why a file could not be read as records.
public struct ReadError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var problem: String
    public var description: String { "line \(line): \(problem)" }
}

/// RFC 4180 CSV with a header row: quoted fields, doubled quotes, CRLF or LF, line breaks
/// inside quotes. Each record knows the line it starts on.
public enum CSVReader {
    public static func records(_ text: String) throws(ReadError) -> [RawRecord] {
        var rows: [(Int, [String])] = []
        var row: [String] = []
        var field = ""
        var inQuotes = false
        var line = 1
        var rowStart = 1
        var fieldWasQuoted = false
        var scalars = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        func endRow() {
            row.append(field)
            if !(row.count == 1 && row[0].isEmpty && !fieldWasQuoted) { rows.append((rowStart, row)) }
            row = []; field = ""; fieldWasQuoted = false
        }
        while let c = pending ?? scalars.next() {
            pending = nil
            if inQuotes {
                if c == "\"" {
                    if let n = scalars.next() {
                        if n == "\"" { field.unicodeScalars.append("\"") } else { inQuotes = false; pending = n }
                    } else { inQuotes = false }
                } else {
                    if c == "\n" { line += 1 }
                    field.unicodeScalars.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                if field.isEmpty { inQuotes = true; fieldWasQuoted = true }
                else { throw ReadError(line: line, problem: "a quote inside an unquoted field (quote the whole field and double inner quotes)") }
            case ",":
                row.append(field); field = ""; fieldWasQuoted = false
            case "\r":
                break
            case "\n":
                endRow()
                line += 1
                rowStart = line
            default:
                field.unicodeScalars.append(c)
            }
        }
        if inQuotes { throw ReadError(line: rowStart, problem: "a quoted field is never closed") }
        if !field.isEmpty || !row.isEmpty || fieldWasQuoted { endRow() }
        guard let header = rows.first else { throw ReadError(line: 1, problem: "the file is empty; a header row is needed") }
        let names = header.1.map { $0.trimmingCharacters(in: " \u{FEFF}") }
        var seen = Set<String>()
        for n in names {
            if n.isEmpty { throw ReadError(line: 1, problem: "the header has an empty column name") }
            if !seen.insert(n).inserted { throw ReadError(line: 1, problem: "the header names column '\(n)' twice") }
        }
        var out: [RawRecord] = []
        out.reserveCapacity(rows.count - 1)
        for (ln, values) in rows.dropFirst() {
            guard values.count == names.count else {
                throw ReadError(line: ln, problem: "\(values.count) fields, but the header has \(names.count)")
            }
            var f: [String: String] = [:]
            for (k, v) in zip(names, values) { f[k] = v }
            out.append(RawRecord(line: ln, fields: f))
        }
        return out
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.unicodeScalars.first, set.unicodeScalars.contains(f) { s = Substring(s.unicodeScalars.dropFirst()) }
        while let l = s.unicodeScalars.last, set.unicodeScalars.contains(l) { s = Substring(s.unicodeScalars.dropLast()) }
        return String(s)
    }
}
