import Foundation
import Tensor

/// Out-of-scope statistics of a version: class means and a shared covariance for the
/// Mahalanobis distance (Lee et al., 2018), and the training vectors for nearest neighbours.
public struct OutOfScopeModel: Sendable {
    public let dimension: Int
    public let classes: Int
    /// `[C, D]` class means.
    public let means: [Float]
    /// `[D, D]` inverse of the shared (shrunk) covariance.
    public let precision: [Float]
    /// `[N, D]` training vectors, L2-normalised, for cosine nearest neighbours.
    public let neighbours: [Float]
    public let neighbourCount: Int
    /// Neighbours averaged for the kNN score.
    public let k: Int
    /// `[C, D]` precision · mean of each class, and `[C]` meanᵀ · precision · mean, so that
    /// the distance to every class costs one D×D product per input, not one per class.
    let precisionMeans: [Float]
    let meanQuadratic: [Float]

    public init(dimension: Int, classes: Int, means: [Float], precision: [Float], neighbours: [Float], k: Int = 5) {
        self.dimension = dimension
        self.classes = classes
        self.means = means
        self.precision = precision
        self.neighbours = neighbours
        self.neighbourCount = neighbours.count / max(1, dimension)
        self.k = k
        var pm = [Float](repeating: 0, count: classes * dimension)
        precision.withUnsafeBufferPointer { pp in
            means.withUnsafeBufferPointer { mp in
                pm.withUnsafeMutableBufferPointer { op in
                    // P is symmetric: (P μ_c) for all c = μ · P, [C, D].
                    gemm(M: classes, N: dimension, K: dimension, A: mp.baseAddress!, lda: dimension, B: pp.baseAddress!, ldb: dimension,
                         C: op.baseAddress!, ldc: dimension)
                }
            }
        }
        precisionMeans = pm
        meanQuadratic = (0..<classes).map { c in
            var q: Float = 0
            for d in 0..<dimension { q += means[c * dimension + d] * pm[c * dimension + d] }
            return q
        }
    }

    /// Both out-of-scope scores for `[B, D]` vectors: the smallest squared Mahalanobis distance
    /// to a class mean, `xᵀPx − 2 xᵀPμ_c + μ_cᵀPμ_c`, and 1 − the mean cosine similarity to the
    /// k nearest training vectors. Matrix products throughout.
    public func scores(_ x: [Float], count B: Int) -> (mahalanobis: [Float], neighbour: [Float]) {
        let D = dimension, C = classes, N = neighbourCount
        var px = [Float](repeating: 0, count: B * D), cross = [Float](repeating: 0, count: B * C)
        x.withUnsafeBufferPointer { xp in
            precision.withUnsafeBufferPointer { pp in
                px.withUnsafeMutableBufferPointer { op in
                    gemm(M: B, N: D, K: D, A: xp.baseAddress!, lda: D, B: pp.baseAddress!, ldb: D, C: op.baseAddress!, ldc: D)
                }
            }
            precisionMeans.withUnsafeBufferPointer { mp in
                cross.withUnsafeMutableBufferPointer { op in
                    gemm(transB: true, M: B, N: C, K: D, A: xp.baseAddress!, lda: D, B: mp.baseAddress!, ldb: D, C: op.baseAddress!, ldc: C)
                }
            }
        }
        var maha = [Float](repeating: 0, count: B)
        for b in 0..<B {
            var q: Float = 0
            for d in 0..<D { q += x[b * D + d] * px[b * D + d] }
            var best = Float.infinity
            for c in 0..<C { best = min(best, q - 2 * cross[b * C + c] + meanQuadratic[c]) }
            maha[b] = max(0, best)
        }
        var nearest = [Float](repeating: 1, count: B)
        if N > 0 {
            let u = normalizedRows(x, dimension: D)
            var sims = [Float](repeating: 0, count: B * N)
            u.withUnsafeBufferPointer { up in
                neighbours.withUnsafeBufferPointer { np in
                    sims.withUnsafeMutableBufferPointer { sp in
                        gemm(transB: true, M: B, N: N, K: D, A: up.baseAddress!, lda: D, B: np.baseAddress!, ldb: D, C: sp.baseAddress!, ldc: N)
                    }
                }
            }
            let kk = min(k, N)
            for b in 0..<B {
                var top = [Float](repeating: -2, count: kk)
                for j in 0..<N {
                    let v = sims[b * N + j]
                    if v > top[kk - 1] {
                        var i = kk - 1
                        while i > 0 && top[i - 1] < v { top[i] = top[i - 1]; i -= 1 }
                        top[i] = v
                    }
                }
                nearest[b] = 1 - top.reduce(0, +) / Float(kk)
            }
        }
        return (maha, nearest)
    }

