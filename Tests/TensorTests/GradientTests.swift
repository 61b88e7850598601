import Foundation
import Testing
@testable import Tensor

/// Deterministic random numbers for test tensors.
struct Rand {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        let t = Tensor(shape: shape)
        for i in 0..<t.count { t[i] = uniform() * scale }
        return t
    }
}

/// Checks analytic gradients against central finite differences.
///
/// The scalar checked is `L = Σ out ⊙ G` for a fixed random `G`, so `dOut = G`.
/// `run` computes the forward output; `grads` pairs each input with its analytic gradient.
func gradCheck(_ name: String, eps: Float = 1e-2, tolerance: Float = 2e-2, samples: Int = 24,
               inputs: [(String, Tensor, Tensor)], forward: () -> Tensor,
               sourceLocation: SourceLocation = #_sourceLocation) {
    let G = forward()  // shape of out; values replaced below
    var rng = Rand(1234)
    let g = (0..<G.count).map { _ in rng.uniform() }
    func loss() -> Double {
        let out = forward()
        var s = 0.0
        for i in 0..<out.count { s += Double(out[i]) * Double(g[i]) }
        return s
    }
    for (inputName, x, analytic) in inputs {
        precondition(x.count == analytic.count)
        var worst: Float = 0
        for k in 0..<min(samples, x.count) {
            let i = x.count <= samples ? k : Int(rng.next() % UInt64(x.count))
            let saved = x[i]
            x[i] = saved + eps
            let lp = loss()
            x[i] = saved - eps
            let lm = loss()
            x[i] = saved
            let numeric = Float((lp - lm) / Double(2 * eps))
            let a = analytic[i]
            let err = abs(a - numeric) / max(1, abs(a), abs(numeric))
            worst = max(worst, err)
        }
        #expect(worst < tolerance, "\(name) d\(inputName): worst relative error \(worst)", sourceLocation: sourceLocation)
    }
}

/// The `G` that ``gradCheck`` uses for an output of `count` elements, as `dOut`.
func upstream(_ shape: [Int]) -> Tensor {
    var rng = Rand(1234)
    let t = Tensor(shape: shape)
    for i in 0..<t.count { t[i] = rng.uniform() }
    return t
}

@Suite("Kernels: backward passes against finite differences")
struct GradientTests {
    @Test("linear")
    func linear() {
        var r = Rand(1)
        let x = r.tensor([5, 7]), w = r.tensor([4, 7]), b = r.tensor([4])
        let out = Tensor(shape: [5, 4])
        let fwd = { linearForward(out: out, input: x, weight: w, bias: b); return out }
        _ = fwd()
        let dx = Tensor(shape: [5, 7]), dw = Tensor(shape: [4, 7]), db = Tensor(shape: [4])
        linearBackward(dInput: dx, dWeight: dw, dBias: db, dOut: upstream([5, 4]), input: x, weight: w)
        gradCheck("linear", inputs: [("x", x, dx), ("w", w, dw), ("b", b, db)], forward: fwd)
    }

    @Test("layer norm")
    func layerNorm() {
        var r = Rand(2)
        let x = r.tensor([4, 16], scale: 2), w = r.tensor([16]), b = r.tensor([16])
        let out = Tensor(shape: [4, 16]), mean = Tensor(shape: [4]), rstd = Tensor(shape: [4])
        let fwd = { layerNormForward(out: out, mean: mean, rstd: rstd, input: x, weight: w, bias: b, eps: 1e-5); return out }
        _ = fwd()
        let dx = Tensor(shape: [4, 16]), dw = Tensor(shape: [16]), db = Tensor(shape: [16])
        layerNormBackward(dInput: dx, dWeight: dw, dBias: db, dOut: upstream([4, 16]), input: x, weight: w, mean: mean, rstd: rstd)
        gradCheck("layerNorm", eps: 1e-3, inputs: [("x", x, dx), ("w", w, dw), ("b", b, db)], forward: fwd)
    }

