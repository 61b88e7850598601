import CLibPQ
import Foundation

/// One libpq connection, used synchronously from one thread at a time (the store's thread, or
/// the notification listener's).
///
/// Parameters travel as text (bytea as binary) and results come back as text, so that no type
/// OIDs are hard-coded here. A connection that breaks is reset on the next call, no more often
/// than the backoff allows; until it is back, calls throw `.unavailable` at once.
public final class PostgresConnection {
    public let url: String
    private var conn: OpaquePointer?
    /// When the next reconnection may be tried, and the current backoff.
    private var retryAt = 0.0
    private var backoff = 0.1
    /// Called after a reconnection (to take session locks again, say).
    public var onReconnect: ((PostgresConnection) throws(StoreError) -> Void)?

    /// The oldest server this store runs on: 12 (SKIP LOCKED, ON CONFLICT, generated columns).
    public static let minimumServerVersion = 120000

    /// The name the session shows in pg_stat_activity.
    public let applicationName: String

    public init(url: String, applicationName: String = "robustd") throws(StoreError) {
        self.url = url
        self.applicationName = applicationName
        let c = PQconnectdb(url)
        guard let c, PQstatus(c) == CONNECTION_OK else {
            let msg = c.map { Self.trim(PQerrorMessage($0)) } ?? "out of memory"
            if let c { PQfinish(c) }
            throw StoreError(.unavailable, "cannot connect to PostgreSQL (\(Self.redacted(url))): \(msg)")
        }
        let v = Int(PQserverVersion(c))
        guard v >= Self.minimumServerVersion else {
            PQfinish(c)
            throw StoreError(.invalid, "PostgreSQL server version \(v / 10000).\(v % 10000) is too old; robustd needs 12 or later")
        }
        conn = c
        try session()
    }

    /// Per-session settings: a name in pg_stat_activity, notices (like "already exists,
    /// skipping") kept out of the daemon's stderr.
    private func session() throws(StoreError) {
        try query("SELECT set_config('application_name', $1, false)", [.text(applicationName)])
        try query("SET client_min_messages = warning")
    }

    deinit { if let conn { PQfinish(conn) } }