    /// Fits from `[N, D]` vectors and labels. The covariance is shrunk toward its mean diagonal
    /// (`(1−α)Σ + α·tr(Σ)/D·I`, α = 0.1) so that it inverts even with fewer examples than dimensions.
    public static func fit(_ x: [Float], labels: [Int], classes C: Int, dimension D: Int, shrinkage: Double = 0.1, k: Int = 5) -> OutOfScopeModel {
        let N = labels.count
        var means = [Double](repeating: 0, count: C * D), counts = [Int](repeating: 0, count: C)
        for n in 0..<N {
            counts[labels[n]] += 1
            for d in 0..<D { means[labels[n] * D + d] += Double(x[n * D + d]) }
        }
        for c in 0..<C where counts[c] > 0 { for d in 0..<D { means[c * D + d] /= Double(counts[c]) } }
        // Shared covariance of the centred vectors.
        var centred = [Float](repeating: 0, count: N * D)
        for n in 0..<N { for d in 0..<D { centred[n * D + d] = x[n * D + d] - Float(means[labels[n] * D + d]) } }
        var cov = [Float](repeating: 0, count: D * D)
        centred.withUnsafeBufferPointer { cp in
            cov.withUnsafeMutableBufferPointer { vp in
                gemm(transA: true, M: D, N: D, K: N, alpha: 1 / Float(max(1, N - 1)), A: cp.baseAddress!, lda: D, B: cp.baseAddress!, ldb: D, C: vp.baseAddress!, ldc: D)
            }
        }
        var trace = 0.0
        for d in 0..<D { trace += Double(cov[d * D + d]) }
        var sigma = cov.map { Double($0) * (1 - shrinkage) }
        for d in 0..<D { sigma[d * D + d] += shrinkage * trace / Double(D) + 1e-9 }
        let precision = invertSPD(sigma, D).map { Float($0) }
        return OutOfScopeModel(dimension: D, classes: C, means: means.map { Float($0) }, precision: precision,
                               neighbours: normalizedRows(x, dimension: D), k: k)
    }

    /// min over classes of the squared Mahalanobis distance of one vector (see ``scores(_:count:)``).
    public func mahalanobis(_ v: ArraySlice<Float>) -> Float { scores(Array(v), count: 1).mahalanobis[0] }

    /// 1 − the mean cosine similarity of one vector to its k nearest training vectors.
    public func neighbourDistance(_ v: ArraySlice<Float>) -> Float { scores(Array(v), count: 1).neighbour[0] }
}

/// Each `D`-long row divided by its L2 norm.
func normalizedRows(_ x: [Float], dimension D: Int) -> [Float] {
    var u = x
    for r in 0..<(x.count / max(1, D)) {
        var s: Float = 0
        for d in 0..<D { s += u[r * D + d] * u[r * D + d] }
        let inv = 1 / max(s.squareRoot(), 1e-12)
        for d in 0..<D { u[r * D + d] *= inv }
    }
    return u
}

/// Inverse of a symmetric positive-definite matrix by Cholesky, in Double.
func invertSPD(_ a: [Double], _ n: Int) -> [Double] {
    var L = [Double](repeating: 0, count: n * n)
    for j in 0..<n {
        var s = a[j * n + j]
        for k in 0..<j { s -= L[j * n + k] * L[j * n + k] }
        let ljj = (max(s, 1e-12)).squareRoot()
        L[j * n + j] = ljj
        for i in (j + 1)..<max(j + 1, n) {
            var t = a[i * n + j]
            for k in 0..<j { t -= L[i * n + k] * L[j * n + k] }
            L[i * n + j] = t / ljj
        }
    }
    // Inverse of L (lower triangular), then A⁻¹ = L⁻ᵀ L⁻¹.
    var Li = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        Li[i * n + i] = 1 / L[i * n + i]
        for j in 0..<i {
            var s = 0.0
            for k in j..<i { s -= L[i * n + k] * Li[k * n + j] }
            Li[i * n + j] = s / L[i * n + i]
        }
    }
    var inv = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in 0...i {
            var s = 0.0
            for k in i..<n { s += Li[k * n + i] * Li[k * n + j] }
            inv[i * n + j] = s
            inv[j * n + i] = s
        }
    }
    return inv
}

/// The score at which `recall` of in-scope examples stay below (score ≤ threshold is in scope).
public func thresholdKeeping(recall: Double, inScopeScores: [Float]) -> Float {
    guard !inScopeScores.isEmpty else { return .infinity }
    let sorted = inScopeScores.sorted()
    let i = min(sorted.count - 1, max(0, Int((recall * Double(sorted.count)).rounded(.up)) - 1))
    return sorted[i]
}

/// Area under the ROC curve for scores where higher means positive (ties count half).
public func auroc(positives: [Float], negatives: [Float]) -> Double {
    guard !positives.isEmpty, !negatives.isEmpty else { return .nan }
    let all = positives.map { ($0, true) } + negatives.map { ($0, false) }
    let sorted = all.sorted { $0.0 < $1.0 }
    var rankSum = 0.0
    var i = 0
    while i < sorted.count {
        var j = i
        while j + 1 < sorted.count && sorted[j + 1].0 == sorted[i].0 { j += 1 }
        let avgRank = Double(i + j) / 2 + 1
        for k in i...j where sorted[k].1 { rankSum += avgRank }
        i = j + 1
    }
    let np = Double(positives.count), nn = Double(negatives.count)
    return (rankSum - np * (np + 1) / 2) / (np * nn)
}
