import COpenBLAS
import Foundation

/// Splits work across threads: `run { k in … }` calls the body once per part k in
/// 0..<threads, concurrently, and returns when all are done.
public struct Parallel: Sendable {
    public let threads: Int
    public init(threads: Int) { self.threads = max(1, threads) }
    public static let serial = Parallel(threads: 1)

    @inline(__always)
    public func run(_ body: @Sendable (Int) -> Void) {
        if threads == 1 { body(0); return }
        DispatchQueue.concurrentPerform(iterations: threads, execute: body)
    }
}

/// Rows up to which ``linearForwardT`` uses its own kernel rather than OpenBLAS. For few
/// rows OpenBLAS spends its time packing the weight matrix (measured: docs/performance.md).
public let smallMThreshold = 64

/// A row of zeros shared by every call (read only), so the kernel allocates nothing.
final class ZeroRow: @unchecked Sendable {
    static let capacity = 16384
    static let shared = ZeroRow()
    let data: UnsafePointer<Float>
    private init() {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: Self.capacity)
        p.initialize(repeating: 0, count: Self.capacity)
        data = UnsafePointer(p)
    }
}

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

/// `out[M, O] = input[M, I] · Wᵀ + bias` for few rows: outer-product form, 6 rows × 16
/// columns of accumulators, one broadcast per input value, weights read from panels.
///
/// - Parameters:
///   - out: `[M, O]`
///   - input: `[M, I]`
///   - weight: the packed `[O, I]`
///   - bias: `[O]` or nil
///   - parallel: the output panels are split across its threads
public func linearSmallM(out: Tensor, input: Tensor, weight: PackedWeight, bias: Tensor?, parallel: Parallel = .serial) {
    let M = input.shape[0], I = input.shape[1], O = weight.outputs
    precondition(weight.inputs == I, "input: \(input.shape), packed weight takes \(weight.inputs) inputs")
    out.check([M, O], "out")
    bias?.check([O], "bias")
    let x = Ptr(UnsafePointer(input.data)), w = Ptr(UnsafePointer(weight.data)), y = MPtr(out.data)
    let b = bias.map { Ptr(UnsafePointer($0.data)) }
    let parts = parallel.threads
    let panels = (O + 15) / 16
    // Rows past M in the last block of 6 read a zero row; their results are not stored.
    let z: Ptr
    var owned: UnsafeMutablePointer<Float>? = nil
    if I <= ZeroRow.capacity {
        z = Ptr(ZeroRow.shared.data)
    } else {
        owned = .allocate(capacity: I)
        owned!.initialize(repeating: 0, count: I)
        z = Ptr(UnsafePointer(owned!))
    }
    defer { owned?.deallocate() }
    parallel.run { k in
        let lo = min(O, (panels * k / parts) * 16), hi = min(O, (panels * (k + 1) / parts) * 16)
        var o = lo
        while o < hi {
            let width = min(16, hi - o)
            let panel = w.p + (o / 16) * I * 16
            var m = 0
            if width == 16 {
                while m < M {
                    kernel6x16(y: y.p, x: x.p, zero: z.p, w: panel, b: b?.p, m: m, rows: min(6, M - m), o: o, I: I, O: O)
                    m += 6
                }
            }
            while m < M {
                kernel1xN(y: y.p, x: x.p, w: panel, b: b?.p, m: m, o: o, width: width, I: I, O: O)
                m += 1
            }
            o += 16
        }
    }
}

@inline(__always)
private func load8(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
private func store8(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

/// Rows m..<m+rows (rows ≤ 6; missing rows read `zero`), columns o..<o+16.
private func kernel6x16(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, zero: UnsafePointer<Float>,
                        w: UnsafePointer<Float>, b: UnsafePointer<Float>?, m: Int, rows: Int, o: Int, I: Int, O: Int) {
    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), c0 = SIMD8<Float>(), c1 = SIMD8<Float>()
    var d0 = SIMD8<Float>(), d1 = SIMD8<Float>(), e0 = SIMD8<Float>(), e1 = SIMD8<Float>()
    var f0 = SIMD8<Float>(), f1 = SIMD8<Float>(), g0 = SIMD8<Float>(), g1 = SIMD8<Float>()
    let x0 = x + m * I
    let x1 = rows > 1 ? x0 + I : zero, x2 = rows > 2 ? x0 + 2 * I : zero
    let x3 = rows > 3 ? x0 + 3 * I : zero, x4 = rows > 4 ? x0 + 4 * I : zero, x5 = rows > 5 ? x0 + 5 * I : zero
    var wp = w
    for i in 0..<I {
        robustd_prefetch(wp + 1024)  // ahead in the panel
        let wl = load8(wp), wh = load8(wp + 8)
        var s = SIMD8<Float>(repeating: x0[i]); a0.addProduct(s, wl); a1.addProduct(s, wh)
        s = SIMD8<Float>(repeating: x1[i]); c0.addProduct(s, wl); c1.addProduct(s, wh)
        s = SIMD8<Float>(repeating: x2[i]); d0.addProduct(s, wl); d1.addProduct(s, wh)
        s = SIMD8<Float>(repeating: x3[i]); e0.addProduct(s, wl); e1.addProduct(s, wh)
        s = SIMD8<Float>(repeating: x4[i]); f0.addProduct(s, wl); f1.addProduct(s, wh)
        s = SIMD8<Float>(repeating: x5[i]); g0.addProduct(s, wl); g1.addProduct(s, wh)
        wp += 16
    }
    var bl = SIMD8<Float>(), bh = SIMD8<Float>()
    if let b { bl = load8(b + o); bh = load8(b + o + 8) }
    let y0 = y + m * O + o
    store8(a0 + bl, y0); store8(a1 + bh, y0 + 8)
    if rows > 1 { store8(c0 + bl, y0 + O); store8(c1 + bh, y0 + O + 8) }
    if rows > 2 { store8(d0 + bl, y0 + 2 * O); store8(d1 + bh, y0 + 2 * O + 8) }
    if rows > 3 { store8(e0 + bl, y0 + 3 * O); store8(e1 + bh, y0 + 3 * O + 8) }
    if rows > 4 { store8(f0 + bl, y0 + 4 * O); store8(f1 + bh, y0 + 4 * O + 8) }
    if rows > 5 { store8(g0 + bl, y0 + 5 * O); store8(g1 + bh, y0 + 5 * O + 8) }
}

/// Row m, columns o..<o+width (width ≤ 16).
private func kernel1xN(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                       b: UnsafePointer<Float>?, m: Int, o: Int, width: Int, I: Int, O: Int) {
    let xr = x + m * I, yr = y + m * O + o
    if width == 16 {
        var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
        var wp = w
        for i in 0..<I {
            let s = SIMD8<Float>(repeating: xr[i])
            a0.addProduct(s, load8(wp)); a1.addProduct(s, load8(wp + 8))
            wp += 16
        }
        if let b { a0 += load8(b + o); a1 += load8(b + o + 8) }
        store8(a0, yr); store8(a1, yr + 8)
        return
    }
    for j in 0..<width {
        var acc: Float = b?[o + j] ?? 0
        for i in 0..<I { acc += xr[i] * w[i * 16 + j] }
        yr[j] = acc
    }
}
