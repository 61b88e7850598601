import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("The resident model in the daemon")
struct ModelTests {
    /// Vectors of `texts` from the daemon's embed, decoded by the typed client.
    static func embed(_ c: RPCClient, _ texts: [String], timeout: Double = 60) throws -> (Embed.Result, [[Float]]) {
        let r = try c.call(Embed.self, .init(texts: texts), timeout: timeout).get()
        return (r, try #require(r.vectors.floats))
    }

    @Test("embed through the daemon matches the reference embeddings, batched and one by one")
    func parityThroughDaemon() throws {
        #expect(Reference.items.count == 25, "fixture not found or incomplete at \(Paths.fixture.path)")
        let d = try DaemonProcess(extraArgs: ["--model", Paths.referenceModel])
        let c = try d.client()
        let texts = Reference.items.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
        let (all, vectors) = try Self.embed(c, texts)
        #expect(all.dimension == 384)
        for (i, item) in Reference.items.enumerated() {
            let batched = vectors[i]
            let single = try Self.embed(c, [texts[i]], timeout: 30).1[0]
            for v in [batched, single] {
                #expect(v.count == 384)
                var maxDiff: Float = 0, dot: Float = 0
                for h in 0..<min(v.count, 384) { maxDiff = max(maxDiff, abs(v[h] - item.embedding[h])); dot += v[h] * item.embedding[h] }
                #expect(maxDiff <= 1e-4, "\(item.name): \(maxDiff)")
                #expect(dot >= 0.99999, "\(item.name): cosine \(dot)")
            }
        }
        // The 452-token sentence is cut to the model's 256 and says so.
        let long = try #require(Reference.items.firstIndex { $0.name == "long_256_plus" })
        #expect(all.tokens[long] == 256)
        #expect(all.truncated[long])
        let info = try c.call(ModelInfo.self).get()
        #expect(info.encoder.parameterCount == 22_565_376)
        #expect(info.memory.residentBytes > 0)
        #expect(info.kernels.precision == "fp32")
        #expect(info.kernels.available.first == "baseline")
        #expect(info.kernels.fp32 == info.kernels.available.last, "the best variant the CPU runs is used by default")
    }

    @Test("--precision int8 serves vectors within cosine 0.98 (mean 0.995) of the reference; --kernels baseline; an unknown variant is refused")
    func int8AndKernelChoice() throws {
        let texts = Reference.items.map { $0.text.trimmingCharacters(in: .whitespacesAndNewlines) }
        for args in [["--precision", "int8"], ["--precision", "int8", "--kernels", "baseline"]] {
            let d = try DaemonProcess(extraArgs: ["--model", Paths.referenceModel] + args)
            let c = try d.client()
            let vectors = try Self.embed(c, texts).1
            // The issue's fidelity bounds (on Banking77: mean 0.9976, min 0.9901); the fixture
            // holds harder cases (a 256-token text, emoji, other scripts).
            var sum: Float = 0
            for (i, item) in Reference.items.enumerated() {
                let v = vectors[i]
                var dot: Float = 0
                for h in 0..<min(v.count, 384) { dot += v[h] * item.embedding[h] }
                #expect(dot >= 0.98, "\(args) \(item.name): cosine \(dot)")
                sum += dot
            }
            #expect(sum / Float(Reference.items.count) >= 0.995, "\(args): mean cosine \(sum / Float(Reference.items.count))")
            let kernels = try c.call(ModelInfo.self).get().kernels
            #expect(kernels.precision == "int8")
            if args.contains("baseline") {
                #expect(kernels.fp32 == "baseline")
                #expect(kernels.int8 == "baseline")
            }
        }
        // The configuration's model.precision chooses it when the flag does not; the flag wins.
        let conf = TempDir()
        let cfg = conf.path + "/robustd.toml"
        try Data("[model]\nprecision = \"int8\"\n".utf8).write(to: URL(fileURLWithPath: cfg))
        for (args, expected) in [([String](), "int8"), (["--precision", "fp32"], "fp32")] {
            let d = try DaemonProcess(extraArgs: ["--model", Paths.referenceModel, "--config", cfg] + args)
            #expect(try d.client().call(ModelInfo.self).get().kernels.precision == expected, "\(args)")
        }
        // A variant that does not exist stops the daemon at start with a message naming it.
        let dir = TempFolder()
        let (status, _, err) = try run(Binaries.robustd, ["--socket", dir.path + "/s.sock", "--state-dir", dir.path + "/state", "--kernels", "sse9"])
        #expect(status != 0)
        #expect(err.contains("sse9") && err.contains("--kernels"), "\(err)")
    }

    @Test("concurrent requests from many clients are merged into shared batches, each answer its own")
    func batching() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let d = try DaemonProcess(extraArgs: ["--model", dir.path, "--max-batch-delay-ms", "20", "--max-batch", "64"])
        let reference = try Self.embed(try d.client(), ["my card is late", "the card?"]).1
        final class Box: @unchecked Sendable { let lock = NSLock(); var failures: [String] = [] }
        let box = Box()
        let group = DispatchGroup()
        let path = d.socketPath
        for k in 0..<8 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let c = try RPCClient.validating(path: path)
                    for _ in 0..<10 {
                        let text = k % 2 == 0 ? "my card is late" : "the card?"
                        let got = try ModelTests.embed(c, [text], timeout: 30).1[0]
                        let expected = reference[k % 2]
                        for h in 0..<8 {
                            let a = got[h], b = expected[h]
                            if abs(a - b) > 1e-5 { box.lock.lock(); box.failures.append("client \(k): \(a) vs \(b)"); box.lock.unlock(); return }
                        }
                    }
                } catch { box.lock.lock(); box.failures.append("\(error)"); box.lock.unlock() }
            }.start()
        }
        group.wait()
        #expect(box.failures == [])
        let batching = try d.client().call(ModelInfo.self).get().batching
        #expect(batching.sequences == 82)
        #expect(batching.batches < 82, "no request was merged: \(batching.batches) batches for \(batching.sequences) texts")
        #expect(batching.meanBatchSize > 1)
    }

    @Test("a request cancelled while queued is answered -32800 and left out of its batch")
    func cancelQueued() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let d = try DaemonProcess(extraArgs: ["--model", dir.path, "--compute-threads", "1"])
        let c = try d.client()
        // Occupy the only compute thread, so the embed batch waits behind it.
        let sleeper = try d.client()
        try sleeper.send(.request(id: .int(1), method: "debug/sleep", params: ["ms": 600, "steps": 6]))
        usleep(100_000)
        try c.send(.request(id: .int(10), method: "embed", params: ["texts": ["my card is late"]]))
        try c.send(.request(id: .int(11), method: "embed", params: ["texts": ["the card?", "a b c"]]))
        usleep(50_000)
        try c.send(.notification(method: "$/cancelRequest", params: ["id": 11]))
        let cancelled = try c.awaitResponse(id: .int(11), timeout: 5)
        #expect(cancelled.map { _ in 0 } == .failure(RPCError(.requestCancelled, "Request cancelled")))
        let first = try c.awaitResponse(id: .int(10), timeout: 10)
        #expect((try? first.get())?["vectors"]?.arrayValue?.count == 1)
        #expect(try c.call(ModelInfo.self).get().batching.sequences == 1)
    }

    @Test("without a model, model methods answer -32020 and say how to load one; bad params are named")
    func noModelAndBadParams() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        guard case .failure(let e) = try c.call(Embed.self, .init(texts: ["x"])) else { Issue.record("embed worked without a model"); return }
        #expect(e.code.rawValue == -32020)
        #expect(e.message.contains("--model"))
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        let m = try DaemonProcess(extraArgs: ["--model", dir.path])
        let mc = try m.client()
        guard case .failure(let empty) = try mc.call(Embed.self, .init(texts: [])) else { Issue.record("empty accepted"); return }
        #expect(empty.data?["field"] == "texts")
        // A number where a text goes, as any client may send it.
        guard case .failure(let wrong) = try mc.call("embed", ["texts": [1]]) else { Issue.record("number accepted"); return }
        #expect(wrong.data?["field"] == "texts[0]")
        // A request larger than a batch is cut into batches and joined in order.
        let big = try Self.embed(mc, (0..<150).map { $0 % 2 == 0 ? "my card" : "a b c" }).1
        #expect(big.count == 150)
        // The same text in another batch: equal up to float rounding (different kernel paths).
        for (a, b) in [(0, 148), (1, 149)] {
            let u = big[a], v = big[b]
            #expect(u.count == v.count && zip(u, v).allSatisfy { abs($0 - $1) < 1e-5 })
        }
        let ok = try Self.embed(mc, ["", String(repeating: "card ", count: 100)]).0
        #expect(ok.tokens == [2, 12])
        #expect(ok.truncated == [false, true])
    }

    @Test("a corrupt model folder stops the daemon at start with the reason")
    func corruptModelAtStart() throws {
        let dir = TempFolder()
        try TinyModel.write(to: dir.path)
        try Data("{".utf8).write(to: URL(fileURLWithPath: dir.path + "/config.json"))
        let tmp = TempDir()
        let (status, _, err) = try run(Binaries.robustd, ["--socket", tmp.path + "/s.sock", "--model", dir.path, "--state-dir", tmp.path + "/state"])
        #expect(status != 0)
        #expect(err.contains("config.json"))
        #expect(!FileManager.default.fileExists(atPath: tmp.path + "/s.sock"))
    }
}
