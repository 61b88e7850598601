import CKernels
import Foundation
import Testing
@testable import Tensor

/// Every kernel variant this CPU runs, against references in double precision written as
/// plain loops. Variants the CPU lacks cannot run here; the test log says which were tested.
@Suite struct KernelVariantTests {
    static let variants = Kernels.supported
    static let int8Variants = Kernels.supportedInt8

    @Test func reportsTheCPUAndTheVariants() {
        print("CPU features: \(CPUFeatures.detected); fp32 variants tested: \(Self.variants.map(\.rawValue)); int8: \(Self.int8Variants.map(\.rawValue))")
        #expect(Self.variants.first == .baseline)
        #expect(Kernels.active == Kernels.best)
        let f = CPUFeatures.detected
        #expect(Self.variants.contains(.avx2) == f.contains(.avx2))
        #expect(Self.variants.contains(.avx512) == f.contains(.avx512))
        #expect(Self.int8Variants.contains(.avx512vnni) == f.contains(.avx512vnni))
        #expect(Self.int8Variants.contains(.avxvnni) == f.contains(.avxvnni))
    }

    /// The bench's share of peak: Zen 4 runs AVX-512 FMAs on 256-bit units, so its peak is
    /// its AVX2 peak, not twice that; other CPUs keep their widest vectors' lanes.
    @Test func peakCountsTheLanesTheFMAUnitsComplete() {
        let zen4 = Kernels.datapathLanes(vendor: "AuthenticAMD", family: 0x19)
        #expect(zen4 == 8)
        #expect(Kernels.peakGflops(.avx512, cores: 2, mhz: 2600, datapathLanes: zen4) == Kernels.peakGflops(.avx2, cores: 2, mhz: 2600))
        #expect(Kernels.peakGflops(.avx2, cores: 2, mhz: 2600, datapathLanes: zen4) == 2 * 2 * 8 * 2 * 2.6)
        for (vendor, family) in [("AuthenticAMD", 0x1A), ("GenuineIntel", 6)] {
            let lanes = Kernels.datapathLanes(vendor: vendor, family: family)
            #expect(lanes == nil)
            #expect(Kernels.peakGflops(.avx512, cores: 1, mhz: 1000, datapathLanes: lanes) == 2 * 16 * 2)
        }
    }

    @Test func choosingAVariantTheCPULacksIsAClearError() throws {
        #expect(throws: KernelError.unknown("sse9")) { try Kernels.use(named: "sse9") }
        if !CPUFeatures.detected.contains(.avx512) {
            #expect(throws: KernelError.self) { try Kernels.use(KernelVariant.avx512) }
            #expect(Kernels.active == Kernels.best)
        }
        try Kernels.use(named: "baseline")
        #expect(Kernels.active == .baseline)
        #expect(Kernels.activeInt8 == .baseline)
        try Kernels.use(named: "auto")
        #expect(Kernels.active == Kernels.best)
        #expect(Kernels.activeInt8 == Kernels.bestInt8)
    }

    @Test(arguments: variants) func smallGEMM(_ v: KernelVariant) {
        let t = Kernels.table(v)!.pointee
        var r = Rand(1)
        // Row counts that fill one block, leave a remainder, or split into several blocks of
        // unequal sizes in every variant (4, 6 and 12 rows a block).
        for (M, I, O) in [(1, 16, 16), (5, 37, 40), (13, 64, 48), (7, 3, 5), (15, 33, 17), (25, 20, 32), (64, 8, 16), (2, 5, 1), (11, 9, 31)] {
            let x = r.tensor([M, I]), w = r.tensor([O, I]), b = r.tensor([O])
            let pw = PackedWeight(w)
            let y = Tensor(shape: [M, O])
            t.small_gemm(y.data, x.data, pw.data, b.data, M, I, O, 0, O)
            for m in 0..<M {
                for o in 0..<O {
                    var acc = Double(b[o])
                    for i in 0..<I { acc += Double(x[m * I + i]) * Double(w[o * I + i]) }
                    #expect(abs(Double(y[m * O + o]) - acc) < 1e-4, "\(v) M \(M) I \(I) O \(O) at \(m),\(o)")
                }
            }
        }
    }

