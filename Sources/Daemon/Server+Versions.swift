import Datasets
import Encoder
import EventLoop
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring
import Store

extension Server {
    /// `model/fit` and `model/versions`; loads the active version at start.
    func registerVersionMethods() {
        router.onDeferred(ModelFit.self) { [unowned self] params, ctx in self.fit(params, ctx) }

        router.onDeferred(ModelVersions.self) { [unowned self] _, ctx in
            self.store.run({ store throws(StoreError) -> ([VersionRecord], Int?) in
                (try store.versions(), try store.activeVersion())
            }, completion: { result in
                ctx.reply(result.map { (list, active) in
                    let versions = list.map { v in
                        ModelVersions.Result.Version(id: v.id, parent: v.parent, createdAt: v.createdAt, method: v.method, dataset: v.dataset,
                                                     status: v.id == active ? "active" : v.status.rawValue,
                                                     report: (try? JSONParser.parse(v.report)) ?? .object([:]))
                    }
                    return (try? JSONValue.encoding(ModelVersions.Result(active: active, versions: versions))) ?? .null
                })
            })
        }
    }

    /// Reads the active version's files, if there is one and a model to serve it with.
    func loadActiveVersion() {
        guard encoder != nil else { return }
        let stateDir = config.stateDir
        store.run({ store throws(StoreError) -> Int? in try store.activeVersion() }, completion: { [unowned self] result in
            guard case .success(let id?) = result else { return }
            self.compute.submit(work: { _ -> Result<LoadedVersion, ErrorBox> in
                do {
                    let (v, layers) = try VersionFiles.read(id: id, stateDir: stateDir)
                    return .success(LoadedVersion(version: v, layers: layers))
                } catch { return .failure(ErrorBox("\(error)")) }
            }, completion: { [unowned self] r in
                switch r {
                case .success(let loaded)?:
                    let v = loaded.version
                    self.setActive(v, layers: loaded.layers)
                    self.logger.info("active version loaded", metadata: ["version": "\(id)", "labels": "\(v.labels.count)"])
                case .failure(let e)?:
                    self.logger.error("the active version could not be loaded; scoring is unavailable until another is activated",
                                      metadata: ["version": "\(id)", "error": "\(e.message)"])
                case nil: break
                }
            })
        })
    }

    struct ErrorBox: Error, Sendable { let message: String; init(_ m: String) { message = m } }

    struct LoadedVersion: @unchecked Sendable {
        let version: ModelVersion
        let layers: [Int: BertLayerWeights]
    }

    private struct FitData: Sendable {
        var labels: [String]
        var train: [Example]
        var validation: [Example]
        var droppedValidation: Int
    }

