import CKernels
import Foundation

/// Sequences up to this length use the hand-written attention kernel; longer ones OpenBLAS.
public let attentionKernelMaxLength = 64

// B sequences packed into N rows; H hidden, NH heads, HS = H / NH head size, Tᵢ a sequence's length.

/// Multi-head self-attention over packed sequences, from a fused projection.
///
/// For each sequence and head: `P = softmax(Q Kᵀ / √HS)`, `ctx = P V`. Each sequence attends
/// only to its own tokens (the packing is the padding mask).
///
/// - Parameters:
///   - out: `[N, H]`, the context vectors (heads side by side)
///   - probs: `[NH · Σ Tᵢ²]`, the attention probabilities cached for ``attentionBackward``;
///     nil when only inferring (then `scratch` is used)
///   - scratch: at least `Tmax²` floats when `probs` is nil
///   - qkv: `[N, 3H]`, each row `q | k | v`
///   - packing: the sequences
///   - heads: NH
public func attentionForward(out: Tensor, probs: Tensor?, scratch: UnsafeMutablePointer<Float>?,
                             qkv: Tensor, packing: Packing, heads NH: Int) {
    let N = packing.totalTokens, H = out.shape[1], HS = H / NH
    precondition(H % NH == 0, "hidden \(H) is not a multiple of \(NH) heads")
    qkv.check([N, 3 * H], "qkv")
    out.check([N, H], "out")
    probs?.check([NH * packing.totalSquares], "probs")
    precondition(probs != nil || scratch != nil, "attention needs probs or scratch")
    for s in 0..<packing.count {
        attendOne(out: out.data, probs: probs.map { $0.data + NH * packing.squareOffsets[s] }, scratch: scratch,
                  qkv: qkv.data, offset: packing.offsets[s], T: packing.lengths[s], H: H, NH: NH, HS: HS)
    }
}

/// Inference attention split across threads: by sequence when there are enough of them,
/// else by head (a single query).
///
/// - Parameters:
///   - scratch: at least `parallel.threads · Tmax²` floats
public func attentionForward(out: Tensor, scratch: UnsafeMutablePointer<Float>, qkv: Tensor, packing: Packing,
                             heads NH: Int, parallel: Parallel) {
    let N = packing.totalTokens, H = out.shape[1], HS = H / NH
    qkv.check([N, 3 * H], "qkv")
    out.check([N, H], "out")
    let P = parallel.threads, T2 = packing.maxLength * packing.maxLength
    let o = MPtr(out.data), q = Ptr(UnsafePointer(qkv.data)), sc = MPtr(scratch)
    if packing.count >= P {
        parallel.run { k in
            for s in stride(from: k, to: packing.count, by: P) {
                attendOne(out: o.p, probs: nil, scratch: sc.p + k * T2, qkv: q.p, offset: packing.offsets[s],
                          T: packing.lengths[s], H: H, NH: NH, HS: HS, headRange: 0..<NH)
            }
        }
    } else {
        parallel.run { k in
            let lo = NH * k / P, hi = NH * (k + 1) / P
            for s in 0..<packing.count {
                attendOne(out: o.p, probs: nil, scratch: sc.p + k * T2, qkv: q.p, offset: packing.offsets[s],
                          T: packing.lengths[s], H: H, NH: NH, HS: HS, headRange: lo..<hi)
            }
        }
    }
}

