import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor

struct EncoderBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encoder",
        abstract: "Encoder throughput and latency on Banking77's test sentences (the real path: tokenizer, BERT, pooling).")

    @Option(help: "The model folder.")
    var model: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/robustd/models/all-MiniLM-L6-v2").path

    @Option(help: "Banking77 test.csv (default: shared/ beside the checkout).")
    var data: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/banking77/test.csv").path

    @Option(help: "Batch size for the throughput rows.")
    var batch: Int = 64

    @Option(help: "Repetitions of each throughput row (the median is shown).")
    var repeats: Int = 3

    @Option(help: "Single queries timed for the latency row.")
    var queries: Int = 500

    @Option(help: "Milliseconds of pause before each single query (0: back to back; a pause lets the helper threads sleep, as between a client's requests).")
    var pauseMs: Int = 0

    @Flag(help: "Print time per kernel kind (one thread, BLAS on both cores) instead of the table.")
    var profile = false

    @Option(help: "CPU kernels: auto, baseline, avx2 or avx512 (to compare variants on one machine).")
    var kernels = "auto"

    @Option(help: "fp32 or int8 (the layers' matrix products); int8 also prints its fidelity to fp32 on every sentence.")
    var precision = "fp32"

    @Option(help: "Threads of the engine (default: the cores).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    func run() throws {
        do { try Kernels.use(named: kernels) } catch { throw ValidationError("--kernels: \(error)") }
        guard let prec = Precision(rawValue: precision) else { throw ValidationError("--precision must be fp32 or int8") }
        let t0 = Date()
        let fp32 = try SentenceEncoder.load(folder: model)
        let enc = fp32.withPrecision(prec)
        let loadSeconds = Date().timeIntervalSince(t0)
        let rows = parseCSV(try String(contentsOfFile: data, encoding: .utf8)).dropFirst().filter { $0.count >= 2 }
        let texts = rows.map { $0[0] }
        let c = enc.config
        let engine = BatchEngine(encoder: enc, threads: threads)
        let cpu = CPUInfo.read()
        print("robustd-bench encoder: \(texts.count) sentences, \(c.layers) layers, hidden \(c.hiddenSize), \(engine.description)")
        print("model loaded in \(String(format: "%.2f", loadSeconds)) s; CPU: \(cpu.model), \(cpu.cores) cores at \(String(format: "%.0f", cpu.mhz)) MHz")
        print("CPU features: \(CPUFeatures.detected); kernels in use: fp32 \(Kernels.active.rawValue), int8 \(Kernels.activeInt8.rawValue)")

        let ids = enc.encode(texts).map(\.ids)
        let tokens = ids.map(\.count)
        if prec != .fp32 {
            // Fidelity: every sentence's vector against fp32's, batch by batch.
            let H = c.hiddenSize
            let a = Tensor(shape: [batch, H]), b = Tensor(shape: [batch, H])
            let reference = BatchEngine(encoder: fp32)
            var cosines: [Double] = []
            var i = 0
            while i < ids.count {
                let chunk = Array(ids[i..<min(i + batch, ids.count)])
                let n = chunk.count
                let va = Tensor(viewing: a.data, shape: [n, H], owner: a), vb = Tensor(viewing: b.data, shape: [n, H], owner: b)
                reference.embed(chunk, into: va)
                engine.embed(chunk, into: vb)
                for r in 0..<n {
                    var dot = 0.0, na = 0.0, nb = 0.0
                    for h in 0..<H {
                        let x = Double(a[r * H + h]), y = Double(b[r * H + h])
                        dot += x * y; na += x * x; nb += y * y
                    }
                    cosines.append(dot / (na * nb).squareRoot())
                }
                i += batch
            }
            cosines.sort()
            print(String(format: "fidelity to fp32 over %d sentences: cosine mean %.5f, min %.5f, 1st percentile %.5f",
                         cosines.count, cosines.reduce(0, +) / Double(cosines.count), cosines[0], cosines[cosines.count / 100]))
            // The head a user has: fitted as model/fit does (λ on a stratified 10% of train) on
            // fp32 vectors of train.csv beside test.csv, then test accuracy with each encoder.
            let trainPath = (data as NSString).deletingLastPathComponent + "/train.csv"
            if let trainText = try? String(contentsOfFile: trainPath, encoding: .utf8) {
                let train = parseCSV(trainText).dropFirst().filter { $0.count >= 2 }.map { ($0[0], $0[1]) }
                let labels = Array(Set(train.map(\.1))).sorted()
                let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
                let (fit, val) = stratifiedSplit(train, label: \.1, fraction: 0.1, seed: 42)
                func vectors(_ xs: [String], _ e: BatchEngine, _ s: SentenceEncoder) -> [Float] { WeakenedIntents.embed(xs, engine: e, with: s) }
                let (version, _) = HeadFitting.fit(id: 1, labels: labels, dimension: H,
                                                   train: (vectors(fit.map(\.0), reference, fp32), fit.map { index[$0.1]! }),
                                                   validation: (vectors(val.map(\.0), reference, fp32), val.map { index[$0.1]! }))
                let truth = rows.map { index[$0[1]] ?? -1 }
                func accuracy(_ x: [Float]) -> Double {
                    let logits = version.head.logits(x, count: texts.count), C = labels.count
                    var right = 0
                    for r in 0..<texts.count {
                        var best = 0
                        for k in 1..<C where logits[r * C + k] > logits[r * C + best] { best = k }
                        if best == truth[r] { right += 1 }
                    }
                    return 100 * Double(right) / Double(texts.count)
                }
                let a32 = accuracy(vectors(texts, reference, fp32)), a8 = accuracy(vectors(texts, engine, enc))
                print(String(format: "head fitted on fp32 vectors of train: test accuracy fp32 %.2f%%, %@ %.2f%% (%+.2f points)",
                             a32, precision as NSString, a8, a8 - a32))
            }
        }
        func flops(_ lengths: [Int]) -> Double {
            let H = Double(c.hiddenSize), I = Double(c.intermediateSize), L = Double(c.layers)
            return lengths.reduce(0.0) { acc, T in acc + Double(T) * L * (2 * (4 * H * H + 2 * H * I) + 4 * Double(T) * H) }
        }
        let totalFlops = flops(tokens)
        let out = Tensor(shape: [batch, c.hiddenSize])

        func throughput(order: [Int]) -> (Double, Double) {
            var times: [Double] = []
            for _ in 0..<repeats {
                let start = nowNs()
                var i = 0
                while i < order.count {
                    let chunk = Array(order[i..<min(i + batch, order.count)])
                    let encs = enc.encode(chunk.map { texts[$0] }).map(\.ids)  // tokenisation is part of the path
                    engine.embed(encs, into: out)
                    i += batch
                }
                times.append(Double(nowNs() - start) / 1e9)
            }
            let t = times.sorted()[times.count / 2]
            return (Double(texts.count) / t, totalFlops / t / 1e9)
        }
        if profile {
            let prof = KernelProfile()
            let ws = Workspace(config: c)
            BLASThreads.count = cpu.cores
            let order = (0..<texts.count).sorted { tokens[$0] < tokens[$1] }
            let start = nowNs()
            var i = 0
            while i < order.count {
                let chunk = order[i..<min(i + batch, order.count)].map { ids[$0] }
                _ = enc.model.hiddenStates(chunk, workspace: ws, parallel: Parallel(threads: cpu.cores), profile: prof)
                i += batch
            }
            let total = Double(nowNs() - start) / 1e9
            print(String(format: "one pass, length-sorted, batch %d: %.2f s (%.1f sentences/s)", batch, total, Double(texts.count) / total))
            for (k, v) in prof.seconds.sorted(by: { $0.value > $1.value }) {
                print(String(format: "  %-14@ %6.3f s  %5.1f%%", k as NSString, v, 100 * v / total))
            }
            return
        }
        let fileOrder = Array(0..<texts.count)
        let sorted = fileOrder.sorted { tokens[$0] < tokens[$1] }
        _ = throughput(order: Array(fileOrder.prefix(256)))  // warm-up
        let (sortedRate, sortedGF) = throughput(order: sorted)
        let (fileRate, fileGF) = throughput(order: fileOrder)

        var lat: [UInt64] = []
        var rng = SystemRandomNumberGenerator()
        let one = Tensor(shape: [1, c.hiddenSize])
        for _ in 0..<min(queries, texts.count) {
            let i = Int.random(in: 0..<texts.count, using: &rng)
            if pauseMs > 0 { usleep(UInt32(pauseMs) * 1000) }
            let s = nowNs()
            engine.embed(enc.encode([texts[i]]).map(\.ids), into: one)
            lat.append(nowNs() - s)
        }
        lat.sort()
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let peak = cpu.peakGflops
        print("")
        print("measure                                   value")
        print(String(format: "sentences/s, batch %d, length-sorted      %8.1f   (%.1f GFLOP/s, %.1f%% of fp32 peak)", batch, sortedRate, sortedGF, 100 * sortedGF / peak))
        print(String(format: "sentences/s, batch %d, file order         %8.1f   (%.1f GFLOP/s, %.1f%% of fp32 peak)", batch, fileRate, fileGF, 100 * fileGF / peak))
        print(String(format: "single query latency p50 / p99 (ms)       %8.2f / %.2f", percentile(lat, 50) / 1000, percentile(lat, 99) / 1000))
        print(String(format: "peak RSS (MB)                             %8.1f", Double(usage.ru_maxrss) / 1024))
        print(String(format: "tokens per sentence (mean)                %8.1f", Double(tokens.reduce(0, +)) / Double(tokens.count)))
        print(String(format: "fp32 peak used for the share: %d cores x 2 FMA x %d lanes (%@, detected%@) x 2 x %.0f MHz (the reported clock; boost can exceed it) = %.0f GFLOP/s",
                     cpu.cores, cpu.fmaLanes, Kernels.best.rawValue,
                     (cpu.fmaLanes < Kernels.best.lanes ? String(format: "; %@ family %d runs them on %d-lane units", cpu.vendor, cpu.family, cpu.fmaLanes) : "") as NSString,
                     cpu.mhz, peak))
    }
}

struct CPUInfo {
    var model: String
    var mhz: Double
    var cores: Int
    var vendor = "unknown"
    var family = 0
    /// Lanes each FMA pipe completes per cycle: the widest variant's, capped where the CPU
    /// runs it on narrower units (Zen 4's AVX-512).
    var fmaLanes: Int { min(Kernels.best.lanes, Kernels.datapathLanes(vendor: vendor, family: family) ?? Kernels.best.lanes) }
    /// From the vectors the CPU reports (not assumed): 2 FMA pipes × lanes × 2 flops.
    var peakGflops: Double { Kernels.peakGflops(Kernels.best, cores: cores, mhz: mhz, datapathLanes: fmaLanes) }

    static func read() -> CPUInfo {
        let text = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        var info = CPUInfo(model: "unknown", mhz: 0, cores: ProcessInfo.processInfo.activeProcessorCount)
        var seen = Set<String>()
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2, seen.insert(parts[0]).inserted else { continue }
            switch parts[0] {
            case "model name": info.model = parts[1]
            case "cpu MHz": info.mhz = Double(parts[1]) ?? 0
            case "vendor_id": info.vendor = parts[1]
            case "cpu family": info.family = Int(parts[1]) ?? 0
            default: break
            }
        }
        return info
    }
}
