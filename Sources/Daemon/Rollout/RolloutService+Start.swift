import Encoder
import EventLoop
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import Rollout
import RPCTransport
import Scoring
import Store

/// Starting a rollout, loading its candidate, and resuming one after a restart.
extension RolloutService {
    // MARK: Starting

    /// Puts `candidateID` on a rollout against the active version.
    func start(candidate candidateID: Int, overrides: JSONValue?, force: Bool, done: @escaping (Result<RolloutView, RPCError>) -> Void) {
        guard model.encoder != nil else { done(.failure(DaemonError.noModel)); return }
        guard let control = model.version else { done(.failure(DaemonError.noVersion)); return }
        guard candidateID != control.id else {
            done(.failure(.invalidParams("version \(candidateID) is the active version; a rollout needs another version as its candidate", field: "candidate")))
            return
        }
        let settings: RolloutSettings
        do throws(RPCError) { settings = try Self.settings(defaults, overriddenBy: overrides) } catch { done(.failure(error)); return }
        let problems = settings.problems()
        guard problems.isEmpty else {
            done(.failure(.invalidParams("rollout settings: " + problems.joined(separator: "; "), field: "settings")))
            return
        }
        if let r = current, !r.stage.isFinal {
            done(.failure(RPCError(.conflict, "rollout \(r.id) of version \(r.candidate) is running (\(r.stage.rawValue)); abort it (rollout/abort) or wait for its end")))
            return
        }
        store.run({ store throws(StoreError) -> VersionRecord in
            guard let v = try store.versions().first(where: { $0.id == candidateID }) else {
                throw StoreError(.notFound, "no version \(candidateID) (model/versions lists them)")
            }
            guard v.status == .ready || v.status == .candidate else {
                throw StoreError(.invalid, "version \(candidateID) is \(v.status.rawValue) and cannot be rolled out")
            }
            return v
        }, completion: { [weak self] r in
            guard let self else { return }
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let record):
                let gate = Self.offlineGate(record.report)
                if !gate.passed && !force {
                    done(.failure(RPCError(.invalidParams, "version \(candidateID) did not pass its offline gate: \(gate.summary); start with force to roll it out anyway")))
                    return
                }
                self.repository.load(candidateID) { loaded in
                    switch loaded {
                    case .failure(let e): done(.failure(e))
                    case .success(let l):
                        guard l.version.labels == control.labels else {
                            done(.failure(.invalidParams("version \(candidateID) has other intents than the active version \(control.id); a rollout compares answers over the same intents", field: "candidate")))
                            return
                        }
                        self.create(l, control: control, settings: settings, gate: gate.summary, done: done)
                    }
                }
            }
        })
    }

    func create(_ l: LoadedVersion, control: ModelVersion, settings: RolloutSettings, gate: String, done: @escaping (Result<RolloutView, RPCError>) -> Void) {
        let now = Date().timeIntervalSince1970
        let maxCost = control.labels.flatMap { t in control.labels.map { policy.cost(truth: t, predicted: $0) } }.max() ?? policy.unitCost
        let candidateID = l.version.id, controlID = control.id
        store.run({ store throws(StoreError) -> RolloutRecord in
            try store.createRollout(candidate: candidateID, control: controlID, stage: Stage.shadow.rawValue, state: { id in
                Self.encode(Rollout(id: id, candidate: candidateID, control: controlID, settings: settings, maxCost: maxCost, now: now,
                                    gate: "offline gate: \(gate)"))
            }, at: now)
        }, completion: { [weak self] r in
            guard let self else { return }
            switch r {
            case .failure(let e): done(.failure(e))
            case .success(let rec):
                guard let rollout = Self.decode(rec) else { done(.failure(.internalError("the new rollout's state does not decode"))); return }
                guard self.model.version?.id == controlID else {
                    var aborted = rollout
                    self.current = aborted
                    if let t = try? aborted.abort(now: Date().timeIntervalSince1970, by: "fault", reason: "the active version changed while the rollout started") {
                        self.current = aborted
                        self.transitioned(t)
                    }
                    done(.failure(RPCError(.conflict, "the active version changed while the rollout started; start it again")))
                    return
                }
                self.current = rollout
                self.shadow.dropped = 0
                self.shadow.knownCosts = [:]
                self.attach(l)
                self.logger.info("rollout started", metadata: ["rollout": "\(rollout.id)", "candidate": "\(candidateID)", "control": "\(controlID)"])
                self.emit(.started, rollout.timeline.first)
                done(.success(self.view(rollout)))
            }
        })
    }

    func attach(_ l: LoadedVersion) {
        guard let batcher = model.batcher else { return }
        candidate = ActiveModel.Serving(version: l.version, encoder: model.encoder(for: l.version, layers: l.layers), batcher: batcher)
        promotion.candidateLayers = l.layers
    }

    /// `overrides` (any subset of the settings' keys, nested ones too) laid over `base`.
    static func settings(_ base: RolloutSettings, overriddenBy overrides: JSONValue?) throws(RPCError) -> RolloutSettings {
        guard let overrides else { return base }
        guard case .object = overrides, case .object(let baseObject)? = try? JSONValueEncoder().encode(base) else {
            throw .invalidParams("'settings' must be an object of rollout settings", field: "settings")
        }
        func merge(_ a: [String: JSONValue], _ b: [String: JSONValue], path: String) throws(RPCError) -> [String: JSONValue] {
            var out = a
            for (k, v) in b {
                guard let old = a[k] else {
                    throw .invalidParams("unknown rollout setting '\(path)\(k)'; known: \(a.keys.sorted().joined(separator: ", "))", field: "settings.\(path)\(k)")
                }
                if case .object(let o) = old, case .object(let n) = v { out[k] = .object(try merge(o, n, path: path + k + ".")) } else { out[k] = v }
            }
            return out
        }
        guard case .object(let o) = overrides else { return base }
        do { return try JSONValueDecoder().decode(RolloutSettings.self, from: .object(try merge(baseObject, o, path: ""))) }
        catch let e as RPCError { throw e }
        catch { throw .invalidParams("rollout settings: \(error)", field: "settings") }
    }

    /// The offline gate's verdict in a version's stored report.
    static func offlineGate(_ report: String) -> (passed: Bool, summary: String) {
        // A fine-tuned version's stored report holds the job's result, the gate among it.
        // Only the verdict is read, so that a report written by an earlier release (without
        // fields added since) still gates its rollout.
        struct Verdict: Decodable {
            struct Gate: Decodable { let passed: Bool; let reasons: [String]? }
            let gate: Gate
        }
        guard let gate = (try? JSONValueDecoder().decode(Verdict.self, fromJSON: report))?.gate else {
            return (false, "the version has no offline gate report (only fine-tuned versions have one)")
        }
        if gate.passed { return (true, "passed") }
        let reasons = gate.reasons ?? []
        return (false, reasons.isEmpty ? "failed" : "failed: " + reasons.joined(separator: "; "))
    }

    // MARK: Resuming after a restart

    func resume() {
        guard model.encoder != nil else { finishResuming(); return }
        let now = Date().timeIntervalSince1970
        // In a fleet one replica drives a running rollout (docs/fleet.md): the one that
        // started it, or this one if that one's lease expired.
        store.run({ store throws(StoreError) in try Self.lastRollout(store, now: now) }, completion: { [weak self] r in
            guard let self else { return }
            defer { self.finishResuming() }
            guard case .success(let found?) = r, let rollout = Self.decode(found.0) else { return }
            if let driver = found.driver {
                // Another replica drives it: follow (RolloutService+Fleet.swift).
                self.reconcile(rollout, driver: driver)
                return
            }
            self.current = rollout
            guard !rollout.stage.isFinal else { return }
            self.logger.info("rollout resumed", metadata: ["rollout": "\(rollout.id)", "stage": "\(rollout.stage.rawValue)", "candidate": "\(rollout.candidate)"])
            // Until the candidate's files are loaded, the canary routes every request to the control.
            self.repository.load(rollout.candidate) { [weak self] loaded in
                guard let self, var r = self.current, r.id == rollout.id, !r.stage.isFinal else { return }
                switch loaded {
                case .success(let l):
                    self.attach(l)
                    self.reloadKnownCosts(rollout.id)
                case .failure(let e):
                    if let t = try? r.abort(now: Date().timeIntervalSince1970, by: "fault", reason: "the candidate cannot be loaded after a restart: \(e.message)") {
                        self.current = r
                        self.transitioned(t)
                    }
                }
            }
        })
    }

    /// The reviewed disagreements' costs, after a restart.
    func reloadKnownCosts(_ id: Int) {
        store.run({ store throws(StoreError) -> [DisagreementRecord] in
            try store.disagreements(rollout: id, labelled: true, since: nil, requestedOnly: false, limit: 10_000_000, after: nil)
        }, completion: { [weak self] r in
            guard let self, case .success(let rows) = r, self.current?.id == id else { return }
            for d in rows {
                guard let label = d.label else { continue }
                self.shadow.knownCosts[d.text] = (label == d.controlLabel ? 0 : self.policy.cost(truth: label, predicted: d.controlLabel),
                                           label == d.candidateLabel ? 0 : self.policy.cost(truth: label, predicted: d.candidateLabel))
            }
        })
    }

    static func encode(_ r: Rollout) -> String {
        (try? JSONWriter.string(JSONValueEncoder().encode(r))) ?? "{}"
    }

    static func decode(_ rec: RolloutRecord) -> Rollout? {
        guard let json = try? JSONParser.parse(Array(rec.state.utf8)) else { return nil }
        return try? JSONValueDecoder().decode(Rollout.self, from: json)
    }
}
