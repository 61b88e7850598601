import CKernels
import Foundation

// erf(x) ≈ x · P(x²) / Q(x²) on [-4, 4], clamped to ±1 (beyond ±4 float32 erf is ±1 to within
// 2e-8): a rational approximation fitted for this project (scripts/fit-erf.py, weighted least
// squares on the relative error). Maximum absolute error in float32: 4.3e-7 (libm's erff is
// ~1e-7), so GELU's error stays below 1e-6. It needs no exp, one division, and vectorises.

/// The rational erf approximation. Straight-line scalar code with selects and the
/// coefficients inline (a global would cost a lazy-initialisation check per call), so that
/// LLVM vectorises the loops that call it; Swift's generic SIMD min/max lower to lane-by-lane
/// code here, which was 3× slower than libm.
@inline(__always)
public func fastErf(_ x: Float) -> Float {
    let xc = x > 4 ? 4 : (x < -4 ? -4 : x)
    let u = xc * xc
    var p: Float = 1.9298539655210334e-08
    p = p * u - 1.9292413071525516e-06
    p = p * u + 0.00014265580102801323
    p = p * u + 0.0037911245599389076
    p = p * u + 0.05088706314563751
    p = p * u + 0.20241543650627136
    p = p * u + 1.1283791065216064
    var q: Float = 0.000973349146079272
    q = q * u + 0.014550293795764446
    q = q * u + 0.1160116046667099
    q = q * u + 0.5127179622650146
    q = q * u + 1.0
    let e = xc * p / q
    return e > 1 ? 1 : (e < -1 ? -1 : e)
}

/// GELU in the exact erf form BERT's `"gelu"` uses: `0.5 · x · (1 + erf(x / √2))`.
///
/// - Parameters:
///   - out: `[n]` elements (may be the same tensor as `input`)
///   - input: `[n]` elements, any shape
public func geluForward(out: Tensor, input: Tensor) {
    precondition(out.count == input.count, "gelu: \(out.shape) vs \(input.shape)")
    geluForward(out: out.data, input: input.data, count: input.count)
}

public func geluForward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
    activeKernels.gelu(out, input, count)
}

/// GELU with libm's erff, the reference the tests compare the fast path against.
public func geluReference(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.70710678118654752)) }

/// `exp(y)` for `y ≤ 0` (clamped below at −87, where float32's exp underflows), as
/// straight-line code LLVM vectorises: `y = n·ln 2 + r` with `n` rounded by the 1.5·2²³ trick
/// (the baseline x86-64 target has no round instruction), `exp(r)` by its degree-6 Taylor
/// polynomial on |r| ≤ ln 2 / 2 (truncation error < 2.2e-8 relative), `2ⁿ` from the exponent
/// bits. Relative error against libm's expf: under 3e-7 (GradientTests). NaN stays NaN.
@inline(__always)
public func fastExpNonPositive(_ y: Float) -> Float {
    let yc = y < -87 ? -87 : (y > 0 ? 0 : y)
    let magic: Float = 12_582_912  // 1.5 · 2²³
    let t = yc * 1.44269504088896341 + magic
    let n = t - magic
    // n as an integer from t's low mantissa bits, in wrapping integer arithmetic: no
    // float-to-int conversion (which traps on NaN and keeps loops scalar).
    let exponent = (t.bitPattern &- magic.bitPattern &+ 127) << 23
    // r = y − n·ln 2 in two steps (Cody–Waite): ln 2's high part is exact in float32 times n.
    let r = (yc - n * 0.693145751953125) - n * 1.428606765330187e-06
    var p: Float = 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    return p * Float(bitPattern: exponent)
}

/// Backward of ``geluForward(out:input:)``: `dx = dy · (Φ(x) + x · φ(x))`.
///
/// Vectorised by the compiler (``fastErf``, ``fastExpNonPositive``: no libm call in the loop;
/// it called erf's approximation and libm's expf per element, 4.7% of a top-layers training
/// step in `perf`). Within 1e-6 of the libm form (GradientTests).
///
/// - Parameters:
///   - dInput: overwritten; same element count as `input`
///   - dOut: gradient of the output
///   - input: the forward pass's input (pre-activation)
public func geluBackward(dInput: Tensor, dOut: Tensor, input: Tensor) {
    precondition(dInput.count == input.count && dOut.count == input.count, "gelu backward: counts differ")
    let c: Float = 0.39894228040143268  // 1/√(2π)
    let x = UnsafePointer(input.data), dy = UnsafePointer(dOut.data), dx = dInput.data
    for i in 0..<input.count {
        let v = x[i]
        let cdf = 0.5 * (1 + fastErf(v * 0.70710678118654752))
        let pdf = c * fastExpNonPositive(-0.5 * v * v)
        dx[i] = dy[i] * (cdf + v * pdf)
    }
}

/// The derivative of GELU with libm's erff and expf, the reference the tests compare
/// ``geluBackward(dInput:dOut:input:)`` against.
public func geluDerivativeReference(_ x: Float) -> Float {
    0.5 * (1 + erff(x * 0.70710678118654752)) + x * 0.39894228040143268 * expf(-0.5 * x * x)
}
