import Encoder
import EventLoop
import Foundation
import JSONRPC
import Logging
import Scoring

/// The resident model and the version that answers: the base encoder and its batcher, the
/// active version with the encoder that serves it, when it became active, and who wants to
/// hear of a change.
///
/// Requests read ``serving`` once when they arrive and carry it to their end, so a request in
/// flight during an activation finishes on the version it started with.
///
/// - Important: Used only on the loop thread; every entry point checks it.
final class ActiveModel {
    /// What answers a request: the version, the encoder with its layers, the shared batcher.
    struct Serving {
        let version: ModelVersion
        /// nil: the base encoder.
        let encoder: SentenceEncoder?
        let batcher: MicroBatcher
    }

    let loop: Loop
    /// The base encoder and the batcher every client shares (nil: started without --model).
    let encoder: SentenceEncoder?
    /// The base encoder in each precision (nil without a model).
    let twins: EncoderTwins?
    let batcher: MicroBatcher?
    private(set) var version: ModelVersion?
    /// The encoder serving ``version``: the base one, or a copy with the version's layers.
    private(set) var versionEncoder: SentenceEncoder?
    private(set) var changedLayers: [Int] = []
    private(set) var activatedAt: Date?
    /// True from start until the stored active version is loaded (or known absent).
    private(set) var isLoading = false
    /// Why the stored active version is not serving (its files failed their checks at start):
    /// what requests answer instead of "no active version", until another is activated.
    private(set) var loadFailure: RPCError?
    private var observers: [(ModelVersion) -> Void] = []
    private var waiters: [(Result<Serving, RPCError>) -> Void] = []
    private var waitTimer: EventLoop.Timer?
    private let readyTimeoutMs: UInt64

    init(loop: Loop, encoder: SentenceEncoder?, batcher: MicroBatcher?, readyTimeoutMs: UInt64 = 10_000) {
        self.loop = loop
        self.encoder = encoder
        self.twins = encoder.map(EncoderTwins.init(base:))
        self.batcher = batcher
        self.readyTimeoutMs = readyTimeoutMs
    }

    /// What serves now, or why nothing does.
    var serving: Result<Serving, RPCError> {
        loop.preconditionOnLoop()
        guard let batcher else { return .failure(DaemonError.noModel) }
        guard let version else { return .failure(loadFailure ?? DaemonError.noVersion) }
        return .success(Serving(version: version, encoder: versionEncoder, batcher: batcher))
    }

    /// Calls `body` with what serves; while the stored active version is still loading at
    /// start, waits for it (at most the ready timeout), so that nothing answers "no active
    /// version" while one is on its way.
    func whenReady(_ body: @escaping (Result<Serving, RPCError>) -> Void) {
        loop.preconditionOnLoop()
        guard isLoading, batcher != nil else { body(serving); return }
        waiters.append(body)
        if waitTimer == nil {
            let t = try? EventLoop.Timer(loop: loop)
            t?.start(timeoutMs: readyTimeoutMs) { [weak self] in
                guard let self else { return }
                self.answerWaiters(.failure(DaemonError.stillLoading(seconds: Double(self.readyTimeoutMs) / 1000)))
            }
            waitTimer = t
        }
    }

    /// The stored active version is being read (start-up).
    func beginLoading() {
        loop.preconditionOnLoop()
        isLoading = true
    }

    /// The stored active version `id` cannot be served: `message` says why.
    func failedToLoad(_ id: Int, _ message: String) {
        loop.preconditionOnLoop()
        loadFailure = RPCError(.noVersion, "The active version \(id) cannot be served: \(message). Activate another version (model/activate) or fit a new one (model/fit)")
    }

    /// Loading at start is over: the version was activated, or there was none (or it failed).
    func finishLoading() {
        loop.preconditionOnLoop()
        guard isLoading else { return }
        isLoading = false
        answerWaiters(serving)
    }

    private func answerWaiters(_ result: Result<Serving, RPCError>) {
        waitTimer?.close()
        waitTimer = nil
        let waiting = waiters
        waiters = []
        for w in waiting { w(result) }
    }

    /// The base encoder with its products in `p` (nil: the daemon's `--precision`): the base
    /// itself, or its twin in the other precision (``EncoderTwins``; the paths that read a
    /// version or fit one make it on the compute pool first).
    func base(_ p: Precision?) -> SentenceEncoder? {
        loop.preconditionOnLoop()
        return twins?.encoder(p)
    }

    /// The precision `v` is served with: its own, or the daemon's.
    func precision(of v: ModelVersion) -> Precision {
        v.precision.flatMap(Precision.init(rawValue:)) ?? encoder?.model.precision ?? .fp32
    }

    /// The encoder serving `v`: the base in its precision, with its layers.
    private func makeEncoder(for v: ModelVersion, layers: [Int: BertLayerWeights]) -> SentenceEncoder? {
        base(precision(of: v)).map { layers.isEmpty ? $0 : $0.replacingLayers(layers) }
    }

    /// Makes `v` the version that answers from the next request on.
    func activate(_ v: ModelVersion, layers: [Int: BertLayerWeights]) {
        loop.preconditionOnLoop()
        versionEncoder = makeEncoder(for: v, layers: layers)
        changedLayers = layers.keys.sorted()
        let changed = version?.id != v.id
        version = v
        loadFailure = nil
        if changed {
            activatedAt = Date()
            for o in observers { o(v) }
        }
    }

    /// `observer` runs on the loop after every change of the active version.
    func onChange(_ observer: @escaping (ModelVersion) -> Void) {
        observers.append(observer)
    }

    /// The encoder for a version's layers (the active pair when it is the active version).
    func encoder(for v: ModelVersion, layers: [Int: BertLayerWeights]) -> SentenceEncoder? {
        if v.id == version?.id { return versionEncoder }
        return makeEncoder(for: v, layers: layers)
    }

    func close() {
        answerWaiters(.failure(RPCError(.shuttingDown, "Shutting down: the daemon is stopping")))
        batcher?.close()
    }
}

extension ActiveModel {
    /// Loads `--model` (a corrupt folder stops the daemon with the file and tensor named) and
    /// sets up the shared batcher; without a model, model methods answer -32020.
    static func load(config: Configuration, loop: Loop, compute: ComputePool, logger: Logger) throws -> ActiveModel {
        guard let path = config.modelPath else { return ActiveModel(loop: loop, encoder: nil, batcher: nil) }
        let enc = try SentenceEncoder.load(folder: path, precision: config.precision)
        let batcher = MicroBatcher(engine: BatchEngine(encoder: enc, threads: config.computeThreads), loop: loop, compute: compute,
                                   maxBatch: config.maxBatch, maxDelayMs: config.maxBatchDelayMs)
        logger.info("model loaded", metadata: [
            "folder": "\(path)", "layers": "\(enc.config.layers)", "hidden": "\(enc.config.hiddenSize)",
            "parameters": "\(enc.config.parameterCount)", "seconds": "\(String(format: "%.2f", enc.loadSeconds))",
            "precision": "\(enc.model.precision.rawValue)",
        ])
        return ActiveModel(loop: loop, encoder: enc, batcher: batcher)
    }
}
