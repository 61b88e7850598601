import Foundation

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
    let s: Float = 0.70710678118654752
    for i in 0..<count {
        let x = input[i]
        out[i] = 0.5 * x * (1 + erff(x * s))
    }
}

/// Backward of ``geluForward(out:input:)``: `dx = dy · (Φ(x) + x · φ(x))`.
///
/// - Parameters:
///   - dInput: overwritten; same element count as `input`
///   - dOut: gradient of the output
///   - input: the forward pass's input (pre-activation)
public func geluBackward(dInput: Tensor, dOut: Tensor, input: Tensor) {
    precondition(dInput.count == input.count && dOut.count == input.count, "gelu backward: counts differ")
    let s: Float = 0.70710678118654752
    let c: Float = 0.39894228040143268  // 1/√(2π)
    for i in 0..<input.count {
        let x = input.data[i]
        let cdf = 0.5 * (1 + erff(x * s))
        let pdf = c * expf(-0.5 * x * x)
        dInput.data[i] = dOut.data[i] * (cdf + x * pdf)
    }
}
