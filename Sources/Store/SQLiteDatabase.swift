import CSQLite
import Foundation

/// A storage operation failed: what, and the database's word for it.
public struct StoreError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Kind: Sendable, Equatable {
        case sqlite(Int32)
        /// PostgreSQL's SQLSTATE.
        case postgres(String)
        case notFound, conflict, invalid
        /// The store cannot be reached (PostgreSQL down, the connection broke): nothing was
        /// written, or the outcome of the last commit is unknown; retrying is safe for
        /// idempotent writes.
        case unavailable
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }

    /// An SQLite result code as an error: a full disk is the store being unavailable for
    /// writes (nothing was written; retrying once space returns is safe), named as such.
    static func sqlite(_ rc: Int32, _ message: String) -> StoreError {
        if rc & 0xFF == SQLITE_FULL {
            return StoreError(.unavailable, "the state folder's file system is full (\(message)); free space there")
        }
        return StoreError(.sqlite(rc), message)
    }
}

/// A thin wrapper over one SQLite connection.
///
/// - Important: Not thread-safe: the store uses it from one thread at a time.
public final class SQLiteDatabase {
    let db: OpaquePointer
    public let path: String

    /// Opens (creating if needed) the database; `":memory:"` for a private in-memory one.
    public init(path: String) throws(StoreError) {
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            if let handle { sqlite3_close_v2(handle) }
            throw StoreError.sqlite(rc, "cannot open \(path): \(msg)")
        }
        db = handle
        self.path = path
        sqlite3_busy_timeout(db, 5000)
        sqlite3_extended_result_codes(db, 1)
    }

    deinit { sqlite3_close_v2(db) }

    func error(_ rc: Int32, _ context: String) -> StoreError {
        StoreError.sqlite(rc, "\(context): \(String(cString: sqlite3_errmsg(db)))")
    }

    /// Runs statements that return no rows.
    public func exec(_ sql: String) throws(StoreError) {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? "error \(rc)"
            sqlite3_free(err)
            throw StoreError.sqlite(rc, "\(msg) (in: \(sql.prefix(80)))")
        }
    }

    public func prepare(_ sql: String) throws(StoreError) -> Statement {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nil)
        guard rc == SQLITE_OK, let stmt else { throw error(rc, "prepare") }
        return Statement(stmt, db: self)
    }

    /// Runs `body` in one transaction (BEGIN IMMEDIATE … COMMIT); any error rolls it all back.
    public func transaction<T>(_ body: () throws(StoreError) -> T) throws(StoreError) -> T {
        try exec("BEGIN IMMEDIATE")
        do {
            let r = try body()
            try exec("COMMIT")
            return r
        } catch {
            try? exec("ROLLBACK")
            throw error
        }
    }

    public var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(db) }
    public var changes: Int { Int(sqlite3_changes(db)) }

    public func pragma(_ name: String) throws(StoreError) -> String? {
        let s = try prepare("PRAGMA \(name)")
        return try s.step() ? s.text(0) : nil
    }
}

/// A prepared statement. Bind with 1-based indices; read columns 0-based.
public final class Statement {
    let stmt: OpaquePointer
    unowned let db: SQLiteDatabase

    init(_ stmt: OpaquePointer, db: SQLiteDatabase) {
        self.stmt = stmt
        self.db = db
    }

    deinit { sqlite3_finalize(stmt) }

    @discardableResult
    public func bind(_ values: [SQLValue]) throws(StoreError) -> Statement {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
        for (i, v) in values.enumerated() {
            let idx = Int32(i + 1)
            let rc: Int32
            switch v {
            case .null: rc = sqlite3_bind_null(stmt, idx)
            case .int(let x): rc = sqlite3_bind_int64(stmt, idx, x)
            case .double(let x): rc = sqlite3_bind_double(stmt, idx, x)
            case .text(let s): rc = robustd_sqlite_bind_text(stmt, idx, s, -1)
            case .blob(let b): rc = b.withUnsafeBytes { robustd_sqlite_bind_blob(stmt, idx, $0.baseAddress, Int32($0.count)) }
            }
            if rc != SQLITE_OK { throw db.error(rc, "bind") }
        }
        return self
    }

    /// Advances: true when a row is ready, false when done.
    public func step() throws(StoreError) -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw db.error(rc, "step")
    }

    /// Runs to completion (for writes).
    public func run(_ values: [SQLValue] = []) throws(StoreError) {
        try bind(values)
        while try step() {}
    }

    public func int(_ col: Int32) -> Int64 { sqlite3_column_int64(stmt, col) }
    public func double(_ col: Int32) -> Double { sqlite3_column_double(stmt, col) }
    public func isNull(_ col: Int32) -> Bool { sqlite3_column_type(stmt, col) == SQLITE_NULL }
    public func text(_ col: Int32) -> String? {
        guard let p = sqlite3_column_text(stmt, col) else { return nil }
        return String(cString: p)
    }
    public func blob(_ col: Int32) -> [UInt8] {
        let n = Int(sqlite3_column_bytes(stmt, col))
        guard n > 0, let p = sqlite3_column_blob(stmt, col) else { return [] }
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }
}

public enum SQLValue: Sendable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob([UInt8])
}
