import EventLoop
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
        case .sqlite: return RPCError(.storeFailure, "Store failure: \(e.message)")
        }
    }

    public var pending: Int { pool.depth.pending + pool.depth.running }

    public func shutdown() { pool.shutdown() }
}
