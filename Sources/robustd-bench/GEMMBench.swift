import ArgumentParser
import Foundation
import Tensor

struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "The encoder's matrix shapes: the few-rows kernel (packed weights) against OpenBLAS, 1 and 2 threads, weights hot in cache.")

    func run() throws {
            for (M, I, O) in [(15, 384, 1152), (15, 384, 1536), (15, 1536, 384), (64, 384, 1536), (200, 384, 1536)] {
                let x = Tensor(shape: [M, I]), w = Tensor(shape: [O, I]), y = Tensor(shape: [M, O])
                for i in 0..<x.count { x[i] = Float(i % 7) }
                for i in 0..<w.count { w[i] = Float(i % 5) }
                let pw = PackedWeight(w)
                for threads in [1, 2] {
                    let reps = 200
                    var t = nowNs()
                    for _ in 0..<reps { linearSmallM(out: y, input: x, weight: pw, bias: nil, parallel: Parallel(threads: threads)) }
                    let mine = Double(nowNs() - t) / Double(reps)
                    BLASThreads.count = threads
                    t = nowNs()
                    for _ in 0..<reps { linearForward(out: y, input: x, weight: w, bias: nil) }
                    let blas = Double(nowNs() - t) / Double(reps)
                    let fl = 2.0 * Double(M * I * O)
                    print("M=\(M) I=\(I) O=\(O) threads=\(threads): small-M \(String(format: "%.1f", fl / mine)) GFLOP/s, OpenBLAS \(String(format: "%.1f", fl / blas)) GFLOP/s (hot weights)")
                }
            }
    }
}
