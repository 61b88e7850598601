/// Limited-memory BFGS with a backtracking (Armijo) line search, in Double.
///
/// Minimises `f` given a function that returns the value and writes the gradient.
public struct LBFGS {
    public var history = 10
    public var maxIterations = 500
    /// Stop when the largest gradient component falls below this.
    public var gradientTolerance = 1e-5
    /// Stop when the loss improves by less than this, relatively.
    public var relativeTolerance = 1e-10

    public struct Outcome: Sendable {
        public var iterations: Int
        public var value: Double
        public var gradientNorm: Double
        public var converged: Bool
    }

    public init() {}

    /// - Parameters:
    ///   - x: the starting point; overwritten with the minimiser
    ///   - evaluate: returns f(x) and writes ∇f(x) into its second argument
    public func minimize(_ x: inout [Double], _ evaluate: ([Double], inout [Double]) -> Double) -> Outcome {
        let n = x.count
        var g = [Double](repeating: 0, count: n)
        var f = evaluate(x, &g)
        var s: [[Double]] = [], y: [[Double]] = [], rho: [Double] = []
        var d = [Double](repeating: 0, count: n)
        var xNew = x, gNew = g
        var iter = 0
        while iter < maxIterations {
            let gmax = g.reduce(0) { max($0, abs($1)) }
            if gmax < gradientTolerance { return Outcome(iterations: iter, value: f, gradientNorm: gmax, converged: true) }
            // Two-loop recursion: d = -H g.
            var q = g
            var alpha = [Double](repeating: 0, count: s.count)
            for i in stride(from: s.count - 1, through: 0, by: -1) {
                alpha[i] = rho[i] * dot(s[i], q)
                axpy(-alpha[i], y[i], &q)
            }
            if let ys = y.last, let ss = s.last {
                let gamma = dot(ss, ys) / dot(ys, ys)
                for i in 0..<n { q[i] *= gamma }
            } else {
                let scale = 1 / max(1, g.reduce(0) { $0 + $1 * $1 }.squareRoot())
                for i in 0..<n { q[i] *= scale }
            }
            for i in 0..<s.count {
                let beta = rho[i] * dot(y[i], q)
                axpy(alpha[i] - beta, s[i], &q)
            }
            for i in 0..<n { d[i] = -q[i] }
            var slope = dot(g, d)
            if slope >= 0 {  // not a descent direction: restart from steepest descent
                s.removeAll(); y.removeAll(); rho.removeAll()
                for i in 0..<n { d[i] = -g[i] }
                slope = dot(g, d)
            }
            // Backtracking line search.
            var step = 1.0
            var fNew = f
            var accepted = false
            for _ in 0..<40 {
                for i in 0..<n { xNew[i] = x[i] + step * d[i] }
                fNew = evaluate(xNew, &gNew)
                if fNew.isFinite && fNew <= f + 1e-4 * step * slope { accepted = true; break }
                step *= 0.5
            }
            iter += 1
            if !accepted { return Outcome(iterations: iter, value: f, gradientNorm: gmax, converged: false) }
            var si = [Double](repeating: 0, count: n), yi = [Double](repeating: 0, count: n)
            for i in 0..<n { si[i] = xNew[i] - x[i]; yi[i] = gNew[i] - g[i] }
            let sy = dot(si, yi)
            if sy > 1e-12 {
                s.append(si); y.append(yi); rho.append(1 / sy)
                if s.count > history { s.removeFirst(); y.removeFirst(); rho.removeFirst() }
            }
            let improvement = f - fNew
            x = xNew; g = gNew; f = fNew
            if improvement >= 0 && improvement <= relativeTolerance * max(1, abs(f)) {
                let gm = g.reduce(0) { max($0, abs($1)) }
                return Outcome(iterations: iter, value: f, gradientNorm: gm, converged: true)
            }
        }
        return Outcome(iterations: iter, value: f, gradientNorm: g.reduce(0) { max($0, abs($1)) }, converged: false)
    }
}

@inline(__always) func dot(_ a: [Double], _ b: [Double]) -> Double {
    var s = 0.0
    for i in 0..<a.count { s += a[i] * b[i] }
    return s
}

@inline(__always) func axpy(_ a: Double, _ x: [Double], _ y: inout [Double]) {
    for i in 0..<x.count { y[i] += a * x[i] }
}
