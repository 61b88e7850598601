import ArgumentParser
import Foundation
import Tensor

struct GEMMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "The encoder's matrix shapes: the few-rows kernel (packed weights) against OpenBLAS, 1 and 2 threads, weights hot in cache.")

    @Flag(help: "Also time the int8 products (every variant this CPU runs, one thread) against OpenBLAS sgemm on one thread.")
    var int8 = false

    func run() throws {
            if int8 { runInt8(); return }
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

    /// int8 (dynamic per-row activations, per-channel weights; quantising the input included)
    /// against OpenBLAS sgemm, one thread each, the encoder's shapes, weights hot.
    func runInt8() {
        BLASThreads.count = 1
        print("one thread, weights hot; int8 time includes quantising the input rows")
        for (M, I, O) in [(15, 384, 1152), (15, 1536, 384), (256, 384, 1152), (256, 384, 1536), (256, 1536, 384), (512, 384, 1536)] {
            let x = Tensor(shape: [M, I]), w = Tensor(shape: [O, I]), y = Tensor(shape: [M, O])
            var r = SeededRandomFloats(seed: 7)
            for i in 0..<x.count { x[i] = r.next() }
            for i in 0..<w.count { w[i] = r.next() * 0.1 }
            let q = QuantizedWeight(w)!
            let fl = 2.0 * Double(M * I * O)
            let reps = max(20, 2_000_000_000 / Int(fl) / 4)
            var t = nowNs()
            for _ in 0..<reps { linearForward(out: y, input: x, weight: w, bias: nil) }
            let blas = Double(nowNs() - t) / Double(reps)
            var row = "M=\(M) I=\(I) O=\(O): sgemm \(String(format: "%.1f", fl / blas)) GFLOP/s"
            for v in Kernels.supportedInt8 {
                t = nowNs()
                for _ in 0..<reps { linearInt8(out: y, input: x, weight: q, bias: nil, variant: v) }
                let mine = Double(nowNs() - t) / Double(reps)
                row += String(format: ", %@ %.1f (%.2fx)", v.rawValue, fl / mine, blas / mine)
            }
            print(row)
        }
    }
}

struct SeededRandomFloats {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> Float {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Float(Int64(bitPattern: state >> 11) % 2000 - 1000) / 1000
    }
}
