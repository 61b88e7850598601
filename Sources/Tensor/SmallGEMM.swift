import CKernels
import COpenBLAS
import Foundation

/// Splits work across threads: `run { k in … }` calls the body once per part k in
/// 0..<threads, concurrently, and returns when all are done.
public struct Parallel: Sendable {
    public let threads: Int
    public init(threads: Int) { self.threads = max(1, threads) }
    public static let serial = Parallel(threads: 1)

    /// On the helper pool (CKernels' `rk_pool_run`: a sub-microsecond hand-off), or through
    /// libdispatch when the pool is busy with another caller's job.
    @inline(__always)
    public func run(_ body: @Sendable (Int) -> Void) {
        if threads == 1 { body(0); return }
        let ran = withoutActuallyEscaping(body) { b -> Bool in
            var task = b
            return withUnsafeMutablePointer(to: &task) { p in
                rk_pool_run(threads, { ctx, k in ctx!.assumingMemoryBound(to: (@Sendable (Int) -> Void).self).pointee(Int(k)) }, p) == 0
            }
        }
        if !ran { DispatchQueue.concurrentPerform(iterations: threads, execute: body) }
    }
}

/// Rows up to which ``linearForward(out:input:weight:packed:bias:parallel:)`` uses the packed
/// kernel rather than OpenBLAS, by the active variant (measured, docs/performance.md): for few
/// rows OpenBLAS spends its time packing the weight matrix; AVX-512's 12-row kernel also beats
/// OpenBLAS at every row count on Zen 4 (a batch-64 pass 7% faster), while the AVX2 and
/// baseline kernels lose to it past 64 rows.
public var smallMThreshold: Int { Kernels.active == .avx512 ? .max : 64 }

/// Pointers handed to worker threads that write disjoint parts of one buffer.
struct Ptr: @unchecked Sendable { let p: UnsafePointer<Float>; init(_ p: UnsafePointer<Float>) { self.p = p } }
struct MPtr: @unchecked Sendable { let p: UnsafeMutablePointer<Float>; init(_ p: UnsafeMutablePointer<Float>) { self.p = p } }

/// A weight matrix packed once for ``linearSmallM``: PyTorch's `[O, I]` cut into panels of
/// 16 output columns, each panel stored `[I, 16]` contiguously (zero-padded past O), so the
/// kernel reads it front to back: no strides, no TLB misses, no packing per call.
public final class PackedWeight: @unchecked Sendable {
    public let inputs: Int, outputs: Int
    public let panels: Int
    let data: UnsafeMutablePointer<Float>

    /// - Parameters:
    ///   - weight: `[O, I]`
    public init(_ weight: Tensor) {
        let O = weight.shape[0], I = weight.shape[1]
        inputs = I
        outputs = O
        panels = (O + 15) / 16
        data = .allocate(capacity: panels * I * 16)
        data.initialize(repeating: 0, count: panels * I * 16)
        for o in 0..<O {
            let p = o / 16, j = o % 16
            for i in 0..<I { data[(p * I + i) * 16 + j] = weight.data[o * I + i] }
        }
    }

    deinit { data.deallocate() }

    public var byteCount: Int { panels * inputs * 16 * 4 }
}

/// `out[M, O] = input[M, I] · Wᵀ + bias` for few rows: outer-product form (a block of rows ×
/// 16 columns of accumulators, one broadcast per input value, weights read from panels), in
/// the CPU's kernel variant (CKernels `small_gemm`).
///
/// - Parameters:
///   - out: `[M, O]`
///   - input: `[M, I]`
///   - weight: the packed `[O, I]`
///   - bias: `[O]` or nil
///   - parallel: the output panels are split across its threads
public func linearSmallM(out: Tensor, input: Tensor, weight: PackedWeight, bias: Tensor?, parallel: Parallel = .serial,
                         kernels: UnsafePointer<rk_table>? = nil) {
    let M = input.shape[0], I = input.shape[1], O = weight.outputs
    precondition(weight.inputs == I, "input: \(input.shape), packed weight takes \(weight.inputs) inputs")
    out.check([M, O], "out")
    bias?.check([O], "bias")
    let x = Ptr(UnsafePointer(input.data)), w = Ptr(UnsafePointer(weight.data)), y = MPtr(out.data)
    let b = bias.map { Ptr(UnsafePointer($0.data)) }
    let parts = parallel.threads
    let panels = (O + 15) / 16
    let table = KernelTable(kernels ?? rk_active())
    parallel.run { k in
        let lo = min(O, (panels * k / parts) * 16), hi = min(O, (panels * (k + 1) / parts) * 16)
        guard lo < hi else { return }
        table.p.pointee.small_gemm(y.p, x.p, w.p, b?.p, M, I, O, lo, hi)
    }
}

/// A kernel table handed to worker threads (the tables are immutable statics).
struct KernelTable: @unchecked Sendable { let p: UnsafePointer<rk_table>; init(_ p: UnsafePointer<rk_table>) { self.p = p } }