/// One sequence, the heads in `headRange` (all by default). Exposed for callers that split
/// sequences or heads across threads.
///
/// - Parameters:
///   - probs: `[NH, T, T]` for this sequence, or nil (then `scratch` holds `[T, T]`)
public func attendOne(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>?,
                      scratch: UnsafeMutablePointer<Float>?, qkv: UnsafePointer<Float>,
                      offset: Int, T: Int, H: Int, NH: Int, HS: Int, headRange: Range<Int>? = nil) {
    let heads = headRange ?? 0..<NH
    if T <= attentionKernelMaxLength && HS <= 128 {
        // Short sequences (every query a chat assistant sees): the CPU variant's kernel. A BLAS
        // call per head costs more than the work at these sizes.
        activeKernels.attend(out, qkv, offset, T, H, NH, heads.lowerBound, heads.upperBound,
                             probs.map { $0 + heads.lowerBound * T * T })
        return
    }
    let scale = 1 / Float(HS).squareRoot()
    let rowQKV = 3 * H
    let base = qkv + offset * rowQKV
    for h in heads {
        let P = probs.map { $0 + h * T * T } ?? scratch!
        let Q = base + h * HS, K = base + H + h * HS, V = base + 2 * H + h * HS
        // P[T, T] = Q Kᵀ · scale
        gemm(transB: true, M: T, N: T, K: HS, alpha: scale, A: Q, lda: rowQKV, B: K, ldb: rowQKV, C: P, ldc: T)
        for t in 0..<T { softmaxRow(P + t * T, P + t * T, T) }
        // ctx[T, HS] = P V
        gemm(M: T, N: HS, K: T, A: P, lda: T, B: V, ldb: rowQKV, C: out + offset * H + h * HS, ldc: H)
    }
}

/// Backward of ``attentionForward``.
///
/// With `S = Q Kᵀ·scale`, `P = softmax(S)`, `ctx = P V`:
/// `dV = Pᵀ dctx`, `dP = dctx Vᵀ`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`,
/// `dQ = dS K · scale`, `dK = dSᵀ Q · scale`.
///
/// - Parameters:
///   - dQKV: `[N, 3H]`, overwritten
///   - dOut: `[N, H]`
///   - qkv: `[N, 3H]`, from the forward pass
///   - probs: `[NH · Σ Tᵢ²]`, from the forward pass
///   - scratch: at least `Tmax²` floats
public func attentionBackward(dQKV: Tensor, dOut: Tensor, qkv: Tensor, probs: Tensor,
                              packing: Packing, heads NH: Int, scratch: UnsafeMutablePointer<Float>) {
    let N = packing.totalTokens, H = dOut.shape[1], HS = H / NH
    dQKV.check([N, 3 * H], "dQKV")
    dOut.check([N, H], "dOut")
    qkv.check([N, 3 * H], "qkv")
    probs.check([NH * packing.totalSquares], "probs")
    let scale = 1 / Float(HS).squareRoot()
    let row = 3 * H
    for s in 0..<packing.count {
        let T = packing.lengths[s], o = packing.offsets[s]
        let base = qkv.data + o * row, dbase = dQKV.data + o * row
        for h in 0..<NH {
            let P = probs.data + NH * packing.squareOffsets[s] + h * T * T
            let Q = base + h * HS, K = base + H + h * HS, V = base + 2 * H + h * HS
            let dQ = dbase + h * HS, dK = dbase + H + h * HS, dV = dbase + 2 * H + h * HS
            let dctx = dOut.data + o * H + h * HS
            // dV[T, HS] = Pᵀ dctx
            gemm(transA: true, M: T, N: HS, K: T, A: P, lda: T, B: dctx, ldb: H, C: dV, ldc: row)
            // dP[T, T] = dctx Vᵀ (in scratch), then dS in place
            let dP = scratch
            gemm(transB: true, M: T, N: T, K: HS, A: dctx, lda: H, B: V, ldb: row, C: dP, ldc: T)
            for t in 0..<T {
                let p = P + t * T, d = dP + t * T
                var dot: Float = 0
                for j in 0..<T { dot += p[j] * d[j] }
                for j in 0..<T { d[j] = p[j] * (d[j] - dot) }
            }
            // dQ = dS K · scale; dK = dSᵀ Q · scale
            gemm(M: T, N: HS, K: T, alpha: scale, A: dP, lda: T, B: K, ldb: row, C: dQ, ldc: row)
            gemm(transA: true, M: T, N: HS, K: T, alpha: scale, A: dP, lda: T, B: Q, ldb: row, C: dK, ldc: row)
        }
    }
}