    @Test("GELU (erf form)")
    func gelu() {
        var r = Rand(3)
        let x = r.tensor([3, 20], scale: 3)
        let out = Tensor(shape: [3, 20])
        let fwd = { geluForward(out: out, input: x); return out }
        _ = fwd()
        let dx = Tensor(shape: [3, 20])
        geluBackward(dInput: dx, dOut: upstream([3, 20]), input: x)
        gradCheck("gelu", eps: 1e-3, inputs: [("x", x, dx)], forward: fwd)
        // The erf form, not the tanh approximation: GELU(1) = 0.8413447.
        let one = Tensor(shape: [1], values: [1]), y = Tensor(shape: [1])
        geluForward(out: y, input: one)
        #expect(abs(y[0] - 0.8413447) < 1e-6)
    }

    @Test("the fast erf stays within 5e-7 of libm's erff, and GELU within 1e-6, over [-10, 10]")
    func fastErfAccuracy() {
        var worstErf: Float = 0, worstGelu: Float = 0
        let n = 200_001
        let xs = Tensor(shape: [n]), ys = Tensor(shape: [n])
        for i in 0..<n { xs[i] = -10 + 20 * Float(i) / Float(n - 1) }
        geluForward(out: ys, input: xs)
        for i in 0..<n {
            worstErf = max(worstErf, abs(fastErf(xs[i]) - erff(xs[i])))
            worstGelu = max(worstGelu, abs(ys[i] - geluReference(xs[i])))
        }
        #expect(worstErf < 5e-7, "erf error \(worstErf)")
        #expect(worstGelu < 1e-6, "gelu error \(worstGelu)")
    }

    @Test("GELU's backward and its exp stay within 1e-6 / 3e-7 of the libm forms over [-12, 12]")
    func geluBackwardAccuracy() {
        let n = 240_001
        let xs = Tensor(shape: [n]), ones = Tensor(shape: [n]), dx = Tensor(shape: [n])
        for i in 0..<n { xs[i] = -12 + 24 * Float(i) / Float(n - 1); ones[i] = 1 }
        geluBackward(dInput: dx, dOut: ones, input: xs)
        var worst: Float = 0, worstExp: Float = 0
        for i in 0..<n {
            worst = max(worst, abs(dx[i] - geluDerivativeReference(xs[i])))
            let y = -0.5 * xs[i] * xs[i]
            let e = expf(y)
            if e > 1e-30 { worstExp = max(worstExp, abs(fastExpNonPositive(y) - e) / e) }
        }
        #expect(worst < 1e-6, "gelu derivative error \(worst)")
        #expect(worstExp < 3e-7, "exp relative error \(worstExp)")
        #expect(fastExpNonPositive(0) == 1 && fastExpNonPositive(-200) < 1e-37 && fastExpNonPositive(.nan).isNaN)
    }

    @Test("softmax")
    func softmax() {
        var r = Rand(4)
        let x = r.tensor([3, 6], scale: 3)
        let out = Tensor(shape: [3, 6])
        let fwd = { softmaxForward(out: out, input: x); return out }
        _ = fwd()
        let dx = Tensor(shape: [3, 6])
        softmaxBackward(dInput: dx, dOut: upstream([3, 6]), out: out)
        gradCheck("softmax", eps: 1e-3, inputs: [("x", x, dx)], forward: fwd)
    }

    @Test("softmax cross-entropy, plain and weighted")
    func crossEntropy() {
        var r = Rand(5)
        let logits = r.tensor([4, 5], scale: 2)
        let labels = [0, 3, 4, 1]
        for weights: [Float]? in [nil, [1, 2, 0.5, 3]] {
            let probs = Tensor(shape: [4, 5])
            let loss = { () -> Tensor in
                let l = crossEntropyForward(probs: probs, logits: logits, labels: labels, weights: weights)
                return Tensor(shape: [1], values: [l])
            }
            _ = loss()
            let d = Tensor(shape: [4, 5])
            crossEntropyBackward(dLogits: d, probs: probs, labels: labels, weights: weights)
            // gradCheck multiplies by G[0]; scale the analytic gradient the same way.
            let g0 = upstream([1])[0]
            for i in 0..<d.count { d[i] *= g0 }
            gradCheck("crossEntropy", eps: 1e-3, inputs: [("logits", logits, d)], forward: loss)
        }
    }

