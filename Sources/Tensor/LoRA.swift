// N rows, I inputs, O outputs, R the adapter's rank.

/// A low-rank adapter on a frozen linear layer (Hu et al., 2021): the layer computes
/// `x Wᵀ + b + (α/R) · (x Aᵀ) Bᵀ`. A is `[R, I]`, B is `[O, R]`, and B starts at zero so an
/// untrained adapter changes nothing. PEFT stores them as `lora_A.weight` and `lora_B.weight`.
public final class LoRAAdapter {
    public let a: Tensor  // [R, I]
    public let b: Tensor  // [O, R]
    public let rank: Int
    public let alpha: Float
    public var scale: Float { alpha / Float(rank) }
    public var inputs: Int { a.shape[1] }
    public var outputs: Int { b.shape[0] }

    /// A with small seeded values (a scaled uniform, as PEFT's Kaiming-uniform), B zero.
    public init(inputs I: Int, outputs O: Int, rank R: Int, alpha: Float, seed: UInt64) {
        rank = R
        self.alpha = alpha
        a = Tensor(shape: [R, I])
        b = Tensor(shape: [O, R])
        var s = seed &+ 0x9E37_79B9_7F4A_7C15
        let bound = 1 / Float(I).squareRoot()
        for i in 0..<a.count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            a[i] = (Float(s >> 40) / Float(1 << 24) * 2 - 1) * bound
        }
    }

    /// An adapter with given matrices (a restored checkpoint).
    public init(a: Tensor, b: Tensor, alpha: Float) {
        precondition(a.shape.count == 2 && b.shape.count == 2 && a.shape[0] == b.shape[1], "lora A \(a.shape), B \(b.shape)")
        self.a = a
        self.b = b
        rank = a.shape[0]
        self.alpha = alpha
    }

    /// Adds the adapter's term to `out`, keeping `x Aᵀ` for the backward pass.
    ///
    /// - Parameters:
    ///   - out: `[N, O]`, the frozen layer's output; the adapter's term is added
    ///   - down: `[N, R]`, receives `x Aᵀ`
    ///   - input: `[N, I]`
    public func forwardAdd(out: Tensor, down: Tensor, input: Tensor) {
        out.check([input.shape[0], outputs], "out")
        forwardAdd(out: out.data, ldOut: outputs, down: down, input: input)
    }

    /// As above, into O columns of a wider output whose rows are `ldOut` apart (one of Q, K, V
    /// in a fused projection's output).
    public func forwardAdd(out: UnsafeMutablePointer<Float>, ldOut: Int, down: Tensor, input: Tensor) {
        let N = input.shape[0], I = input.shape[1], O = outputs, R = rank
        input.check([N, inputs], "input"); down.check([N, R], "down")
        precondition(ldOut >= O)
        gemm(transB: true, M: N, N: R, K: I, A: input.data, lda: I, B: a.data, ldb: I, C: down.data, ldc: R)
        gemm(transB: true, M: N, N: O, K: R, alpha: scale, A: down.data, lda: R, B: b.data, ldb: R, beta: 1, C: out, ldc: ldOut)
    }

    /// Backward of ``forwardAdd(out:down:input:)``: accumulates into `dA`, `dB` and adds the
    /// adapter's share to `dInput` (which already holds the frozen layer's share), if given.
    ///
    /// - Parameters:
    ///   - dA: `[R, I]`, dB: `[O, R]`, accumulated
    ///   - dOut: `[N, O]`
    ///   - down: `[N, R]`, from the forward pass
    ///   - input: `[N, I]`
    public func backward(dA: Tensor, dB: Tensor, dInput: Tensor?, dOut: Tensor, down: Tensor, input: Tensor) {
        dOut.check([input.shape[0], outputs], "dOut")
        backward(dA: dA, dB: dB, dInput: dInput, dOut: dOut.data, ldOut: outputs, down: down, input: input)
    }

    /// As above, with the output's gradient in O columns of a wider matrix (rows `ldOut` apart).
    public func backward(dA: Tensor, dB: Tensor, dInput: Tensor?, dOut: UnsafePointer<Float>, ldOut: Int, down: Tensor, input: Tensor) {
        let N = input.shape[0], I = input.shape[1], O = outputs, R = rank
        dA.check([R, I], "dA"); dB.check([O, R], "dB")
        // dB += scale · dOutᵀ · down
        gemm(transA: true, M: O, N: R, K: N, alpha: scale, A: dOut, lda: ldOut, B: down.data, ldb: R, beta: 1, C: dB.data, ldc: R)
        // dDown = scale · dOut · B   [N, R]
        let dDown = Tensor(shape: [N, R])
        gemm(M: N, N: R, K: O, alpha: scale, A: dOut, lda: ldOut, B: b.data, ldb: R, C: dDown.data, ldc: R)
        // dA += dDownᵀ · x
        gemm(transA: true, M: R, N: I, K: N, A: dDown.data, lda: R, B: input.data, ldb: I, beta: 1, C: dA.data, ldc: I)
        // dx += dDown · A
        if let dInput {
            dInput.check([N, I], "dInput")
            gemm(M: N, N: I, K: R, A: dDown.data, lda: R, B: a.data, ldb: I, beta: 1, C: dInput.data, ldc: I)
        }
    }

    /// Adds `scale · B A` to rows `[row, row + O)` of a frozen weight `[*, I]`: the merged
    /// weight that serves the adapted layer at no extra cost.
    public func merge(into weight: Tensor, row: Int = 0) {
        let I = inputs, O = outputs
        precondition(weight.shape.count == 2 && weight.shape[1] == I && weight.shape[0] >= row + O, "merge into \(weight.shape) at row \(row)")
        gemm(M: O, N: I, K: rank, alpha: scale, A: b.data, lda: rank, B: a.data, ldb: I, beta: 1, C: weight.data + row * I, ldc: I)
    }
}
