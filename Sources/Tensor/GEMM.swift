import Synchronization
import COpenBLAS

/// Row-major single-precision matrix product on OpenBLAS:
/// `C[M, N] = alpha · op(A)[M, K] · op(B)[K, N] + beta · C`.
///
/// - Parameters:
///   - transA: whether A is stored `[K, M]` (used transposed); lda is the stored row stride.
///   - transB: whether B is stored `[N, K]` (used transposed); ldb is the stored row stride.
@inline(__always)
public func gemm(transA: Bool = false, transB: Bool = false, M: Int, N: Int, K: Int,
                 alpha: Float = 1, A: UnsafePointer<Float>, lda: Int,
                 B: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, C: UnsafeMutablePointer<Float>, ldc: Int) {
    guard M > 0, N > 0 else { return }
    if K == 0 {
        if beta == 0 { for i in 0..<M { (C + i * ldc).update(repeating: 0, count: N) } }
        else if beta != 1 { for i in 0..<M { for j in 0..<N { C[i * ldc + j] *= beta } } }
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(M), blasint(N), blasint(K), alpha, A, blasint(lda), B, blasint(ldb), beta, C, blasint(ldc))
}

/// The same product by three loops: the algorithmic reference the tests compare against.
public func gemmNaive(transA: Bool = false, transB: Bool = false, M: Int, N: Int, K: Int,
                      alpha: Float = 1, A: UnsafePointer<Float>, lda: Int,
                      B: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, C: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<M {
        for j in 0..<N {
            var acc: Double = 0
            for k in 0..<K {
                let a = transA ? A[k * lda + i] : A[i * lda + k]
                let b = transB ? B[j * ldb + k] : B[k * ldb + j]
                acc += Double(a) * Double(b)
            }
            C[i * ldc + j] = alpha * Float(acc) + (beta == 0 ? 0 : beta * C[i * ldc + j])
        }
    }
}

/// Threads OpenBLAS may use for one call (OpenBLAS's own pool). The setting is process-wide.
public enum BLASThreads {
    public static var count: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, min(newValue, limit)))) }
    }

    private static let cap = Atomic<Int>(Int.max)

    /// The most threads any call may set. A background fine-tune lowers it to 1, so that every
    /// matrix product runs on its caller's thread and the training thread (at a lower
    /// priority) never drags OpenBLAS's pool, and with it a second core, away from serving.
    public static var limit: Int {
        get { cap.load(ordering: .relaxed) }
        set {
            cap.store(max(1, newValue), ordering: .relaxed)
            if count > newValue { openblas_set_num_threads(Int32(max(1, newValue))) }
        }
    }
}