    @Test("multi-head attention over packed sequences of different lengths")
    func attention() {
        var r = Rand(6)
        let packing = Packing(lengths: [3, 5, 1])
        let H = 8, NH = 2, N = packing.totalTokens
        let qkv = r.tensor([N, 3 * H])
        let out = Tensor(shape: [N, H]), probs = Tensor(shape: [NH * packing.totalSquares])
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { scratch.deallocate() }
        let fwd = { attentionForward(out: out, probs: probs, scratch: nil, qkv: qkv, packing: packing, heads: NH); return out }
        _ = fwd()
        let d = Tensor(shape: [N, 3 * H])
        attentionBackward(dQKV: d, dOut: upstream([N, H]), qkv: qkv, probs: probs, packing: packing, heads: NH, scratch: scratch)
        gradCheck("attention", eps: 1e-3, samples: 60, inputs: [("qkv", qkv, d)], forward: fwd)

        // Each sequence attends only to itself: changing sequence 0 leaves sequence 1's output alone.
        _ = fwd()
        let before = Array(out.values[(3 * H)..<(8 * H)])
        qkv[0] += 5
        _ = fwd()
        #expect(Array(out.values[(3 * H)..<(8 * H)]) == before)
        // Inference without the cache gives the same output.
        let out2 = Tensor(shape: [N, H])
        attentionForward(out: out2, probs: nil, scratch: scratch, qkv: qkv, packing: packing, heads: NH)
        #expect(out2.values == out.values)
    }

    @Test("mean and CLS pooling, and L2 normalisation")
    func pooling() {
        var r = Rand(7)
        let packing = Packing(lengths: [2, 4, 1])
        let x = r.tensor([7, 6])
        let pooled = Tensor(shape: [3, 6])
        let fwd = { meanPoolForward(out: pooled, input: x, packing: packing); return pooled }
        _ = fwd()
        let dx = Tensor(shape: [7, 6])
        meanPoolBackward(dInput: dx, dOut: upstream([3, 6]), packing: packing)
        gradCheck("meanPool", eps: 1e-3, inputs: [("x", x, dx)], forward: fwd)

        let cls = Tensor(shape: [3, 6])
        let cfwd = { clsPoolForward(out: cls, input: x, packing: packing); return cls }
        _ = cfwd()
        let dc = Tensor(shape: [7, 6])
        clsPoolBackward(dInput: dc, dOut: upstream([3, 6]), packing: packing)
        gradCheck("clsPool", eps: 1e-3, inputs: [("x", x, dc)], forward: cfwd)

        let v = r.tensor([3, 6])
        let y = Tensor(shape: [3, 6]), norms = Tensor(shape: [3])
        let nfwd = { l2NormalizeForward(out: y, norms: norms, input: v); return y }
        _ = nfwd()
        let dv = Tensor(shape: [3, 6])
        l2NormalizeBackward(dInput: dv, dOut: upstream([3, 6]), out: y, norms: norms)
        gradCheck("l2Normalize", eps: 1e-3, inputs: [("x", v, dv)], forward: nfwd)
        var s: Float = 0
        for h in 0..<6 { s += y[h] * y[h] }
        #expect(abs(s - 1) < 1e-6)
    }

    @Test("OpenBLAS gemm equals the naive reference in every transpose combination")
    func gemmMatchesNaive() {
        var r = Rand(8)
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let M = 7, N = 5, K = 9
            let A = r.tensor(ta ? [K, M] : [M, K]), B = r.tensor(tb ? [N, K] : [K, N])
            let C1 = r.tensor([M, N]), C2 = C1.copy()
            gemm(transA: ta, transB: tb, M: M, N: N, K: K, alpha: 0.5, A: A.data, lda: ta ? M : K, B: B.data, ldb: tb ? K : N, beta: 2, C: C1.data, ldc: N)
            gemmNaive(transA: ta, transB: tb, M: M, N: N, K: K, alpha: 0.5, A: A.data, lda: ta ? M : K, B: B.data, ldb: tb ? K : N, beta: 2, C: C2.data, ldc: N)
            for i in 0..<C1.count { #expect(abs(C1[i] - C2[i]) < 1e-4) }
        }
    }
}

