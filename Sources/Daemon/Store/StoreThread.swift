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

    final class Box: @unchecked Sendable {
        let store: Store
        init(_ s: Store) { store = s }
    }

    public init(store: Store, loop: Loop) {
        pool = ComputePool(loop: loop, threads: 1)
        box = Box(store)
    }

    /// Runs `body` with the store on the store thread; `completion` gets its result on the loop.
    public func run<T: Sendable>(_ body: @escaping @Sendable (Store) throws(StoreError) -> T,
                                 completion: @escaping (Result<T, RPCError>) -> Void) {
        let box = self.box
        pool.submit(work: { _ -> Result<T, RPCError> in
            do throws(StoreError) { return .success(try body(box.store)) } catch { return .failure(StoreThread.rpcError(error)) }
        }, completion: { r in completion(r ?? .failure(.internalError("store job skipped"))) })
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
    /// Creates the state folder (0700) and opens its SQLite store.
    static func open(stateDir: String, loop: Loop) throws -> StoreThread {
        do {
            try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw SocketSetupError(description: "cannot create the state folder \(stateDir): \(error.localizedDescription)")
        }
        let dbPath = stateDir + "/robustd.sqlite"
        do {
            return StoreThread(store: try SQLiteStore(path: dbPath), loop: loop)
        } catch {
            throw SocketSetupError(description: "cannot open the store \(dbPath): \(error)")
        }
    }
}
