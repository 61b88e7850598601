import Foundation
import Tensor

/// Buffers for one forward pass, reused across calls so the hot loop allocates nothing.
/// Grows when a batch has more tokens than it has room for.
///
/// - Important: One workspace per thread.
public final class Workspace {
    public private(set) var capacity = 0
    private(set) var maxLength = 0
    let H: Int, I: Int, NH: Int
    var x: Tensor!, qkv: Tensor!, ctx: Tensor!, tmp: Tensor!, ffn: Tensor!
    var scratch: UnsafeMutablePointer<Float>?

    public init(config: BertConfig) {
        H = config.hiddenSize
        I = config.intermediateSize
        NH = config.heads
    }

    deinit { scratch?.deallocate() }

    private var scratchThreads = 1

    func reserve(tokens N: Int, maxLength T: Int, threads: Int) {
        if N > capacity {
            let c = max(N, capacity * 3 / 2, 256)
            x = Tensor(shape: [c, H]); qkv = Tensor(shape: [c, 3 * H]); ctx = Tensor(shape: [c, H])
            tmp = Tensor(shape: [c, H]); ffn = Tensor(shape: [c, I])
            capacity = c
        }
        if T > maxLength || threads > scratchThreads {
            scratch?.deallocate()
            maxLength = max(T, maxLength)
            scratchThreads = max(threads, scratchThreads)
            scratch = .allocate(capacity: maxLength * maxLength * scratchThreads)
        }
    }

    /// A `[rows, cols]` view of the first rows of a buffer.
    func view(_ t: Tensor, _ rows: Int, _ cols: Int) -> Tensor { Tensor(viewing: t.data, shape: [rows, cols], owner: t) }
}

/// Time spent per kernel kind, for the profiler (`robustd-bench encoder --profile`).
public final class KernelProfile: @unchecked Sendable {
    public var seconds: [String: Double] = [:]
    public init() {}
    @inline(__always) func measure<T>(_ name: String, _ body: () -> T) -> T {
        var a = timespec(), b = timespec()
        clock_gettime(CLOCK_MONOTONIC, &a)
        let r = body()
        clock_gettime(CLOCK_MONOTONIC, &b)
        seconds[name, default: 0] += Double(b.tv_sec - a.tv_sec) + Double(b.tv_nsec - a.tv_nsec) / 1e9
        return r
    }
}

/// How the layers' matrix products are computed.
public enum Precision: String, Sendable, Codable, CaseIterable {
    /// float32 throughout.
    case fp32
    /// The four products of each layer in int8 (per-channel weights, per-row dynamic
    /// activations, int32 sums); embeddings, attention, norms and GELU stay float32.
    case int8
}

extension BertLayerWeights {
    /// Whether the four product weights are the same objects as `other`'s.
    func sharesProducts(with other: BertLayerWeights) -> Bool {
        qkvWeight === other.qkvWeight && attnOutWeight === other.attnOutWeight
            && ffnInWeight === other.ffnInWeight && ffnOutWeight === other.ffnOutWeight
    }
}

/// One layer's products packed for the few-rows fp32 kernel (``Precision/fp32``; OpenBLAS
/// reads the weights themselves).
public struct PackedLayer: Sendable {
    public let qkv: PackedWeight, attnOut: PackedWeight, ffnIn: PackedWeight, ffnOut: PackedWeight

    init(_ l: BertLayerWeights) {
        qkv = PackedWeight(l.qkvWeight); attnOut = PackedWeight(l.attnOutWeight)
        ffnIn = PackedWeight(l.ffnInWeight); ffnOut = PackedWeight(l.ffnOutWeight)
    }

    public var byteCount: Int { qkv.byteCount + attnOut.byteCount + ffnIn.byteCount + ffnOut.byteCount }
}

/// One layer's products quantised for ``Precision/int8``.
public struct QuantizedLayer: Sendable {
    public let qkv: QuantizedWeight, attnOut: QuantizedWeight, ffnIn: QuantizedWeight, ffnOut: QuantizedWeight

    init(_ l: BertLayerWeights) {
        func q(_ t: Tensor) -> QuantizedWeight {
            guard let w = QuantizedWeight(t) else { fatalError("out of memory quantising a \(t.shape) weight") }
            return w
        }
        qkv = q(l.qkvWeight); attnOut = q(l.attnOutWeight); ffnIn = q(l.ffnInWeight); ffnOut = q(l.ffnOutWeight)
    }

    public var byteCount: Int { qkv.byteCount + attnOut.byteCount + ffnIn.byteCount + ffnOut.byteCount }
}

/// The BERT encoder's forward pass for inference over packed (unpadded) sequences.
public final class BertModel: Sendable {
    public let config: BertConfig
    public let weights: BertWeights
    public let precision: Precision
    /// The layers' packed fp32 weights (``Precision/fp32`` only).
    public let packed: [PackedLayer]?
    /// The layers' int8 weights (``Precision/int8`` only).
    public let quantized: [QuantizedLayer]?

    /// Only the copies the precision computes from are made: an int8 model holds no packed
    /// fp32 weights, so its resident memory is the int8 weights and what traffic touches of
    /// the mapped file.
    ///
    /// - Parameter reusing: a model whose packed or int8 layers may be shared where its layer
    ///   weights are the same objects (a fine-tuned version replaces only its top layers).
    public init(config: BertConfig, weights: BertWeights, precision: Precision = .fp32, reusing previous: BertModel? = nil) {
        self.config = config
        self.weights = weights
        self.precision = precision
        func same(_ i: Int) -> Bool {
            guard let previous, i < previous.weights.layers.count else { return false }
            return previous.weights.layers[i].sharesProducts(with: weights.layers[i])
        }
        switch precision {
        case .fp32:
            quantized = nil
            packed = weights.layers.enumerated().map { i, l in
                if same(i), let p = previous?.packed { return p[i] }
                return PackedLayer(l)
            }
        case .int8:
            packed = nil
            quantized = weights.layers.enumerated().map { i, l in
                if same(i), let q = previous?.quantized { return q[i] }
                return QuantizedLayer(l)
            }
        }
    }