    /// The server's version number (150004 for 15.4).
    public var serverVersion: Int { conn.map { Int(PQserverVersion($0)) } ?? 0 }
    public var isConnected: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }
    /// The socket to wait on for notifications (-1 when not connected).
    public var socket: Int32 { conn.map { PQsocket($0) } ?? -1 }

    /// The same server and options, another database (a URL's path, or a key=value string's `dbname`).
    public static func replacingDatabase(in url: String, with name: String) -> String {
        guard let scheme = url.range(of: "://") else { return url + " dbname=\(name)" }
        let rest = url[scheme.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let query = rest[slash...].firstIndex(of: "?") ?? rest.endIndex
        return String(url[..<slash]) + "/" + name + String(url[query...])
    }

    /// The URL with any password replaced, for messages and logs.
    public static func redacted(_ url: String) -> String {
        var s = url
        // postgresql://user:secret@host → postgresql://user:***@host
        // The authority ends at the first "/" or "?"; its user info at its last "@" (a password
        // may hold an unescaped "@").
        if let scheme = s.range(of: "://") {
            let end = s[scheme.upperBound...].firstIndex { $0 == "/" || $0 == "?" } ?? s.endIndex
            if let at = s[scheme.upperBound..<end].lastIndex(of: "@"), let colon = s[scheme.upperBound..<at].firstIndex(of: ":") {
                s.replaceSubrange(s.index(after: colon)..<at, with: "***")
            }
        }
        // key=value form: password=secret
        if let r = s.range(of: #"password\s*=\s*\S+"#, options: .regularExpression) { s.replaceSubrange(r, with: "password=***") }
        return s
    }

    static func trim(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p).trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: "; ")
    }

    /// Makes sure the connection is up, resetting it if it broke and the backoff allows.
    public func ensureConnected() throws(StoreError) {
        if let conn, PQstatus(conn) == CONNECTION_OK { return }
        let now = Date().timeIntervalSince1970
        guard now >= retryAt else {
            throw StoreError(.unavailable, "PostgreSQL is unreachable; retrying in \(String(format: "%.1f", retryAt - now)) s")
        }
        if let conn { PQreset(conn) } else { conn = PQconnectdb(url) }
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let msg = conn.map { Self.trim(PQerrorMessage($0)) } ?? "out of memory"
            retryAt = now + backoff
            backoff = min(backoff * 2, 5)
            throw StoreError(.unavailable, "PostgreSQL is unreachable (\(Self.redacted(url))): \(msg)")
        }
        backoff = 0.1
        retryAt = 0
        try session()
        try onReconnect?(self)
    }

    /// Runs one statement with `$1…$n` parameters; returns its rows as text.
    @discardableResult
    public func query(_ sql: String, _ params: [SQLValue] = []) throws(StoreError) -> PGRows {
        try execute(sql, params, binary: false) { PGRows($0) }
    }

    /// Runs a statement and hands its successful result to `read` (the result is freed after).
    private func execute<T>(_ sql: String, _ params: [SQLValue], binary: Bool, _ read: (OpaquePointer) -> T) throws(StoreError) -> T {
        try ensureConnected()
        guard let conn else { throw StoreError(.unavailable, "PostgreSQL is not connected") }
        let (texts, lengths, formats) = Self.encode(params)
        let result: OpaquePointer? = withPointers(texts) { ptrs in
            PQexecParams(conn, sql, Int32(params.count), nil, ptrs, lengths, formats, binary ? 1 : 0)
        }
        guard let result else { throw broken("no result (out of memory?)") }
        defer { PQclear(result) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK: return read(result)
        default: throw failure(result, conn: conn, sql: sql)
        }
    }

    /// Parameters as libpq takes them: text, except bytea in binary.
    static func encode(_ params: [SQLValue]) -> ([[CChar]?], [Int32], [Int32]) {
        var texts: [[CChar]?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        for p in params {
            switch p {
            case .null: texts.append(nil); lengths.append(0); formats.append(0)
            case .int(let x): texts.append(Array(String(x).utf8CString)); lengths.append(0); formats.append(0)
            case .double(let x):
                let s = x.isNaN ? "NaN" : x.isInfinite ? (x > 0 ? "Infinity" : "-Infinity") : "\(x)"
                texts.append(Array(s.utf8CString)); lengths.append(0); formats.append(0)
            case .text(let s): texts.append(Array(s.utf8CString)); lengths.append(0); formats.append(0)
            case .blob(let b): texts.append(b.map { CChar(bitPattern: $0) }); lengths.append(Int32(b.count)); formats.append(1)
            }
        }
        return (texts, lengths, formats)
    }

    /// The error a failed result stands for.
    private func failure(_ result: OpaquePointer, conn: OpaquePointer, sql: String) -> StoreError {
        if PQstatus(conn) != CONNECTION_OK { return broken(Self.trim(PQresultErrorMessage(result))) }
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) } ?? ""
        let msg = Self.trim(PQresultErrorMessage(result))
        switch state {
        case "23505": return StoreError(.conflict, msg)
        case "40001", "40P01": return StoreError(.unavailable, "a concurrent change got in the way; retry (\(msg))")
        case _ where state.hasPrefix("08") || state.hasPrefix("57P"): return broken(msg)
        default: return StoreError(.postgres(state), "\(msg) (in: \(sql.prefix(80)))")
        }
    }

    /// Runs a query whose first column is bytea and returns it raw, row by row (binary result
    /// format: no hex to decode, for version files).
    public func queryBytes(_ sql: String, _ params: [SQLValue]) throws(StoreError) -> [[UInt8]] {
        try execute(sql, params, binary: true) { result in
            (0..<PQntuples(result)).map { i in
                let n = Int(PQgetlength(result, i, 0))
                guard n > 0, let p = PQgetvalue(result, i, 0) else { return [] }
                return UnsafeRawBufferPointer(start: p, count: n).map { $0 }
            }
        }
    }

    private func broken(_ msg: String) -> StoreError {
        retryAt = 0
        return StoreError(.unavailable, "the PostgreSQL connection broke: \(msg)")
    }

    private func withPointers<R>(_ arrays: [[CChar]?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        // Keep every buffer alive for the call.
        var ptrs: [UnsafePointer<CChar>?] = []
        var owned: [UnsafeMutablePointer<CChar>] = []
        for a in arrays {
            guard let a else { ptrs.append(nil); continue }
            let p = UnsafeMutablePointer<CChar>.allocate(capacity: max(1, a.count))
            a.withUnsafeBufferPointer { b in if let base = b.baseAddress { p.initialize(from: base, count: a.count) } }
            owned.append(p)
            ptrs.append(UnsafePointer(p))
        }
        defer { for p in owned { p.deallocate() } }
        return body(ptrs)
    }

    /// Runs `body` in one transaction; any error rolls it back. A broken connection during
    /// COMMIT leaves the outcome unknown: the caller's error says to retry, and idempotent
    /// writes (feedback keys) make the retry safe.
    public func transaction<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try query("BEGIN")
        do {
            let r = try body()
            try query("COMMIT")
            return r
        } catch {
            if isConnected { _ = try? query("ROLLBACK") }
            throw error
        }
    }

    /// Notifications received so far (after reading what the socket holds).
    public func notifications() throws(StoreError) -> [(channel: String, payload: String)] {
        guard let conn else { throw StoreError(.unavailable, "PostgreSQL is not connected") }
        guard PQconsumeInput(conn) == 1 else { throw broken(Self.trim(PQerrorMessage(conn))) }
        var out: [(channel: String, payload: String)] = []
        while let n = PQnotifies(conn) {
            out.append((String(cString: n.pointee.relname), String(cString: n.pointee.extra)))
            PQfreemem(n)
        }
        return out
    }

    /// Closes the connection (the next call reconnects).
    public func close() {
        if let conn { PQfinish(conn) }
        conn = nil
    }
}

