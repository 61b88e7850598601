import Datasets
import Encoder
import EventLoop
import Foundation
import Tensor
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport
import Scoring
import Store

/// The model and its versions: `model/info`, `embed`, `model/fit` (the first version),
/// `model/versions`, `model/activate` (promote or roll back); loads the active version at start.
///
/// - Important: Used only on the loop thread.
final class VersionService: DaemonService {
    private let model: ActiveModel
    private let pipeline: ScoringPipeline
    private let store: StoreThread
    private let repository: VersionRepository
    private let compute: ComputePool
    private let logger: Logger

    init(model: ActiveModel, pipeline: ScoringPipeline, store: StoreThread, repository: VersionRepository, compute: ComputePool,
         logger: Logger) {
        self.model = model
        self.pipeline = pipeline
        self.store = store
        self.repository = repository
        self.compute = compute
        self.logger = logger
        VersionFiles.cleanTemporaries(stateDir: repository.stateDir)
        loadActiveVersion()
    }

    func register(on router: Router) {
        // Both describe or use the active version: while the stored one loads at start they
        // wait for it (as score does), then answer with or without one.
        router.onDeferred(ModelInfo.self) { [unowned self] _, ctx in
            self.model.whenReady { [weak self] _ in
                guard let self else { return }
                do throws(RPCError) { ctx.reply(try self.info()) } catch { ctx.reply(Result<JSONValue, RPCError>.failure(error)) }
            }
        }
        router.onDeferred(Embed.self) { [unowned self] params, ctx in
            self.model.whenReady { [weak self] _ in self?.embed(params, ctx) }
        }
        router.onDeferred(ModelFit.self) { [unowned self] params, ctx in self.fit(params, ctx) }
        router.onDeferred(ModelVersions.self) { [unowned self] params, ctx in self.versions(params, ctx) }
        router.onDeferred(ModelActivate.self) { [unowned self] params, ctx in self.activate(params.version, ctx) }
    }

    func gauges(into values: inout [String: Double]) {
        values["version.active"] = Double(model.version?.id ?? 0)
        values["queue.embedPending"] = Double(model.batcher?.pendingTexts ?? 0)
    }

    // MARK: Start-up

    /// Reads the active version's files, if there is one and a model to serve it with.
    /// Requests that need it wait meanwhile (`ActiveModel.whenReady`).
    private func loadActiveVersion() {
        guard model.encoder != nil else { return }
        model.beginLoading()
        repository.loadActive { [weak self] found in
            guard let self else { return }
            switch found {
            case .located(let loaded):
                self.model.activate(loaded.version, layers: loaded.layers)
                self.logger.info("active version loaded", metadata: ["version": "\(loaded.version.id)", "labels": "\(loaded.version.labels.count)"])
            case .failed(let id, let message):
                self.logger.error("the active version could not be loaded; scoring is unavailable until another is activated",
                                  metadata: ["version": "\(id)", "error": "\(message)"])
                self.model.failedToLoad(id, message)
            case .storeFailed, .none: break
            }
            self.model.finishLoading()
        }
    }

    // MARK: model/info and embed

    private func info() throws(RPCError) -> ModelInfo.Result {
        guard let enc = model.encoder, let batcher = model.batcher else { throw DaemonError.noModel }
        let c = enc.config
        return ModelInfo.Result(
            encoder: .init(folder: enc.folder, architecture: "BertModel", hiddenSize: c.hiddenSize, layers: c.layers, heads: c.heads,
                           intermediateSize: c.intermediateSize, vocabSize: c.vocabSize, maxSeqLength: enc.maxSeqLength,
                           parameterCount: c.parameterCount, pooling: enc.pooling.rawValue, normalize: enc.normalize),
            tokenizer: .init(kind: "BertWordPiece", vocabularySource: enc.vocabularySource, lowercase: enc.tokenizer.normalizer.lowercase),
            loadSeconds: enc.loadSeconds,
            memory: .init(residentBytes: Self.residentBytes(), mappedWeightBytes: enc.mappedWeightBytes, packedWeightBytes: enc.packedWeightBytes),
            batching: .init(maxBatch: batcher.maxBatch, maxDelayMs: Int(batcher.maxDelayMs), batches: batcher.batches,
                            sequences: batcher.sequences,
                            meanBatchSize: batcher.batches == 0 ? 0 : Double(batcher.sequences) / Double(batcher.batches)),
            computeThreads: compute.threadCount,
            kernels: .init(cpuFeatures: CPUFeatures.detected.names, fp32: Kernels.active.rawValue, int8: Kernels.activeInt8.rawValue,
                           available: Kernels.supported.map(\.rawValue),
                           precision: (model.version.map { model.precision(of: $0) } ?? enc.model.precision).rawValue,
                           defaultPrecision: enc.model.precision.rawValue))
    }

