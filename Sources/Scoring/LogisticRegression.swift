import Foundation
import Tensor

/// A multinomial logistic-regression head on sentence vectors.
///
/// Features are standardised (per-dimension mean and standard deviation from the training
/// data, stored with the head) so that one regularisation scale fits any encoder.
/// `logits = W · (x − μ)/σ + b`; W is `[C, D]`, b `[C]`.
public struct LinearHead: Sendable {
    public var weight: [Float]  // [C, D]
    public var bias: [Float]    // [C]
    public var mean: [Float]    // [D]
    public var scale: [Float]   // [D], 1/σ
    public let classes: Int
    public let dimension: Int

    public init(weight: [Float], bias: [Float], mean: [Float], scale: [Float], classes: Int, dimension: Int) {
        precondition(weight.count == classes * dimension && bias.count == classes && mean.count == dimension && scale.count == dimension)
        self.weight = weight
        self.bias = bias
        self.mean = mean
        self.scale = scale
        self.classes = classes
        self.dimension = dimension
    }

    /// Logits for `[N, D]` vectors into `[N, C]`.
    public func logits(_ x: [Float], count N: Int) -> [Float] {
        let D = dimension, C = classes
        var z = [Float](repeating: 0, count: N * D)
        for n in 0..<N { for d in 0..<D { z[n * D + d] = (x[n * D + d] - mean[d]) * scale[d] } }
        var out = [Float](repeating: 0, count: N * C)
        for n in 0..<N { for c in 0..<C { out[n * C + c] = bias[c] } }
        z.withUnsafeBufferPointer { zp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { op in
                    gemm(transB: true, M: N, N: C, K: D, A: zp.baseAddress!, lda: D, B: wp.baseAddress!, ldb: D, beta: 1, C: op.baseAddress!, ldc: C)
                }
            }
        }
        return out
    }
}

/// Training of ``LinearHead`` by L-BFGS on the L2-regularised mean cross-entropy.
public enum LogisticRegression {
    public struct Fit: Sendable {
        public var head: LinearHead
        public var lambda: Double
        public var iterations: Int
        public var converged: Bool
        public var trainLoss: Double
    }

    /// Per-dimension mean and 1/std (a floor keeps constant dimensions harmless).
    public static func standardization(_ x: [Float], count N: Int, dimension D: Int) -> (mean: [Float], scale: [Float]) {
        var mean = [Double](repeating: 0, count: D), sq = [Double](repeating: 0, count: D)
        for n in 0..<N { for d in 0..<D { let v = Double(x[n * D + d]); mean[d] += v; sq[d] += v * v } }
        var m = [Float](repeating: 0, count: D), s = [Float](repeating: 1, count: D)
        for d in 0..<D {
            let mu = mean[d] / Double(N)
            let variance = max(sq[d] / Double(N) - mu * mu, 0)
            m[d] = Float(mu)
            s[d] = Float(1 / max(variance.squareRoot(), 1e-6))
        }
        return (m, s)
    }

    /// Fits W and b with penalty `λ/2 · ‖W‖²` (the bias is not penalised).
    ///
    /// - Parameters:
    ///   - x: `[N, D]` vectors
    ///   - labels: N class indices in `0..<classes`
    ///   - start: a head to start from (warm start), or nil for zeros
    public static func fit(_ x: [Float], labels: [Int], classes C: Int, dimension D: Int, lambda: Double,
                           standardization: (mean: [Float], scale: [Float])? = nil, start: LinearHead? = nil,
                           maxIterations: Int = 500) -> Fit {
        let N = labels.count
        precondition(x.count == N * D, "x: \(x.count) values for \(N) × \(D)")
        let std = standardization ?? Self.standardization(x, count: N, dimension: D)
        var z = [Float](repeating: 0, count: N * D)
        for n in 0..<N { for d in 0..<D { z[n * D + d] = (x[n * D + d] - std.mean[d]) * std.scale[d] } }
        let P = C * D + C
        var params = [Double](repeating: 0, count: P)
        if let start {
            for i in 0..<(C * D) { params[i] = Double(start.weight[i]) }
            for c in 0..<C { params[C * D + c] = Double(start.bias[c]) }
        }
        var w = [Float](repeating: 0, count: C * D)
        var logits = [Float](repeating: 0, count: N * C)
        var gradW = [Float](repeating: 0, count: C * D)
        let invN = 1 / Float(N)
        var lbfgs = LBFGS()
        lbfgs.maxIterations = maxIterations
        let outcome = lbfgs.minimize(&params) { p, grad in
            for i in 0..<(C * D) { w[i] = Float(p[i]) }
            for n in 0..<N { for c in 0..<C { logits[n * C + c] = Float(p[C * D + c]) } }
            z.withUnsafeBufferPointer { zp in
                w.withUnsafeBufferPointer { wp in
                    logits.withUnsafeMutableBufferPointer { lp in
                        gemm(transB: true, M: N, N: C, K: D, A: zp.baseAddress!, lda: D, B: wp.baseAddress!, ldb: D, beta: 1, C: lp.baseAddress!, ldc: C)
                    }
                }
            }
            // Softmax in place; loss; logits become dL/dlogits = (p − y)/N.
            var loss = 0.0
            var gb = [Double](repeating: 0, count: C)
            for n in 0..<N {
                let row = n * C
                var m = -Float.infinity
                for c in 0..<C { m = max(m, logits[row + c]) }
                var sum: Float = 0
                for c in 0..<C { let e = expf(logits[row + c] - m); logits[row + c] = e; sum += e }
                let y = labels[n]
                loss -= Double(logf(max(logits[row + y] / sum, 1e-30)))
                for c in 0..<C {
                    var pr = logits[row + c] / sum
                    if c == y { pr -= 1 }
                    logits[row + c] = pr * invN
                    gb[c] += Double(pr * invN)
                }
            }
            loss /= Double(N)
            // dW[C, D] = dLogitsᵀ[C, N] · z[N, D]
            logits.withUnsafeBufferPointer { lp in
                z.withUnsafeBufferPointer { zp in
                    gradW.withUnsafeMutableBufferPointer { gp in
                        gemm(transA: true, M: C, N: D, K: N, A: lp.baseAddress!, lda: C, B: zp.baseAddress!, ldb: D, C: gp.baseAddress!, ldc: D)
                    }
                }
            }
            var penalty = 0.0
            for i in 0..<(C * D) {
                penalty += p[i] * p[i]
                grad[i] = Double(gradW[i]) + lambda * p[i]
            }
            for c in 0..<C { grad[C * D + c] = gb[c] }
            return loss + 0.5 * lambda * penalty
        }
        let head = LinearHead(weight: (0..<(C * D)).map { Float(params[$0]) }, bias: (0..<C).map { Float(params[C * D + $0]) },
                              mean: std.mean, scale: std.scale, classes: C, dimension: D)
        return Fit(head: head, lambda: lambda, iterations: outcome.iterations, converged: outcome.converged, trainLoss: outcome.value)
    }
}