@Suite("Few-rows matrix kernel")
struct SmallGEMMTests {
    @Test("equals OpenBLAS for every row count 1…14, ragged column counts, with and without bias, 1 and 2 threads")
    func matchesBLAS() {
        var r = Rand(9)
        for (I, O) in [(16, 16), (24, 40), (7, 33), (384, 96)] {
            let w = r.tensor([O, I]), bias = r.tensor([O])
            let packed = PackedWeight(w)
            for M in 1...14 {
                let x = r.tensor([M, I])
                for b in [nil, bias] {
                    let ref = Tensor(shape: [M, O])
                    linearForward(out: ref, input: x, weight: w, bias: b)
                    for threads in [1, 2] {
                        let y = Tensor(shape: [M, O])
                        linearSmallM(out: y, input: x, weight: packed, bias: b, parallel: Parallel(threads: threads))
                        var worst: Float = 0
                        for i in 0..<y.count { worst = max(worst, abs(y[i] - ref[i])) }
                        #expect(worst < 1e-3, "M=\(M) I=\(I) O=\(O) threads=\(threads): \(worst)")
                    }
                }
            }
        }
    }

    @Test("the packed path agrees with OpenBLAS for many rows too (taken on AVX-512 at every row count)")
    func packedManyRows() {
        var r = Rand(10)
        let I = 384, O = 160
        let w = r.tensor([O, I]), bias = r.tensor([O]), packed = PackedWeight(w)
        for M in [63, 64, 65, 200, 481] {
            let x = r.tensor([M, I])
            let ref = Tensor(shape: [M, O]), y = Tensor(shape: [M, O])
            linearForward(out: ref, input: x, weight: w, bias: bias)
            linearForward(out: y, input: x, weight: w, packed: packed, bias: bias, parallel: Parallel(threads: 2))
            var worst: Float = 0
            for i in 0..<y.count { worst = max(worst, abs(y[i] - ref[i])) }
            #expect(worst < 1e-3, "M=\(M): \(worst) (threshold \(smallMThreshold), kernels \(Kernels.active))")
        }
        #expect(smallMThreshold == (Kernels.active == .avx512 ? Int.max : 64))
    }
}

@Suite("LoRA adapters")
struct LoRATests {
    @Test("an untrained adapter changes nothing; with B non-zero its gradients match finite differences")
    func lora() {
        var r = Rand(11)
        let N = 5, I = 7, O = 6, R = 3
        let x = r.tensor([N, I]), w = r.tensor([O, I]), bias = r.tensor([O])
        let adapter = LoRAAdapter(inputs: I, outputs: O, rank: R, alpha: 6, seed: 1)
        let base = Tensor(shape: [N, O]), out = Tensor(shape: [N, O]), down = Tensor(shape: [N, R])
        linearForward(out: base, input: x, weight: w, bias: bias)
        linearForward(out: out, input: x, weight: w, bias: bias)
        adapter.forwardAdd(out: out, down: down, input: x)
        #expect(out.values == base.values)
        for i in 0..<adapter.b.count { adapter.b[i] = r.uniform() }
        let fwd = { () -> Tensor in
            linearForward(out: out, input: x, weight: w, bias: bias)
            adapter.forwardAdd(out: out, down: down, input: x)
            return out
        }
        _ = fwd()
        let dA = Tensor(shape: [R, I]), dB = Tensor(shape: [O, R]), dx = Tensor(shape: [N, I])
        let G = upstream([N, O])
        linearBackward(dInput: dx, dWeight: nil, dBias: nil, dOut: G, input: x, weight: w)
        adapter.backward(dA: dA, dB: dB, dInput: dx, dOut: G, down: down, input: x)
        gradCheck("lora", eps: 1e-3, inputs: [("A", adapter.a, dA), ("B", adapter.b, dB), ("x", x, dx)], forward: fwd)
    }
}