/// The rows of a result, as text.
public struct PGRows {
    public let rows: [[String?]]
    /// Rows changed by an INSERT, UPDATE or DELETE.
    public let affected: Int

    init(_ r: OpaquePointer) {
        let n = Int(PQntuples(r)), m = Int(PQnfields(r))
        var rows: [[String?]] = []
        rows.reserveCapacity(n)
        for i in 0..<n {
            var row: [String?] = []
            row.reserveCapacity(m)
            for j in 0..<m {
                if PQgetisnull(r, Int32(i), Int32(j)) == 1 { row.append(nil); continue }
                row.append(String(cString: PQgetvalue(r, Int32(i), Int32(j))))
            }
            rows.append(row)
        }
        self.rows = rows
        affected = Int(String(cString: PQcmdTuples(r))) ?? 0
    }

    public var count: Int { rows.count }
    public var isEmpty: Bool { rows.isEmpty }
    public func text(_ r: Int, _ c: Int) -> String? { rows[r][c] }
    public func int(_ r: Int, _ c: Int) -> Int { rows[r][c].flatMap { Int($0) } ?? 0 }
    public func optionalInt(_ r: Int, _ c: Int) -> Int? { rows[r][c].flatMap { Int($0) } }
    public func double(_ r: Int, _ c: Int) -> Double { rows[r][c].flatMap { Self.parseDouble($0) } ?? 0 }
    public func optionalDouble(_ r: Int, _ c: Int) -> Double? { rows[r][c].flatMap { Self.parseDouble($0) } }
    public func bool(_ r: Int, _ c: Int) -> Bool { rows[r][c] == "t" }
    /// A bytea column in PostgreSQL's hex output (`\x0a1b…`).
    public func bytes(_ r: Int, _ c: Int) -> [UInt8] {
        guard let s = rows[r][c] else { return [] }
        let u = Array(s.utf8)
        guard u.count >= 2, u[0] == UInt8(ascii: "\\"), u[1] == UInt8(ascii: "x") else { return [] }
        var out = [UInt8]()
        out.reserveCapacity((u.count - 2) / 2)
        var i = 2
        while i + 1 < u.count {
            out.append(Self.nibble(u[i]) << 4 | Self.nibble(u[i + 1]))
            i += 2
        }
        return out
    }

    static func nibble(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return 0
        }
    }

    static func parseDouble(_ s: String) -> Double? {
        switch s {
        case "NaN": return .nan
        case "Infinity": return .infinity
        case "-Infinity": return -.infinity
        default: return Double(s)
        }
    }
}
