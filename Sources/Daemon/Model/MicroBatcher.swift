import Encoder
import EventLoop
import Foundation
import JSON
import JSONRPC
import Tensor

/// Sentence vectors for one request's texts, as the batcher hands them back.
public struct EmbeddedTexts: Sendable {
    /// `count × dimension` floats, row-major.
    public var vectors: [Float]
    public var dimension: Int
    public var tokens: [Int]
    public var truncated: [Bool]

    public func vector(_ i: Int) -> ArraySlice<Float> { vectors[(i * dimension)..<((i + 1) * dimension)] }
}

/// Gathers the texts of concurrent requests from every client into one batch for the encoder.
///
/// Policy: when the engine is idle a request runs at once (no added latency, whatever the
/// traffic); while a batch runs, requests gather, and when it ends they run together (up to
/// `maxBatch` texts a batch). A text thus waits at most for the batch ahead of it. One batch
/// runs at a time (the engine uses both cores itself). A request cancelled while queued is
/// left out of its batch.
///
/// `maxDelayMs` is kept for configuration compatibility and reported by `model/info`; it no
/// longer delays anything (docs/performance.md, "Micro-batching", has the measurements).
///
/// - Important: Used only on the loop thread.
public final class MicroBatcher {
    struct Pending {
        let texts: [String]
        /// The encoder to run (a version's, with its fine-tuned layers); nil: the base model.
        let encoder: SentenceEncoder?
        let token: CancellationToken
        let completion: (Result<EmbeddedTexts, RPCError>) -> Void
    }

    public let engine: BatchEngine
    public let maxBatch: Int
    public let maxDelayMs: UInt64
    private let loop: Loop
    private let compute: ComputePool
    private var queue: [Pending] = []
    private var queuedTexts = 0
    /// Work that may wait (a rollout's shadow scoring): run only when no request is queued,
    /// in batches of at most `maxBackgroundBatch` texts (one: docs/rollout.md has the p99
    /// figures for 16, 4 and 1), so that a request arriving meanwhile waits for one short
    /// encoding at most.
    private var background: [Pending] = []
    private var backgroundTexts = 0
    public var maxBackgroundBatch = 1
    private var running = false
    public private(set) var batches = 0
    public private(set) var sequences = 0
    /// Called with each batch's text count as it is dispatched (live metrics).
    public var onBatch: ((Int) -> Void)?

    public init(engine: BatchEngine, loop: Loop, compute: ComputePool, maxBatch: Int, maxDelayMs: UInt64) {
        self.engine = engine
        self.loop = loop
        self.compute = compute
        self.maxBatch = max(1, maxBatch)
        self.maxDelayMs = maxDelayMs
    }

    /// Texts waiting for a batch.
    public var pendingTexts: Int { queuedTexts }
    /// Background texts waiting for an idle moment.
    public var pendingBackgroundTexts: Int { backgroundTexts }

    /// Queues `texts`; `completion` runs on the loop with their vectors (or -32800 if the
    /// token was cancelled before the batch ran).
    /// Requests for different encoders (versions with different layers) never share a batch.
    public func submit(_ texts: [String], encoder: SentenceEncoder? = nil, token: CancellationToken, background: Bool = false,
                       completion: @escaping (Result<EmbeddedTexts, RPCError>) -> Void) {
        // A request larger than a batch is cut into batch-sized parts, so that one request can
        // never make the encoder's workspace grow without bound; the parts are joined in order.
        let limit = background ? min(maxBatch, maxBackgroundBatch) : maxBatch
        if texts.count > limit {
            let parts = stride(from: 0, to: texts.count, by: limit).map { Array(texts[$0..<min($0 + limit, texts.count)]) }
            var results = [EmbeddedTexts?](repeating: nil, count: parts.count)
            var remaining = parts.count
            var failed = false
            for (k, part) in parts.enumerated() {
                enqueue(part, encoder: encoder, token: token, background: background) { r in
                    guard !failed else { return }
                    switch r {
                    case .failure(let e):
                        failed = true
                        completion(.failure(e))
                    case .success(let e):
                        results[k] = e
                        remaining -= 1
                        if remaining == 0 {
                            let all = results.map { $0! }
                            completion(.success(EmbeddedTexts(vectors: all.flatMap(\.vectors), dimension: all[0].dimension,
                                                              tokens: all.flatMap(\.tokens), truncated: all.flatMap(\.truncated))))
                        }
                    }
                }
            }
            return
        }
        enqueue(texts, encoder: encoder, token: token, background: background, completion: completion)
    }

