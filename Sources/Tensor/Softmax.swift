import CKernels
import Foundation

/// Row-wise softmax, numerically stable.
///
/// - Parameters:
///   - out: `[N, C]` (may be the same tensor as `input`)
///   - input: `[N, C]`
public func softmaxForward(out: Tensor, input: Tensor) {
    let N = input.shape[0], C = input.shape[1]
    out.check([N, C], "out")
    for n in 0..<N { softmaxRow(out.data + n * C, input.data + n * C, C) }
}

@inline(__always)
func softmaxRow(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ C: Int) {
    activeKernels.softmax(y, x, C)
}

/// Backward of ``softmaxForward``: `dx = y ⊙ (dy − Σ dy ⊙ y)` per row.
///
/// - Parameters:
///   - dInput: `[N, C]`, overwritten
///   - dOut: `[N, C]`
///   - out: `[N, C]`, the forward pass's output
public func softmaxBackward(dInput: Tensor, dOut: Tensor, out: Tensor) {
    let N = out.shape[0], C = out.shape[1]
    dInput.check([N, C], "dInput")
    dOut.check([N, C], "dOut")
    for n in 0..<N {
        let y = out.data + n * C, dy = dOut.data + n * C, dx = dInput.data + n * C
        var dot: Float = 0
        for c in 0..<C { dot += dy[c] * y[c] }
        for c in 0..<C { dx[c] = y[c] * (dy[c] - dot) }
    }
}

/// Softmax cross-entropy, averaged over rows (optionally weighted per row).
///
/// - Parameters:
///   - probs: `[N, C]`, the softmax of `logits`, cached for the backward pass
///   - logits: `[N, C]`
///   - labels: `N` class indices in `0..<C`
///   - weights: `N` row weights (nil: all 1); the loss is `Σ wᵢ·lossᵢ / Σ wᵢ`
/// - Returns: the mean loss
@discardableResult
public func crossEntropyForward(probs: Tensor, logits: Tensor, labels: [Int], weights: [Float]? = nil) -> Float {
    let N = logits.shape[0], C = logits.shape[1]
    probs.check([N, C], "probs")
    precondition(labels.count == N, "labels: \(labels.count), expected \(N)")
    precondition(weights == nil || weights!.count == N, "weights: expected \(N)")
    softmaxForward(out: probs, input: logits)
    var loss: Double = 0, total: Double = 0
    for n in 0..<N {
        precondition(labels[n] >= 0 && labels[n] < C, "label \(labels[n]) out of range 0..<\(C)")
        let w = Double(weights?[n] ?? 1)
        loss -= w * Double(logf(max(probs.data[n * C + labels[n]], 1e-30)))
        total += w
    }
    return total > 0 ? Float(loss / total) : 0
}

/// Backward of ``crossEntropyForward``: `dlogits = w · (probs − onehot) / Σ w`.
///
/// - Parameters:
///   - dLogits: `[N, C]`, overwritten
///   - probs: `[N, C]`, from the forward pass
public func crossEntropyBackward(dLogits: Tensor, probs: Tensor, labels: [Int], weights: [Float]? = nil) {
    let N = probs.shape[0], C = probs.shape[1]
    dLogits.check([N, C], "dLogits")
    let total = weights.map { $0.reduce(0, +) } ?? Float(N)
    for n in 0..<N {
        let scale = (weights?[n] ?? 1) / total
        for c in 0..<C {
            dLogits.data[n * C + c] = scale * (probs.data[n * C + c] - (c == labels[n] ? 1 : 0))
        }
    }
}