    private func embed(_ params: Embed.Params, _ ctx: RequestContext) {
        guard let batcher = model.batcher else { ctx.reply(.failure(DaemonError.noModel)); return }
        guard !params.texts.isEmpty else {
            ctx.reply(.failure(.invalidParams("'texts' must hold at least one text", field: "texts", expected: "a non-empty array of strings", found: "an empty array")))
            return
        }
        guard params.texts.count <= Embed.maxTexts else {
            ctx.reply(.failure(.invalidParams("'texts' holds \(params.texts.count) texts; at most \(Embed.maxTexts) per request",
                                              field: "texts", expected: "at most \(Embed.maxTexts) texts", found: "\(params.texts.count) texts")))
            return
        }
        let base64 = params.encoding == .base64
        // The active version's encoder (its fine-tuned layers, if any) makes the vectors.
        batcher.submit(params.texts, encoder: model.versionEncoder, token: ctx.token) { result in
            switch result {
            case .failure(let e): ctx.reply(.failure(e))
            case .success(let r):
                let n = r.tokens.count
                let vectors: Embed.Vectors = base64 ? .base64((0..<n).map { Embed.Vectors.base64(r.vector($0)) })
                                                    : .float((0..<n).map { Array(r.vector($0)) })
                ctx.reply(Embed.Result(dimension: r.dimension, vectors: vectors, tokens: r.tokens, truncated: r.truncated))
            }
        }
    }

