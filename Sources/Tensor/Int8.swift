import CKernels

/// A weight matrix quantised for the int8 products: symmetric int8 per output channel
/// (scale = max |w| of the row / 127), packed in 16-column panels of 4-byte groups, with the
/// column sums the unsigned (VNNI) products subtract.
public final class QuantizedWeight: @unchecked Sendable {
    var q = rk_qweight()
    public var inputs: Int { Int(q.K) }
    public var outputs: Int { Int(q.O) }

    /// - Parameter weight: `[O, I]`, PyTorch's layout. Nil when memory runs out.
    public init?(_ weight: Tensor) {
        guard rk_qweight_init(&q, weight.data, weight.shape[0], weight.shape[1]) == 0 else { return nil }
    }

    deinit { rk_qweight_free(&q) }

    public var byteCount: Int { Int(q.panels * q.Kp * 16) + Int(q.panels) * 16 * 8 }
}

/// `out[M, O] = input[M, I] · Wᵀ + bias` in int8: each input row quantised on the fly
/// (symmetric, max |x| / 127), products accumulated in int32, dequantised per output.
///
/// - Parameters:
///   - variant: the int8 kernel (nil: the active one)
///   - parallel: the output columns are split across its threads
public func linearInt8(out: Tensor, input: Tensor, weight: QuantizedWeight, bias: Tensor?, parallel: Parallel = .serial,
                       variant: Int8Variant? = nil) {
    let M = input.shape[0], I = input.shape[1], O = weight.outputs
    precondition(weight.inputs == I, "input: \(input.shape), quantised weight takes \(weight.inputs) inputs")
    out.check([M, O], "out")
    bias?.check([O], "bias")
    let Kp = Int(weight.q.Kp)
    let qx = UnsafeMutablePointer<Int8>.allocate(capacity: M * Kp), xs = UnsafeMutablePointer<Float>.allocate(capacity: M)
    defer { qx.deallocate(); xs.deallocate() }
    let table = QTable(variant.flatMap { Kernels.table($0) } ?? rk_qactive())
    table.p.pointee.quantize(qx, xs, input.data, M, I, Kp)
    let panels = (O + 15) / 16, parts = parallel.threads
    let y = MPtr(out.data), b = bias.map { Ptr(UnsafePointer($0.data)) }, q = QPtr(UnsafePointer(qx)), s = Ptr(UnsafePointer(xs))
    withUnsafePointer(to: &weight.q) { w0 in
        let w = QWPtr(w0)
        parallel.run { k in
            let lo = min(O, (panels * k / parts) * 16), hi = min(O, (panels * (k + 1) / parts) * 16)
            guard lo < hi else { return }
            table.p.pointee.qgemm(y.p, q.p, s.p, w.p, b?.p, M, lo, hi)
        }
    }
}

struct QTable: @unchecked Sendable { let p: UnsafePointer<rk_qtable>; init(_ p: UnsafePointer<rk_qtable>) { self.p = p } }
struct QPtr: @unchecked Sendable { let p: UnsafePointer<Int8>; init(_ p: UnsafePointer<Int8>) { self.p = p } }
struct QWPtr: @unchecked Sendable { let p: UnsafePointer<rk_qweight>; init(_ p: UnsafePointer<rk_qweight>) { self.p = p } }
