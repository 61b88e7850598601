// Dimension letters (llm.c's): N rows (tokens, B·T packed), I inputs, O outputs.

/// `out[N, O] = input[N, I] · weightᵀ + bias`, with PyTorch's weight layout `[O, I]`.
///
/// - Parameters:
///   - out: `[N, O]`
///   - input: `[N, I]`
///   - weight: `[O, I]`
///   - bias: `[O]` or nil
public func linearForward(out: Tensor, input: Tensor, weight: Tensor, bias: Tensor?) {
    let N = input.shape[0], I = input.shape[1], O = weight.shape[0]
    input.check([N, I], "input")
    weight.check([O, I], "weight")
    out.check([N, O], "out")
    if let bias {
        bias.check([O], "bias")
        for n in 0..<N { (out.data + n * O).update(from: bias.data, count: O) }
    }
    gemm(transB: true, M: N, N: O, K: I, A: input.data, lda: I, B: weight.data, ldb: I,
         beta: bias == nil ? 0 : 1, C: out.data, ldc: O)
}

/// `out[N, O] = input[N, I] · weightᵀ + bias` choosing the kernel by row count and variant
/// (``smallMThreshold``): ``linearSmallM`` on the packed copy for few rows (where OpenBLAS's
/// per-call packing of the weight dominates) and, on AVX-512, for every row count; OpenBLAS on
/// the `[O, I]` weight otherwise (docs/performance.md).
///
/// - Parameters:
///   - out: `[N, O]`
///   - input: `[N, I]`
///   - weight: `[O, I]`
///   - packed: the same weight packed for few rows (nil: always OpenBLAS)
///   - bias: `[O]` or nil
///   - parallel: threads for the few-rows kernel (OpenBLAS has its own)
public func linearForward(out: Tensor, input: Tensor, weight: Tensor, packed: PackedWeight?, bias: Tensor?,
                          parallel: Parallel = .serial) {
    if let packed, input.shape[0] <= smallMThreshold {
        linearSmallM(out: out, input: input, weight: packed, bias: bias, parallel: parallel)
    } else {
        linearForward(out: out, input: input, weight: weight, bias: bias)
    }
}

/// Backward of ``linearForward(out:input:weight:bias:)``.
///
/// - Parameters:
///   - dInput: `[N, I]`, overwritten (nil: not needed, e.g. the lowest trainable layer)
///   - dWeight: `[O, I]`, accumulated (nil: frozen)
///   - dBias: `[O]`, accumulated (nil: frozen or no bias)
///   - dOut: `[N, O]`
///   - input: `[N, I]`, as in the forward pass
///   - weight: `[O, I]`
public func linearBackward(dInput: Tensor?, dWeight: Tensor?, dBias: Tensor?,
                           dOut: Tensor, input: Tensor, weight: Tensor) {
    let N = input.shape[0], I = input.shape[1], O = weight.shape[0]
    dOut.check([N, O], "dOut")
    weight.check([O, I], "weight")
    if let dInput {
        dInput.check([N, I], "dInput")
        gemm(M: N, N: I, K: O, A: dOut.data, lda: O, B: weight.data, ldb: I, C: dInput.data, ldc: I)
    }
    if let dWeight {
        dWeight.check([O, I], "dWeight")
        gemm(transA: true, M: O, N: I, K: N, A: dOut.data, lda: O, B: input.data, ldb: I, beta: 1, C: dWeight.data, ldc: I)
    }
    if let dBias {
        dBias.check([O], "dBias")
        for n in 0..<N {
            let row = dOut.data + n * O
            for o in 0..<O { dBias.data[o] += row[o] }
        }
    }
}

/// `out += other`, elementwise (residual connections).
public func addInPlace(_ out: Tensor, _ other: Tensor) {
    precondition(out.count == other.count, "addInPlace: \(out.shape) vs \(other.shape)")
    let a = out.data, b = other.data
    for i in 0..<out.count { a[i] += b[i] }
}
