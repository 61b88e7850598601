import Encoder
import Foundation
import EventLoop
import JSON
import JSONRPC
import RobustdAPI
import RPCTransport
import Scoring
import Store

/// A version read back from its files: its head side and the encoder layers it changed.
struct LoadedVersion: @unchecked Sendable {
    let version: ModelVersion
    let layers: [Int: BertLayerWeights]
}

/// The one place versions are written and read: the row, the files, the status.
///
/// A version's row is created first (status `writing`, which a restart turns into `failed`),
/// then its files are written (temporary folder, fsync, rename), then it is marked ready or
/// candidate, and possibly active, in one transaction.
///
/// The repository lives on the loop and holds the store and the compute pool, so a service
/// that only reads versions needs nothing else; what runs on the store thread or the compute
/// pool is `Files`, a value that holds no thread's objects.
///
/// - Important: Used only on the loop thread (the `Files` value on any thread).
final class VersionRepository {
    let files: Files
    let store: StoreThread
    let compute: ComputePool

    var stateDir: String { files.stateDir }
    var protectedWords: Set<String> { files.protectedWords }

    init(files: Files, store: StoreThread, compute: ComputePool) {
        self.files = files
        self.store = store
        self.compute = compute
    }

    /// Reads a version's files on the compute pool, after checking its status in the store;
    /// a problem is answered on `ctx` and `then` does not run.
    func read(_ id: Int, allowed: Set<VersionStatus>, ctx: RequestContext, then: @escaping (LoadedVersion) -> Void) {
        let files = self.files
        store.run({ store throws(StoreError) -> VersionRecord in
            guard let r = try store.versions().first(where: { $0.id == id }) else { throw StoreError(.notFound, "no version \(id) (model/versions lists them)") }
            guard allowed.contains(r.status) else { throw StoreError(.invalid, "version \(id) is \(r.status.rawValue) and cannot be used here") }
            try files.ensureCached(id, in: store)
            return r
        }, completion: { r in
            switch r {
            case .failure(let e): ctx.reply(.failure(e))
            case .success:
                ctx.compute({ _ throws(RPCError) -> LoadedVersion in
                    do { return try files.readFiles(id) } catch { throw RPCError(.invalidData, "version \(id) cannot be loaded: \(error)") }
                }, then: then)
            }
        })
    }

    /// Reads a version's files on the compute pool (fetching them from a shared store first),
    /// without a request (rollouts, a fleet's swap); `body` runs on the loop.
    func load(_ id: Int, _ body: @escaping (Result<LoadedVersion, RPCError>) -> Void) {
        locateAndRead({ _ throws(StoreError) in id }) { r in
            switch r {
            case .located(let loaded): body(.success(loaded))
            case .failed(_, let message): body(.failure(RPCError(.invalidData, "version \(id) cannot be loaded: \(message)")))
            case .storeFailed(let e): body(.failure(RPCError(e.code, "version \(id) cannot be loaded: \(e.message)")))
            case .none: body(.failure(.internalError("loading version \(id) did not run")))
            }
        }
    }

    /// What reading the stored active version at start found.
    enum ActiveLoad {
        case located(LoadedVersion)
        /// The version's files could not be read (`message` says why).
        case failed(id: Int, message: String)
        case storeFailed(RPCError)
        /// No version is active.
        case none
    }

    /// Reads the stored active version's files (start-up); `body` runs on the loop.
    func loadActive(_ body: @escaping (ActiveLoad) -> Void) {
        locateAndRead({ store throws(StoreError) in try store.activeVersion() }, body)
    }

    private func locateAndRead(_ locate: @escaping @Sendable (Store) throws(StoreError) -> Int?, _ body: @escaping (ActiveLoad) -> Void) {
        let files = self.files, compute = self.compute
        store.run({ store throws(StoreError) -> Int? in
            let id = try locate(store)
            if let id { try files.ensureCached(id, in: store) }
            return id
        }, completion: { r in
            switch r {
            case .failure(let e): body(.storeFailed(e))
            case .success(nil): body(.none)
            case .success(let id?):
                compute.submit(work: { _ -> ActiveLoad in
                    do { return .located(try files.readFiles(id)) } catch { return .failed(id: id, message: "\(error)") }
                }, completion: { r in body(r ?? .none) })
            }
        })
    }

