import Foundation

/// Temperature scaling: calibrated probabilities are `softmax(logits / T)`, with T fitted on
/// held-out data to minimise the negative log-likelihood (Guo et al., 2017).
public enum TemperatureScaling {
    /// The T in [0.05, 20] minimising NLL on `logits` `[N, C]` with `labels`, by golden-section
    /// search on log T (the NLL is unimodal in T).
    public static func fit(logits: [Float], labels: [Int], classes C: Int) -> Double {
        func nll(_ logT: Double) -> Double { meanNLL(logits: logits, labels: labels, classes: C, scale: Float(exp(-logT))) }
        var a = log(0.05), b = log(20.0)
        let phi = (5.0.squareRoot() - 1) / 2
        var c = b - phi * (b - a), d = a + phi * (b - a)
        var fc = nll(c), fd = nll(d)
        for _ in 0..<60 {
            if fc < fd { b = d; d = c; fd = fc; c = b - phi * (b - a); fc = nll(c) }
            else { a = c; c = d; fc = fd; d = a + phi * (b - a); fd = nll(d) }
        }
        return exp((a + b) / 2)
    }

    /// Mean negative log-likelihood of `labels` under `softmax(scale · logits)`, `logits` `[N, C]`.
    static func meanNLL(logits: [Float], labels: [Int], classes C: Int, scale: Float = 1) -> Double {
        var total = 0.0
        for n in 0..<labels.count {
            let row = n * C
            var m = -Float.infinity
            for c in 0..<C { m = max(m, logits[row + c] * scale) }
            var sum: Float = 0
            for c in 0..<C { sum += expf(logits[row + c] * scale - m) }
            total -= Double(logits[row + labels[n]] * scale - m - logf(sum))
        }
        return total / Double(max(1, labels.count))
    }
}

/// Softmax of one row of logits divided by a temperature.
public func softmax(_ logits: ArraySlice<Float>, temperature T: Double = 1) -> [Float] {
    let invT = Float(1 / T)
    let m = (logits.max() ?? 0) * invT
    var out = logits.map { expf($0 * invT - m) }
    let s = out.reduce(0, +)
    for i in out.indices { out[i] /= s }
    return out
}

/// Expected calibration error with equal-width confidence bins: Σ (nᵦ/N) · |accᵦ − confᵦ|.
public func expectedCalibrationError(confidences: [Float], correct: [Bool], bins: Int = 15) -> Double {
    precondition(confidences.count == correct.count)
    guard !confidences.isEmpty else { return 0 }
    var count = [Int](repeating: 0, count: bins), acc = [Double](repeating: 0, count: bins), conf = [Double](repeating: 0, count: bins)
    for (p, ok) in zip(confidences, correct) {
        let b = min(bins - 1, Int(Double(p) * Double(bins)))
        count[b] += 1
        conf[b] += Double(p)
        if ok { acc[b] += 1 }
    }
    var ece = 0.0
    for b in 0..<bins where count[b] > 0 {
        ece += Double(count[b]) / Double(confidences.count) * abs(acc[b] / Double(count[b]) - conf[b] / Double(count[b]))
    }
    return ece
}