    @Test(arguments: variants) func gelu(_ v: KernelVariant) {
        let t = Kernels.table(v)!.pointee
        let n = 1003
        let x = Tensor(shape: [n]), y = Tensor(shape: [n])
        for i in 0..<n { x[i] = Float(i - n / 2) / 80 }
        t.gelu(y.data, x.data, n)
        var worst: Float = 0
        for i in 0..<n { worst = max(worst, abs(y[i] - geluReference(x[i]))) }
        #expect(worst < 2e-6, "\(v): \(worst)")
        t.gelu(x.data, x.data, n)  // in place
        for i in 0..<n { #expect(x[i] == y[i]) }
    }

    @Test(arguments: variants) func layerNorms(_ v: KernelVariant) {
        let t = Kernels.table(v)!.pointee
        var r = Rand(2)
        for H in [8, 16, 37, 384] {
            let N = 3
            let x = r.tensor([N, H], scale: 3), s = r.tensor([N, H]), w = r.tensor([H]), b = r.tensor([H])
            let y = Tensor(shape: [N, H]), mean = Tensor(shape: [N]), rstd = Tensor(shape: [N])
            t.layer_norm(y.data, x.data, w.data, b.data, N, H, 1e-12, mean.data, rstd.data)
            let xr = Tensor(shape: [N, H]); xr.data.update(from: x.data, count: N * H)
            let s0 = (0..<N * H).map { Double(s[$0]) }
            t.residual_layer_norm(xr.data, s.data, w.data, b.data, N, H, 1e-12)
            for n in 0..<N {
                for (input, out, checkSum) in [((0..<H).map { Double(x[n * H + $0]) }, y, false),
                                               ((0..<H).map { Double(x[n * H + $0]) + s0[n * H + $0] }, xr, true)] {
                    let m = input.reduce(0, +) / Double(H)
                    let sd = (input.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(H) + 1e-12).squareRoot()
                    for h in 0..<H {
                        let want = (input[h] - m) / sd * Double(w[h]) + Double(b[h])
                        #expect(abs(Double(out[n * H + h]) - want) < 1e-4, "\(v) H \(H)")
                        if checkSum { #expect(abs(Double(s[n * H + h]) - input[h]) < 1e-5) }
                    }
                    if !checkSum {
                        #expect(abs(Double(mean[n]) - m) < 1e-5)
                        #expect(abs(Double(rstd[n]) - 1 / sd) / (1 / sd) < 1e-5)
                    }
                }
            }
        }
    }

    @Test(arguments: variants) func softmax(_ v: KernelVariant) {
        let t = Kernels.table(v)!.pointee
        var r = Rand(3)
        for C in [1, 7, 16, 37, 77] {
            let x = r.tensor([C], scale: 20), y = Tensor(shape: [C])
            t.softmax(y.data, x.data, C)
            let mx = (0..<C).map { Double(x[$0]) }.max()!
            let e = (0..<C).map { exp(Double(x[$0]) - mx) }, sum = e.reduce(0, +)
            for c in 0..<C { #expect(abs(Double(y[c]) - e[c] / sum) < 1e-6, "\(v) C \(C)") }
        }
    }

    @Test(arguments: variants) func attention(_ v: KernelVariant) {
        let t = Kernels.table(v)!.pointee
        var r = Rand(4)
        for (T, HS, heads) in [(1, 32, 2), (5, 32, 3), (17, 24, 2), (64, 16, 2), (33, 40, 1)] {
            let H = HS * heads, offset = 2, N = offset + T + 1
            let qkv = r.tensor([N, 3 * H], scale: 2)
            let out = Tensor(shape: [N, H]), probs = Tensor(shape: [heads * T * T])
            t.attend(out.data, qkv.data, offset, T, H, heads, 0, heads, probs.data)
            for h in 0..<heads {
                for i in 0..<T {
                    var s = [Double](repeating: 0, count: T)
                    for j in 0..<T {
                        for d in 0..<HS {
                            s[j] += Double(qkv[(offset + i) * 3 * H + h * HS + d]) * Double(qkv[(offset + j) * 3 * H + H + h * HS + d])
                        }
                        s[j] /= Double(HS).squareRoot()
                    }
                    let mx = s.max()!, e = s.map { exp($0 - mx) }, sum = e.reduce(0, +)
                    for j in 0..<T { #expect(abs(Double(probs[(h * T + i) * T + j]) - e[j] / sum) < 1e-5, "\(v) T \(T)") }
                    for d in 0..<HS {
                        var c = 0.0
                        for j in 0..<T { c += e[j] / sum * Double(qkv[(offset + j) * 3 * H + 2 * H + h * HS + d]) }
                        #expect(abs(Double(out[(offset + i) * H + h * HS + d]) - c) < 1e-4, "\(v) T \(T) HS \(HS)")
                    }
                }
            }
        }
    }

    /// Ties round to even in every variant, as the scalar form's nearbyintf does.
    @Test func int8QuantisationRoundsTiesToEven() {
        // max |x| = 127: the scale is 1, so these are the values rounded.
        var row: [Float] = [127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.4999998, 0, -127]
        while row.count < 70 { row.append(Float(row.count % 9) - 4.5) }
        let K = row.count, Kp = (K + 3) / 4 * 4
        var want = [Int8](repeating: 0, count: Kp), ws: Float = 0
        rk_quantize_rows(&want, &ws, row, 1, K, Kp)
        #expect(Array(want.prefix(12)) == [127, 0, 2, 2, 0, -2, -2, 126, -126, 3, 0, -127])
        for v in Self.int8Variants {
            var q = [Int8](repeating: 99, count: Kp), s: Float = .nan
            Kernels.table(v)!.pointee.quantize(&q, &s, row, 1, K, Kp)
            #expect(q == want && s == ws, "\(v)")
        }
    }

    /// The int8 variants compute the same integer sums, so they agree bit for bit; the
    /// baseline is the exact integer product of the quantised values, dequantised.
    @Test func int8ProductsAgreeExactly() {
        var r = Rand(5)
        for (M, K, O) in [(1, 16, 16), (7, 37, 40), (13, 384, 80), (30, 130, 70), (5, 1536, 32), (3, 71, 16)] {
            let x = r.tensor([M, K], scale: 4), w = r.tensor([O, K], scale: 0.2), b = r.tensor([O])
            var qw = rk_qweight()
            #expect(rk_qweight_init(&qw, w.data, O, K) == 0)
            defer { rk_qweight_free(&qw) }
            let Kp = Int(qw.Kp)
            var qx = [Int8](repeating: 0, count: M * Kp), xs = [Float](repeating: 0, count: M)
            rk_quantize_rows(&qx, &xs, x.data, M, K, Kp)
            // The reference: quantised values unpacked, exact integer sums.
            var want = [Float](repeating: 0, count: M * O)
            for m in 0..<M {
                for o in 0..<O {
                    var acc: Int32 = 0
                    for k in 0..<K {
                        let q = qw.data[((o / 16 * (Kp / 4) + k / 4) * 16 + o % 16) * 4 + k % 4]
                        acc += Int32(qx[m * Kp + k]) * Int32(q)
                    }
                    want[m * O + o] = Float(acc) * xs[m] * qw.scales[o] + b[o]
                }
            }
            // The weights quantise the same whichever variant is active (init uses its quantise).
            let active = rk_best_qvariant()
            for v in Self.int8Variants {
                #expect(rk_quse(v.c) == 0)
                var q2 = rk_qweight()
                #expect(rk_qweight_init(&q2, w.data, O, K) == 0)
                let n = Int(q2.panels * q2.Kp * 16)
                #expect(Array(UnsafeBufferPointer(start: q2.data, count: n)) == Array(UnsafeBufferPointer(start: qw.data, count: n)), "\(v) weights")
                #expect(Array(UnsafeBufferPointer(start: q2.scales, count: O)) == Array(UnsafeBufferPointer(start: qw.scales, count: O)), "\(v) scales")
                rk_qweight_free(&q2)
            }
            _ = rk_quse(active)
            // Every variant's quantisation gives the scalar form's bytes and scales.
            for v in Self.int8Variants {
                var q2 = [Int8](repeating: 99, count: M * Kp), s2 = [Float](repeating: .nan, count: M)
                Kernels.table(v)!.pointee.quantize(&q2, &s2, x.data, M, K, Kp)
                #expect(q2 == qx && s2 == xs, "\(v) quantisation M \(M) K \(K)")
            }
            var outputs: [Int8Variant: [Float]] = [:]
            for v in Self.int8Variants {
                var y = [Float](repeating: .nan, count: M * O)
                let t = Kernels.table(v)!.pointee
                withUnsafePointer(to: &qw) { p in t.qgemm(&y, qx, xs, p, b.data, M, 0, O) }
                outputs[v] = y
                for i in 0..<M * O {
                    #expect(abs(y[i] - want[i]) <= 1e-5 * max(1, abs(want[i])), "\(v) M \(M) K \(K) O \(O) at \(i)")
                }
            }
            // Against the float product: within the quantisation's error.
            for m in 0..<M {
                for o in 0..<O {
                    var f = Double(b[o]), bound = 0.0
                    for k in 0..<K {
                        f += Double(x[m * K + k]) * Double(w[o * K + k])
                        bound += abs(Double(x[m * K + k])) * Double(qw.scales[o]) / 2 + abs(Double(w[o * K + k])) * Double(xs[m]) / 2
                    }
                    #expect(abs(Double(want[m * O + o]) - f) <= bound * 1.01 + 1e-4)
                }
            }
            // Split columns (threads) give the same result as one call.
            if let best = Self.int8Variants.last, O > 16 {
                var y = [Float](repeating: .nan, count: M * O)
                let t = Kernels.table(best)!.pointee
                withUnsafePointer(to: &qw) { p in
                    t.qgemm(&y, qx, xs, p, b.data, M, 0, 16)
                    t.qgemm(&y, qx, xs, p, b.data, M, 16, O)
                }
                #expect(y == outputs[best]!)
            }
        }
    }
}