    /// The version and the encoder that serves it: the active pair, or read from its files.
    func serving(_ id: Int, model: ActiveModel, ctx: RequestContext, _ body: @escaping (ModelVersion, SentenceEncoder?) -> Void) {
        if let v = model.version, v.id == id { body(v, model.versionEncoder); return }
        read(id, allowed: [.ready, .candidate, .rejected], ctx: ctx) { loaded in
            body(loaded.version, model.encoder(for: loaded.version, layers: loaded.layers))
        }
    }
}

extension VersionRepository {
    /// The files side of the repository: what runs on the store thread (writing a version,
    /// fetching one from a shared store) and on the compute pool (reading one).
    struct Files: Sendable {
        let stateDir: String
        let baseModel: String
        /// The base model's whole words: a version's normaliser never corrects them.
        let protectedWords: Set<String>
        /// The base encoder in each precision: a version in another precision than the daemon's
        /// gets its twin made here, off the loop, when its files are read.
        let twins: EncoderTwins?

        init(stateDir: String, baseModel: String, vocabulary: [String] = [], twins: EncoderTwins? = nil) {
            self.stateDir = stateDir
            self.baseModel = baseModel
            protectedWords = Normaliser.wholeWords(ofVocabulary: vocabulary)
            self.twins = twins
        }

        /// A version's files, read on the calling thread (the compute pool), with the encoder its
        /// precision needs made ready.
        func readFiles(_ id: Int) throws -> LoadedVersion {
            let (v, layers) = try VersionFiles.read(id: id, stateDir: stateDir, protected: protectedWords)
            _ = twins?.encoder(v.precision.flatMap(Precision.init(rawValue:)))
            return LoadedVersion(version: v, layers: layers)
        }

        /// Writes a new version. Runs on the store thread (inside `StoreThread.run`).
        /// - Parameters:
        ///   - make: the version given its id, with its files' contents and manifest entries.
        func create(in store: Store, parent: Int?, method: String, dataset: String?, status: VersionStatus, activate: Bool,
                    make: (Int) -> (VersionFiles.Contents, manifest: [String: JSONValue])) throws(StoreError) -> ModelVersion {
            let id = try store.createVersion(parent: parent, method: method, dataset: dataset)
            let (contents, manifest) = make(id)
            let report = JSONWriter.string(manifest["report"] ?? .object([:]))
            do {
                try VersionFiles.write(contents, manifest: manifest, stateDir: stateDir, baseModel: baseModel)
            } catch {
                try? store.finishVersion(id: id, status: .failed, report: report, activate: false)
                throw StoreError(.sqlite(0), "writing version \(id) failed: \(error)")
            }
            if store.sharesVersionFiles {
                // A fleet: the files go into the shared store before the version is usable, so
                // that every replica can fetch them (and check them) when it needs them.
                do throws(StoreError) {
                    try store.putVersionFiles(id: id, files: try VersionFiles.collect(stateDir: stateDir, id: id))
                } catch {
                    try? store.finishVersion(id: id, status: .failed, report: report, activate: false)
                    throw error
                }
            }
            try store.finishVersion(id: id, status: status, report: report, activate: activate)
            return contents.version
        }

        /// Makes sure a version's files are in the state folder: with a shared store, a version
        /// made on another replica is fetched, checked against its sha256 and installed whole
        /// (temporary folder, rename). Runs on the store thread.
        func ensureCached(_ id: Int, in store: Store) throws(StoreError) {
            guard store.sharesVersionFiles else { return }
            if FileManager.default.fileExists(atPath: VersionFiles.folder(stateDir, id) + "/manifest.json") { return }
            let files = try store.versionFiles(id: id)
            guard !files.isEmpty else { throw StoreError(.notFound, "version \(id)'s files are not in the shared store") }
            for f in files where SHA256.hex(f.bytes) != f.sha256 {
                throw StoreError(.invalid, "version \(id)'s \(f.path) in the shared store does not match its sha256")
            }
            do {
                try VersionFiles.install(files, id: id, stateDir: stateDir)
            } catch {
                throw StoreError(.invalid, "version \(id) cannot be cached in \(stateDir): \(error)")
            }
        }
    }
}
