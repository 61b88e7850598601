import Foundation
import RobustdTestSupport
import Testing
@testable import Encoder
import Tensor

@Suite("Trainable layer: forward equals inference, backward equals finite differences")
struct TrainableLayerTests {
    func tiny() throws -> (SentenceEncoder, TempFolder) {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        return (try SentenceEncoder.load(folder: dir.path), dir)
    }

    @Test("the training forward of layer 0 gives what the inference path gives after one layer")
    func forwardMatchesInference() throws {
        let (enc, _dir) = try tiny()
        _ = _dir
        let seqs: [[Int32]] = [[2, 9, 6, 7, 8, 3], [2, 5, 6, 11, 3], [2, 3]]
        let ws = Workspace(config: enc.config)
        let (h0, packing) = enc.model.hiddenStates(seqs, workspace: ws, layerCount: 0)
        let input = h0.copy()
        let (h1, _) = enc.model.hiddenStates(seqs, workspace: ws, layerCount: 1)
        let layer = TrainableLayer(params: .init(copying: enc.model.weights.layers[0]), heads: enc.config.heads, eps: enc.config.layerNormEps)
        let out = Tensor(shape: [packing.totalTokens, enc.config.hiddenSize])
        _ = layer.forward(out: out, input: input, packing: packing)
        var worst: Float = 0
        for i in 0..<out.count { worst = max(worst, abs(out[i] - h1[i])) }
        #expect(worst < 1e-4, "max |diff| \(worst)")
    }

    @Test("gradients of the input and of every parameter tensor match central differences")
    func gradients() throws {
        let (enc, _dir) = try tiny()
        _ = _dir
        let H = enc.config.hiddenSize
        let packing = Packing(lengths: [3, 4, 1])
        let N = packing.totalTokens
        var state: UInt64 = 99
        func rnd() -> Float { state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(state >> 40) / Float(1 << 24) * 2 - 1 }
        let x = Tensor(shape: [N, H])
        for i in 0..<x.count { x[i] = rnd() }
        let G = Tensor(shape: [N, H])
        for i in 0..<G.count { G[i] = rnd() }
        let layer = TrainableLayer(params: .init(copying: enc.model.weights.layers[1]), heads: enc.config.heads, eps: enc.config.layerNormEps)
        let out = Tensor(shape: [N, H])
        func loss() -> Double {
            _ = layer.forward(out: out, input: x, packing: packing)
            var s = 0.0
            for i in 0..<out.count { s += Double(out[i]) * Double(G[i]) }
            return s
        }
        let cache = layer.forward(out: out, input: x, packing: packing)
        let grads = TrainableLayer.Gradients(for: layer)
        let dx = Tensor(shape: [N, H])
        layer.backward(dInput: dx, dOut: G, cache: cache, grads: grads)
        let eps: Float = 1e-3
        func check(_ name: String, _ t: Tensor, _ g: Tensor) {
            var worst: Float = 0
            for k in 0..<min(12, t.count) {
                let i = (k * 7919) % t.count
                let saved = t[i]
                t[i] = saved + eps; let lp = loss()
                t[i] = saved - eps; let lm = loss()
                t[i] = saved
                let numeric = Float((lp - lm) / Double(2 * eps))
                worst = max(worst, abs(numeric - g[i]) / max(1, abs(numeric), abs(g[i])))
            }
            #expect(worst < 2e-2, "\(name): worst relative error \(worst)")
        }
        check("input", x, dx)
        for (name, (p, g)) in zip(TrainableLayer.Parameters.names, zip(layer.params.all, grads.all)) { check(name, p, g) }
    }
}