    private func enqueue(_ texts: [String], encoder: SentenceEncoder?, token: CancellationToken, background isBackground: Bool,
                         completion: @escaping (Result<EmbeddedTexts, RPCError>) -> Void) {
        loop.preconditionOnLoop()
        let p = Pending(texts: texts, encoder: encoder, token: token, completion: completion)
        if isBackground {
            background.append(p)
            backgroundTexts += texts.count
        } else {
            queue.append(p)
            queuedTexts += texts.count
        }
        // Busy: gather; the running batch's end dispatches what gathered.
        if !running { dispatch() }
    }

    private func dispatch() {
        if queue.isEmpty && !background.isEmpty { dispatchBackground(); return }
        // Take requests up to maxBatch texts (a larger request goes alone), dropping cancelled ones.
        var batch: [Pending] = []
        var count = 0
        while let first = queue.first {
            if first.token.isCancelled {
                queue.removeFirst()
                queuedTexts -= first.texts.count
                first.completion(.failure(.cancelled))
                continue
            }
            if !batch.isEmpty && (count + first.texts.count > maxBatch || first.encoder !== batch[0].encoder) { break }
            batch.append(queue.removeFirst())
            queuedTexts -= first.texts.count
            count += first.texts.count
        }
        guard !batch.isEmpty else { return }
        run(batch, count: count)
    }

    private func run(_ batch: [Pending], count: Int) {
        running = true
        batches += 1
        sequences += count
        onBatch?(count)
        let texts = batch.flatMap(\.texts)
        let counts = batch.map(\.texts.count)
        let engine = self.engine
        let chosen = batch[0].encoder
        compute.submit(work: { _ -> [EmbeddedTexts] in
            let encoder = chosen ?? engine.encoder
            let encodings = encoder.encode(texts)
            let H = encoder.hiddenSize
            let out = Tensor(shape: [max(1, texts.count), H])
            // Sorting by length keeps each worker's share of the batch balanced.
            engine.embed(encodings.map(\.ids), into: out, using: chosen)
            var results: [EmbeddedTexts] = []
            var start = 0
            for n in counts {
                let vectors = Array(UnsafeBufferPointer(start: out.data + start * H, count: n * H))
                results.append(EmbeddedTexts(vectors: vectors, dimension: H,
                                             tokens: encodings[start..<(start + n)].map(\.ids.count),
                                             truncated: encodings[start..<(start + n)].map(\.wasTruncated)))
                start += n
            }
            return results
        }, completion: { [weak self] results in
            guard let self else { return }
            self.running = false
            if let results {
                for (p, r) in zip(batch, results) { p.completion(.success(r)) }
            } else {
                for p in batch { p.completion(.failure(.internalError("the batch did not run"))) }
            }
            // Whatever gathered while this batch ran has already waited: run it now.
            if !self.queue.isEmpty || !self.background.isEmpty { self.dispatch() }
        })
    }

    /// Takes background requests up to `maxBackgroundBatch` texts (same encoder) and runs them.
    private func dispatchBackground() {
        var batch: [Pending] = []
        var count = 0
        while let first = background.first {
            if first.token.isCancelled {
                background.removeFirst()
                backgroundTexts -= first.texts.count
                first.completion(.failure(.cancelled))
                continue
            }
            if !batch.isEmpty && (count + first.texts.count > maxBackgroundBatch || first.encoder !== batch[0].encoder) { break }
            batch.append(background.removeFirst())
            backgroundTexts -= first.texts.count
            count += first.texts.count
        }
        guard !batch.isEmpty else { return }
        run(batch, count: count)
    }

    public func close() {}
}
