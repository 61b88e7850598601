import Foundation

/// Mean of each sequence's token vectors (over its own tokens only).
///
/// - Parameters:
///   - out: `[B, H]`
///   - input: `[N, H]`, packed
public func meanPoolForward(out: Tensor, input: Tensor, packing: Packing) {
    let B = packing.count, H = input.shape[1]
    input.check([packing.totalTokens, H], "input")
    out.check([B, H], "out")
    for b in 0..<B {
        let y = out.data + b * H
        y.update(repeating: 0, count: H)
        let T = packing.lengths[b]
        for t in 0..<T {
            let x = input.data + (packing.offsets[b] + t) * H
            for h in 0..<H { y[h] += x[h] }
        }
        let inv = 1 / Float(T)
        for h in 0..<H { y[h] *= inv }
    }
}

/// Backward of ``meanPoolForward``: each token gets `dOut / Tᵢ`.
///
/// - Parameters:
///   - dInput: `[N, H]`, overwritten
///   - dOut: `[B, H]`
public func meanPoolBackward(dInput: Tensor, dOut: Tensor, packing: Packing) {
    let B = packing.count, H = dOut.shape[1]
    dInput.check([packing.totalTokens, H], "dInput")
    dOut.check([B, H], "dOut")
    for b in 0..<B {
        let T = packing.lengths[b], inv = 1 / Float(T)
        for t in 0..<T {
            let dx = dInput.data + (packing.offsets[b] + t) * H, dy = dOut.data + b * H
            for h in 0..<H { dx[h] = dy[h] * inv }
        }
    }
}

/// The first token's vector of each sequence ([CLS] pooling).
///
/// - Parameters:
///   - out: `[B, H]`
///   - input: `[N, H]`, packed
public func clsPoolForward(out: Tensor, input: Tensor, packing: Packing) {
    let B = packing.count, H = input.shape[1]
    out.check([B, H], "out")
    for b in 0..<B { (out.data + b * H).update(from: input.data + packing.offsets[b] * H, count: H) }
}

/// Backward of ``clsPoolForward``: the first token gets `dOut`, the others zero.
public func clsPoolBackward(dInput: Tensor, dOut: Tensor, packing: Packing) {
    let H = dOut.shape[1]
    dInput.check([packing.totalTokens, H], "dInput")
    dInput.zero()
    for b in 0..<packing.count { (dInput.data + packing.offsets[b] * H).update(from: dOut.data + b * H, count: H) }
}

/// L2 normalisation of each row: `y = x / max(‖x‖, eps)`.
///
/// - Parameters:
///   - out: `[B, H]` (may be the same tensor as `input`)
///   - norms: `[B]`, the norms used, cached for the backward pass (nil when inferring)
///   - input: `[B, H]`
public func l2NormalizeForward(out: Tensor, norms: Tensor?, input: Tensor, eps: Float = 1e-12) {
    let B = input.shape[0], H = input.shape[1]
    out.check([B, H], "out")
    norms?.check([B], "norms")
    for b in 0..<B {
        let x = input.data + b * H, y = out.data + b * H
        var s: Float = 0
        for h in 0..<H { s += x[h] * x[h] }
        let n = max(s.squareRoot(), eps)
        let inv = 1 / n
        for h in 0..<H { y[h] = x[h] * inv }
        norms?.data[b] = n
    }
}

/// Backward of ``l2NormalizeForward``: `dx = (dy − y · (y·dy)) / ‖x‖`.
///
/// - Parameters:
///   - dInput: `[B, H]`, overwritten
///   - dOut: `[B, H]`
///   - out: `[B, H]`, the normalised rows from the forward pass
///   - norms: `[B]`, from the forward pass
public func l2NormalizeBackward(dInput: Tensor, dOut: Tensor, out: Tensor, norms: Tensor) {
    let B = out.shape[0], H = out.shape[1]
    dInput.check([B, H], "dInput")
    dOut.check([B, H], "dOut")
    for b in 0..<B {
        let y = out.data + b * H, dy = dOut.data + b * H, dx = dInput.data + b * H
        var dot: Float = 0
        for h in 0..<H { dot += y[h] * dy[h] }
        let inv = 1 / norms.data[b]
        for h in 0..<H { dx[h] = (dy[h] - y[h] * dot) * inv }
    }
}