    private func fit(_ params: ModelFit.Params, _ ctx: RequestContext) {
        guard let batcher else { ctx.reply(.failure(Self.noModelError)); return }
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
        let seed = UInt64(truncatingIfNeeded: params.seed ?? 42)
        let name = params.dataset
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
            if validation.isEmpty { (train, validation) = Self.stratifiedSplit(train, fraction: fraction, seed: seed) }
            let known = Set(labels)
            let kept = validation.filter { known.contains($0.label) }
            return FitData(labels: labels, train: train, validation: kept, droppedValidation: validation.count - kept.count)
        }, completion: { [unowned self] result in
            switch result {
            case .failure(let e):
                progress?.end(message: "failed")
                ctx.reply(.failure(e))
            case .success(let data):
                // 2. Embed through the shared batcher, one chunk at a time, so other clients' requests interleave.
                let texts = data.train.map(\.text) + data.validation.map(\.text)
                self.embedAll(texts, batcher: batcher, ctx: ctx, progress: progress) { [unowned self] vectors in
                    self.finishFit(data, vectors: vectors, lambdas: lambdas, recall: recall, params: params, started: started,
                                   ctx: ctx, progress: progress)
                }
            }
        })
    }

    /// Embeds `texts` in chunks through the batcher; `done` gets `[N, D]` floats.
    func embedAll(_ texts: [String], batcher: MicroBatcher, encoder versionEncoder: SentenceEncoder? = nil, ctx: RequestContext,
                  progress: WorkDoneProgress?, percentOf: (from: Int, to: Int) = (0, 80), done: @escaping ([Float]) -> Void) {
        var vectors: [Float] = []
        vectors.reserveCapacity(texts.count * (encoder?.hiddenSize ?? 0))
        let chunk = max(1, batcher.maxBatch)
        func next(_ start: Int) {
            if ctx.isCancelled || ctx.hasReplied { progress?.end(message: "cancelled"); return }
            guard start < texts.count else { done(vectors); return }
            let end = min(start + chunk, texts.count)
            batcher.submit(Array(texts[start..<end]), encoder: versionEncoder, token: ctx.token) { result in
                switch result {
                case .failure(let e): progress?.end(message: "failed"); ctx.reply(.failure(e))
                case .success(let r):
                    vectors.append(contentsOf: r.vectors)
                    if (end / chunk) % 10 == 0 || end == texts.count {
                        progress?.report(message: "embedded \(end) of \(texts.count) texts",
                                         percentage: percentOf.from + end * (percentOf.to - percentOf.from) / texts.count)
                    }
                    next(end)
                }
            }
        }
        next(0)
    }

    private func finishFit(_ data: FitData, vectors: [Float], lambdas: [Double], recall: Double, params: ModelFit.Params,
                           started: Date, ctx: RequestContext, progress: WorkDoneProgress?) {
        let D = encoder!.hiddenSize
        let index = Dictionary(uniqueKeysWithValues: data.labels.enumerated().map { ($1, $0) })
        let nTrain = data.train.count
        let trainX = Array(vectors[0..<(nTrain * D)]), valX = Array(vectors[(nTrain * D)...])
        let trainY = data.train.map { index[$0.label]! }, valY = data.validation.map { index[$0.label]! }
        let stateDir = config.stateDir
        let dataset = params.dataset
        progress?.report(message: "training the head", percentage: 85)
        ctx.compute({ _ -> FittedVersion in
            let (v, report) = HeadFitting.fit(id: 0, labels: data.labels, dimension: D, train: (trainX, trainY),
                                              validation: (valX, valY), lambdas: lambdas, oosRecall: recall)
            return FittedVersion(version: v, report: report)
        }, then: { [unowned self] fitted in
            let activateRequested = params.activate
            let currentlyActive = self.activeVersion != nil
            let activate = activateRequested ?? !currentlyActive
            progress?.report(message: "writing the version", percentage: 95)
            self.store.run({ store throws(StoreError) -> ModelVersion in
                let id = try store.createVersion(parent: nil, method: "fit", dataset: dataset)
                let r = fitted.version
                let v = ModelVersion(id: id, labels: r.labels, head: r.head, temperature: r.temperature, outOfScope: r.outOfScope, oosThreshold: r.oosThreshold)
                let reportJSON = (try? JSONValueEncoder().encode(fitted.report)) ?? .null
                do {
                    try VersionFiles.write(.init(version: v), manifest: ["dataset": .string(dataset), "method": "fit", "report": reportJSON], stateDir: stateDir)
                } catch {
                    try? store.finishVersion(id: id, status: .failed, report: JSONWriter.string(reportJSON), activate: false)
                    throw StoreError(.sqlite(0), "writing version \(id) failed: \(error)")
                }
                try store.finishVersion(id: id, status: .ready, report: JSONWriter.string(reportJSON), activate: activate)
                return v
            }, completion: { [unowned self] result in
                switch result {
                case .failure(let e):
                    progress?.end(message: "failed")
                    ctx.reply(.failure(e))
                case .success(let v):
                    if activate { self.setActive(v, layers: [:]) }
                    let r = fitted.report
                    self.logger.info("version fitted", metadata: ["version": "\(v.id)", "validationAccuracy": "\(r.validationAccuracy)", "active": "\(activate)"])
                    progress?.end(message: "version \(v.id) ready")
                    ctx.reply(ModelFit.Result(version: v.id, active: activate, labels: v.labels.count, trainExamples: data.train.count,
                                              validationExamples: data.validation.count, lambda: r.lambda, trainAccuracy: r.trainAccuracy,
                                              validationAccuracy: r.validationAccuracy, temperature: r.temperature, eceBefore: r.eceBefore,
                                              eceAfter: r.eceAfter, oosThreshold: Double(r.oosThreshold), seconds: Date().timeIntervalSince(started)))
                }
            })
        })
    }

    struct FittedVersion: Sendable {
        let version: ModelVersion
        let report: HeadFitting.Report
    }

    /// A seeded, per-class split: about `fraction` of each class with at least 2 examples goes to validation.
    static func stratifiedSplit(_ examples: [Example], fraction: Double, seed: UInt64) -> ([Example], [Example]) {
        let (train, validation) = Scoring.stratifiedSplit(examples, label: \.label, fraction: fraction, seed: seed)
        return (train, validation)
    }
}
