import CKernels
import Foundation

/// Layer normalisation over the last dimension: `out = (x − mean) · rstd · weight + bias`.
///
/// - Parameters:
///   - out: `[N, H]` (may be the same tensor as `input`)
///   - mean, rstd: `[N]`, cached for ``layerNormBackward``; nil when only inferring
///   - input: `[N, H]`
///   - weight, bias: `[H]`
public func layerNormForward(out: Tensor, mean: Tensor?, rstd: Tensor?, input: Tensor,
                             weight: Tensor, bias: Tensor, eps: Float) {
    let N = input.shape[0], H = input.shape[1]
    out.check([N, H], "out")
    weight.check([H], "weight")
    bias.check([H], "bias")
    mean?.check([N], "mean")
    rstd?.check([N], "rstd")
    activeKernels.layer_norm(out.data, input.data, weight.data, bias.data, N, H, eps, mean?.data, rstd?.data)
}

/// `x = layerNorm(x + sublayer)` for the rows in `rows`: the residual connection and the
/// normalisation in one pass (inference), writing the sum back into `sublayer`.
///
/// - Parameters:
///   - x: `[N, H]`, the residual stream; overwritten with the result
///   - sublayer: `[N, H]`, the sublayer's output; overwritten with `x + sublayer`
///   - weight, bias: `[H]`
///   - rows: the rows to process (callers split rows across threads)
public func residualLayerNorm(x: Tensor, sublayer: Tensor, weight: Tensor, bias: Tensor, eps: Float, rows: Range<Int>) {
    let H = x.shape[1]
    precondition(sublayer.shape == x.shape, "sublayer: \(sublayer.shape) vs \(x.shape)")
    weight.check([H], "weight")
    bias.check([H], "bias")
    guard !rows.isEmpty else { return }
    let o = rows.lowerBound * H
    activeKernels.residual_layer_norm(x.data + o, sublayer.data + o, weight.data, bias.data, rows.count, H, eps)
}

/// Backward of ``layerNormForward``.
///
/// - Parameters:
///   - dInput: `[N, H]`, overwritten
///   - dWeight, dBias: `[H]`, accumulated (nil: frozen)
///   - dOut: `[N, H]`
///   - input: `[N, H]`, as in the forward pass
///   - weight: `[H]`
///   - mean, rstd: `[N]`, from the forward pass
public func layerNormBackward(dInput: Tensor, dWeight: Tensor?, dBias: Tensor?, dOut: Tensor,
                              input: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor) {
    let N = input.shape[0], H = input.shape[1]
    dInput.check([N, H], "dInput")
    dOut.check([N, H], "dOut")
    mean.check([N], "mean")
    rstd.check([N], "rstd")
    let w = weight.data
    for n in 0..<N {
        let x = input.data + n * H, dy = dOut.data + n * H, dx = dInput.data + n * H
        let m = mean.data[n], r = rstd.data[n]
        var sumD: Float = 0, sumDX: Float = 0
        for h in 0..<H {
            let xhat = (x[h] - m) * r
            let d = dy[h] * w[h]
            sumD += d
            sumDX += d * xhat
        }
        sumD /= Float(H)
        sumDX /= Float(H)
        for h in 0..<H {
            let xhat = (x[h] - m) * r
            dx[h] = r * (dy[h] * w[h] - sumD - xhat * sumDX)
            dWeight?.data[h] += dy[h] * xhat
            dBias?.data[h] += dy[h]
        }
    }
}