    /// The daemon's resident set size, from /proc/self/statm.
    static func residentBytes() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let parts = s.split(separator: " ")
        guard parts.count > 1, let pages = Int(parts[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    // MARK: model/versions and model/activate

    private func versions(_ params: ModelVersions.Params, _ ctx: RequestContext) {
        let limit = params.limit ?? 1000
        guard (1...1000).contains(limit) else {
            ctx.reply(.failure(.invalidParams("'limit' must be 1 to 1000", field: "limit", expected: "1…1000", found: "\(limit)"))); return
        }
        let after: Int
        do throws(RPCError) { after = try PageCursor.decode(ModelVersions.name, params.cursor, count: 1)?[0] ?? 0 } catch {
            ctx.reply(.failure(error)); return
        }
        store.run({ store throws(StoreError) -> ([VersionRecord], Int?) in
            (try store.versions(), try store.activeVersion())
        }, completion: { result in
            ctx.reply(result.map { (list, active) in
                let rest = list.filter { $0.id > after }.sorted { $0.id < $1.id }
                let page = rest.prefix(limit)
                let versions = page.map { v in
                    ModelVersions.Result.Version(id: v.id, parent: v.parent, createdAt: v.createdAt, method: v.method, dataset: v.dataset,
                                                 status: v.id == active ? .active : ModelVersions.Status(rawValue: v.status.rawValue) ?? .failed,
                                                 report: (try? JSONValueDecoder().decode(VersionReport.self, fromJSON: v.report))
                                                    ?? .unrecognised(.object([:])))
                }
                let next = rest.count > limit ? page.last.map { PageCursor.encode(ModelVersions.name, [$0.id]) } : nil
                return ModelVersions.Result(active: active, versions: Array(versions), nextCursor: next)
            })
        })
    }

    private func activate(_ id: Int, _ ctx: RequestContext) {
        guard model.encoder != nil else { ctx.reply(.failure(DaemonError.noModel)); return }
        // Load the files first: a version whose files are damaged is refused and nothing changes.
        repository.read(id, allowed: [.ready, .candidate], ctx: ctx) { [weak self] loaded in
            guard let self else { return }
            self.store.run({ store throws(StoreError) in try store.setActive(id) }, completion: { [weak self] r in
                guard let self else { return }
                switch r {
                case .failure(let e): ctx.reply(.failure(e))
                case .success:
                    let previous = self.model.version?.id
                    self.model.activate(loaded.version, layers: loaded.layers)
                    self.logger.info("version activated", metadata: ["version": "\(id)", "previous": "\(previous.map(String.init) ?? "-")"])
                    ctx.reply(ModelActivate.Result(active: id, previous: previous, changedLayers: loaded.layers.keys.sorted()))
                }
            })
        }
    }

    // MARK: model/fit

    private struct FitData: Sendable {
        var labels: [String]
        var train: [Example]
        var validation: [Example]
        var droppedValidation: Int
    }

    struct FittedVersion: Sendable {
        let version: ModelVersion
        let report: HeadFitting.Report
    }

    private func fit(_ params: ModelFit.Params, _ ctx: RequestContext) {
        guard let batcher = model.batcher else { ctx.reply(.failure(DaemonError.noModel)); return }
        let started = Date()
        let fraction = params.validationFraction ?? 0.1
        guard fraction > 0 && fraction < 0.5 else {
            ctx.reply(.failure(.invalidParams("'validationFraction' must be between 0 and 0.5", field: "validationFraction", expected: "0 < f < 0.5", found: "\(fraction)")))
            return
        }
        let lambdas = params.lambdas ?? HeadFitting.defaultLambdas
        guard !lambdas.isEmpty, lambdas.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            ctx.reply(.failure(.invalidParams("'lambdas' must be positive numbers", field: "lambdas", expected: "an array of positive numbers")))
            return
        }
        let recall = params.oosRecall ?? 0.95
        guard recall > 0.5 && recall < 1 else {
            ctx.reply(.failure(.invalidParams("'oosRecall' must be between 0.5 and 1", field: "oosRecall", expected: "0.5 < r < 1", found: "\(recall)")))
            return
        }
        if let folds = params.folds, !(1...20).contains(folds) {
            ctx.reply(.failure(.invalidParams("'folds' must be between 1 and 20", field: "folds", expected: "1 ≤ folds ≤ 20", found: "\(folds)")))
            return
        }
        let seed = UInt64(truncatingIfNeeded: params.seed ?? 42)
        let name = params.dataset
        // The version's own precision, when asked: its vectors come from the base encoder's twin.
        let precision = params.precision.flatMap { Precision(rawValue: $0.rawValue) }
        let twins = model.twins
        let progress = ctx.progress(token: params.workDoneToken)
        progress?.begin(title: "Fitting a version on '\(name)'")

        // 1. Read the dataset on the store thread and split it.
        store.run({ store throws(StoreError) -> FitData in
            guard let info = try store.dataset(named: name) else {
                throw StoreError(.notFound, "no dataset named '\(name)' (dataset/list shows them)")
            }
            let all = try store.examples(dataset: info.id, split: nil)
            var train = all.filter { $0.split == .train }
            var validation = all.filter { $0.split == .validation }
            let labels = Array(Set(train.map(\.label))).sorted()
            guard labels.count >= 2 else {
                throw StoreError(.invalid, "the training split of '\(name)' has \(labels.count) class\(labels.count == 1 ? "" : "es"); a head needs at least 2")
            }
            if validation.isEmpty { (train, validation) = Scoring.stratifiedSplit(train, label: \.label, fraction: fraction, seed: seed) }
            let known = Set(labels)
            let kept = validation.filter { known.contains($0.label) }
            return FitData(labels: labels, train: train, validation: kept, droppedValidation: validation.count - kept.count)
        }, completion: { [unowned self] result in
            switch result {
            case .failure(let e):
                progress?.end(message: "failed")
                ctx.reply(.failure(e))
            case .success(let data):
                // 2. Embed through the shared batcher, one chunk at a time, so other clients' requests
                // interleave; in another precision than the daemon's, with the base's twin, made
                // on the compute pool (not on the loop) the first time.
                let texts = data.train.map(\.text) + data.validation.map(\.text)
                let embed = { [unowned self] (fitEncoder: SentenceEncoder?) in
                    self.pipeline.embedAll(texts, batcher: batcher, encoder: fitEncoder, ctx: ctx, progress: progress) { [unowned self] vectors in
                        self.finishFit(data, vectors: vectors, lambdas: lambdas, recall: recall, params: params, started: started,
                                       encoder: fitEncoder, ctx: ctx, progress: progress)
                    }
                }
                guard let precision, let twins else { embed(nil); return }
                if twins.isReady(precision) { embed(twins.encoder(precision)); return }
                ctx.compute({ _ in twins.encoder(precision) }, then: { enc in embed(enc) })
            }
        })
    }

    private func finishFit(_ data: FitData, vectors: [Float], lambdas: [Double], recall: Double, params: ModelFit.Params,
                           started: Date, encoder fitEncoder: SentenceEncoder?, ctx: RequestContext, progress: WorkDoneProgress?) {
        let D = model.encoder!.hiddenSize
        let index = Dictionary(uniqueKeysWithValues: data.labels.enumerated().map { ($1, $0) })
        let nTrain = data.train.count
        let trainX = Array(vectors[0..<(nTrain * D)]), valX = Array(vectors[(nTrain * D)...])
        let trainY = data.train.map { index[$0.label]! }, valY = data.validation.map { index[$0.label]! }
        let protectedWords = repository.protectedWords
        let normalise = params.normalise ?? true, refit = params.refit ?? false
        let folds = HeadFitting.crossValidationFolds(requested: params.folds, refit: refit, lambdas: lambdas.count)
        progress?.report(message: folds.map { "training the head; λ by \($0)-fold cross-validation" } ?? "training the head", percentage: 85)
        ctx.compute({ _ -> FittedVersion in
            // The deployment's words: every text of the dataset, validation included.
            let normaliser = normalise ? Normaliser.build(texts: data.train.map(\.text) + data.validation.map(\.text),
                                                          protected: protectedWords) : nil
            let (v, report) = HeadFitting.fit(id: 0, labels: data.labels, dimension: D, train: (trainX, trainY),
                                              validation: (valX, valY), lambdas: lambdas, oosRecall: recall, refit: refit,
                                              folds: params.folds, normaliser: normaliser)
            return FittedVersion(version: v.withPrecision(params.precision?.rawValue), report: report)
        }, then: { [unowned self] fitted in
            self.measureFragility(fitted, data: data, valY: valY, encoder: fitEncoder, ctx: ctx, progress: progress) { [unowned self] fitted in
                self.writeFitted(fitted, data: data, params: params, started: started, ctx: ctx, progress: progress)
            }
        })
    }

    /// Fragility per intent on the validation split: seeded typo variants (Fragility.typoRate,
    /// Fragility.variants each) read through the version's normaliser, against the clean
    /// predictions. Embedded through the shared batcher like the fit's own texts.
    private func measureFragility(_ fitted: FittedVersion, data: FitData, valY: [Int], encoder: SentenceEncoder?, ctx: RequestContext,
                                  progress: WorkDoneProgress?, done: @escaping (FittedVersion) -> Void) {
        guard let batcher = model.batcher, !data.validation.isEmpty else { done(fitted); return }
        let v = fitted.version, k = Fragility.variants
        let clean = data.validation.map { v.encoderText($0.text) }
        var variants: [String] = []
        for (i, x) in data.validation.enumerated() {
            for j in 0..<k { variants.append(v.encoderText(Typos.perturb(x.text, rate: Fragility.typoRate, seed: 0xF7A6 &+ UInt64(i * k + j)))) }
        }
        progress?.report(message: "measuring fragility under typos", percentage: 90)
        pipeline.embedAll(clean + variants, batcher: batcher, encoder: encoder, ctx: ctx, progress: nil) { vectors in
            ctx.compute({ _ -> FittedVersion in
                let C = v.labels.count, N = clean.count
                let logits = v.head.logits(vectors, count: N * (1 + k))
                let predicted = (0..<(N * (1 + k))).map { n in (0..<C).max { logits[n * C + $0] < logits[n * C + $1] }! }
                let f = Fragility.perIntent(labels: v.labels, truth: valY, clean: Array(predicted[0..<N]), variants: Array(predicted[N...]), perExample: k)
                return FittedVersion(version: v.withFragility(f), report: fitted.report)
            }, then: done)
        }
    }

    private func writeFitted(_ fitted: FittedVersion, data: FitData, params: ModelFit.Params, started: Date, ctx: RequestContext,
                             progress: WorkDoneProgress?) {
            let files = self.repository.files
            let dataset = params.dataset
            let activateRequested = params.activate
            let currentlyActive = self.model.version != nil
            let activate = activateRequested ?? !currentlyActive
            progress?.report(message: "writing the version", percentage: 95)
            self.store.run({ store throws(StoreError) -> ModelVersion in
                try files.create(in: store, parent: nil, method: "fit", dataset: dataset, status: .ready, activate: activate) { id in
                    let v = fitted.version.withID(id)
                    let reportJSON = (try? JSONValueEncoder().encode(fitted.report)) ?? .null
                    return (.init(version: v), ["dataset": .string(dataset), "method": "fit", "report": reportJSON])
                }
            }, completion: { [unowned self] result in
                switch result {
                case .failure(let e):
                    progress?.end(message: "failed")
                    ctx.reply(.failure(e))
                case .success(let v):
                    if activate { self.model.activate(v, layers: [:]) }
                    let r = fitted.report
                    self.logger.info("version fitted", metadata: ["version": "\(v.id)", "validationAccuracy": "\(r.validationAccuracy)", "active": "\(activate)"])
                    progress?.end(message: "version \(v.id) ready")
                    ctx.reply(ModelFit.Result(version: v.id, active: activate, labels: v.labels.count, trainExamples: data.train.count,
                                              validationExamples: data.validation.count, lambda: r.lambda, trainAccuracy: r.trainAccuracy,
                                              validationAccuracy: r.validationAccuracy, temperature: r.temperature, eceBefore: r.eceBefore,
                                              eceAfter: r.eceAfter, oosThreshold: Double(r.oosThreshold), refitted: r.refitted ?? false,
                                              normaliserWords: r.normaliserWords,
                                              precision: ModelPrecision(rawValue: self.model.precision(of: v).rawValue) ?? .fp32,
                                              seconds: Date().timeIntervalSince(started)))
                }
            })
    }

}