    /// Bytes of the copies the products compute from (packed fp32 or int8 weights).
    public var productBytes: Int {
        (packed ?? []).reduce(0) { $0 + $1.byteCount } + (quantized ?? []).reduce(0) { $0 + $1.byteCount }
    }

    /// Hidden states of the last layer for `sequences` (token ids, each with [CLS] … [SEP]).
    ///
    /// - Returns: `[N, H]` packed hidden states (a view into the workspace, valid until its next use)
    ///   and the packing.
    ///   - layerCount: run only the first this many layers (0: the embeddings only); nil: all.
    ///     Fine-tuning computes the frozen lower layers once this way.
    public func hiddenStates(_ sequences: [[Int32]], workspace ws: Workspace, parallel: Parallel = .serial,
                             layerCount: Int? = nil, profile: KernelProfile? = nil) -> (Tensor, Packing) {
        @inline(__always) func step(_ name: String, _ body: () -> Void) {
            if let profile { profile.measure(name, body) } else { body() }
        }
        let c = config, H = c.hiddenSize, I = c.intermediateSize
        let packing = Packing(lengths: sequences.map(\.count))
        let N = packing.totalTokens
        ws.reserve(tokens: N, maxLength: packing.maxLength, threads: parallel.threads)
        // Row-wise kernels and attention split across threads only when there is enough work:
        // for a single short query, waking the other thread costs more than it saves (measured).
        let split = N >= 256 ? parallel : .serial
        let P = split.threads
        /// Rows of `n` for part k of the parallel split.
        @Sendable func rows(_ n: Int, _ k: Int) -> Range<Int> { (n * k / P)..<(n * (k + 1) / P) }
        let x = ws.view(ws.x, N, H), qkv = ws.view(ws.qkv, N, 3 * H), ctx = ws.view(ws.ctx, N, H)
        let tmp = ws.view(ws.tmp, N, H), ffn = ws.view(ws.ffn, N, I)
        let w = weights

        // Embeddings: word + position + token type (all type 0), then layer norm.
        step("embeddings") {
            for (s, ids) in sequences.enumerated() {
                precondition(ids.count <= c.maxPositions, "sequence of \(ids.count) tokens exceeds \(c.maxPositions) positions")
                for (t, id) in ids.enumerated() {
                    let row = x.data + (packing.offsets[s] + t) * H
                    let we = w.wordEmbeddings.data + Int(id) * H, pe = w.positionEmbeddings.data + t * H
                    let te = w.tokenTypeEmbeddings.data
                    for h in 0..<H { row[h] = we[h] + pe[h] + te[h] }
                }
            }
            layerNormForward(out: x, mean: nil, rstd: nil, input: x, weight: w.embNormWeight, bias: w.embNormBias, eps: c.layerNormEps)
        }

        let quantized = self.quantized, packed = self.packed
        for (li, L) in w.layers.prefix(layerCount ?? w.layers.count).enumerated() {
            let Q = quantized?[li], P = packed?[li]
            /// The layer's product: int8 when quantised, else fp32 (few-rows kernel or OpenBLAS).
            func linear(_ out: Tensor, _ input: Tensor, _ weight: Tensor, _ packed: PackedWeight?, _ q: QuantizedWeight?, _ bias: Tensor) {
                if let q { linearInt8(out: out, input: input, weight: q, bias: bias, parallel: parallel) }
                else { linearForward(out: out, input: input, weight: weight, packed: packed, bias: bias, parallel: parallel) }
            }
            step("qkv gemm") { linear(qkv, x, L.qkvWeight, P?.qkv, Q?.qkv, L.qkvBias) }
            step("attention") { attentionForward(out: ctx, scratch: ws.scratch!, qkv: qkv, packing: packing, heads: c.heads, parallel: split) }
            step("out gemm") { linear(tmp, ctx, L.attnOutWeight, P?.attnOut, Q?.attnOut, L.attnOutBias) }
            step("residual+norm") {
                split.run { k in
                    residualLayerNorm(x: x, sublayer: tmp, weight: L.attnNormWeight, bias: L.attnNormBias, eps: c.layerNormEps, rows: rows(N, k))
                }
            }
            step("ffn-in gemm") { linear(ffn, x, L.ffnInWeight, P?.ffnIn, Q?.ffnIn, L.ffnInBias) }
            step("gelu") {
                let f = ffn
                split.run { k in
                    let r = rows(N, k)
                    geluForward(out: f.data + r.lowerBound * I, input: f.data + r.lowerBound * I, count: r.count * I)
                }
            }
            step("ffn-out gemm") { linear(tmp, ffn, L.ffnOutWeight, P?.ffnOut, Q?.ffnOut, L.ffnOutBias) }
            step("residual+norm") {
                split.run { k in
                    residualLayerNorm(x: x, sublayer: tmp, weight: L.ffnNormWeight, bias: L.ffnNormBias, eps: c.layerNormEps, rows: rows(N, k))
                }
            }
        }
        return (x, packing)
    }
}
