import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import Store

/// The one thread that touches the store. Writes are serial; a request that records data is
/// answered only after its transaction committed (the completion runs after the commit).
///
/// - Important: `run` is called on the loop thread; its body runs on the store thread.
public final class StoreThread {
    private let pool: ComputePool
    private let box: Box
    /// "sqlite" or "postgresql".
    let backend: String
    /// The database file, or the URL with its password hidden.
    let location: String
    /// Whether the last call reached the store (false after an `unavailable` error, until a
    /// call succeeds again). Loop thread only.
    private(set) var healthy = true
    private(set) var lastError: String?
    private(set) var unhealthySince: Double?

    final class Box: @unchecked Sendable {
        let store: Store
        init(_ s: Store) { store = s }
    }

    public init(store: Store, loop: Loop, backend: String = "sqlite", location: String = "") {
        pool = ComputePool(loop: loop, threads: 1)
        box = Box(store)
        self.backend = backend
        self.location = location
    }

    /// Runs `body` with the store on the store thread; `completion` gets its result on the loop.
    public func run<T: Sendable>(_ body: @escaping @Sendable (Store) throws(StoreError) -> T,
                                 completion: @escaping (Result<T, RPCError>) -> Void) {
        let box = self.box
        pool.submit(work: { _ -> Result<T, RPCError> in
            do throws(StoreError) { return .success(try body(box.store)) } catch { return .failure(StoreThread.rpcError(error)) }
        }, completion: { [weak self] r in
            self?.note(r)
            completion(r ?? .failure(.internalError("store job skipped")))
        })
    }

    private func note<T>(_ r: Result<T, RPCError>?) {
        switch r {
        case .success?:
            healthy = true
            unhealthySince = nil
        case .failure(let e)? where e.code == .storeUnavailable:
            if healthy { unhealthySince = Date().timeIntervalSince1970 }
            healthy = false
            lastError = e.message
        default: break
        }
    }

    static func rpcError(_ e: StoreError) -> RPCError {
        switch e.kind {
        case .conflict: return RPCError(.conflict, "Conflict: \(e.message)")
        case .notFound: return RPCError(.invalidParams, "Not found: \(e.message)")
        case .invalid: return RPCError(.invalidData, "Invalid data: \(e.message)")
        case .sqlite, .postgres: return RPCError(.storeFailure, "Store failure: \(e.message)")
        case .unavailable:
            return RPCError(.storeUnavailable, "Store unavailable: \(e.message). Nothing was recorded; retry (a report with the same idempotencyKey is stored once)")
        }
    }

    public var pending: Int { pool.depth.pending + pool.depth.running }

    public func shutdown() { pool.shutdown() }
}

extension StoreThread {
    /// Creates the state folder (0700) and opens the store: PostgreSQL when a URL is given
    /// (the state folder then caches version files), else the folder's SQLite database.
    static func open(config: Configuration, loop: Loop) throws -> StoreThread {
        let stateDir = config.stateDir
        do {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw SocketSetupError(description: "cannot create the state folder \(stateDir): \(error.localizedDescription)")
        }
        if let url = config.storeURL {
            do {
                return StoreThread(store: try PostgresStore(url: url, replica: config.replica, leaseSeconds: config.leaseSeconds), loop: loop,
                                   backend: "postgresql", location: PostgresConnection.redacted(url))
            } catch {
                throw SocketSetupError(description: "cannot open the PostgreSQL store: \(error)")
            }
        }
        let dbPath = stateDir + "/robustd.sqlite"
        do {
            return StoreThread(store: try SQLiteStore(path: dbPath), loop: loop, backend: "sqlite", location: dbPath)
        } catch {
            throw SocketSetupError(description: "cannot open the store \(dbPath): \(error)")
        }
    }
}
