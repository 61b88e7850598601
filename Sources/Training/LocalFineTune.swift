import Encoder
import Foundation
import Reports
import Scoring
import Tensor

/// One labelled text for a local fine-tune.
public struct LabelledText: Sendable {
    public var text: String
    public var label: Int
    /// Weight in the training loss; for held-out examples, in the weighted mean cost.
    public var weight: Float
    /// The business cost of getting it wrong, when known (a reported failure); nil: the cost model decides.
    public var cost: Double?
    /// A clean example and its noisy variants share a group (consistency training pairs them
    /// in one minibatch); nil: on its own.
    public var group: Int?
    /// A noisy variant of its group's clean example.
    public var noisy = false
    public init(text: String, label: Int, weight: Float = 1, cost: Double? = nil, group: Int? = nil, noisy: Bool = false) {
        self.text = text; self.label = label; self.weight = weight; self.cost = cost; self.group = group; self.noisy = noisy
    }
}

/// A local fine-tune from start to candidate: cache the frozen layers, train the top (head,
/// adapters or layers) with early stopping on a held-out share of the selected data, measure
/// parent and candidate on the target regions' and the global held-out examples, gate, and
/// build the candidate version (head, temperature, out-of-scope statistics, layer weights).
/// Pure computation: the daemon's job runner and the benchmark both call it.
public enum LocalFineTune {
    public struct Plan: Sendable {
        public var settings = FineTuner.Settings()
        /// The selected training data (failure cases, the regions' examples, typo copies, replay).
        public var train: [LabelledText] = []
        /// Held out from the selection, for early stopping.
        public var earlyStopping: [LabelledText] = []
        /// Held out for the gate: the target regions' examples, and all intents'.
        public var targetHeldOut: [LabelledText] = []
        public var globalHeldOut: [LabelledText] = []
        /// The dataset's training texts, for the out-of-scope statistics of a version whose
        /// encoder layers change (unused by the head method).
        public var outOfScopeTrain: [LabelledText] = []
        public var oosRecall = 0.95
        /// The candidate's spelling normaliser (the parent's, with the words of the
        /// corrections added); nil: the parent's. Every text reaches the encoder through the
        /// normaliser of the version that reads it, as in serving.
        public var normaliser: Normaliser? = nil
        /// Adversarial typos: for this many of the target examples (the parent's smallest
        /// margins first), the one-character edit that most lowers the correct intent's margin
        /// (``CharacterAttack``, at most `adversarialCandidates` edits tried each) joins the
        /// training data as a noisy copy. 0: none.
        public var adversarialExamples = 0
        public var adversarialCandidates = 32
        public var maxSteps: Int? = nil
        public var maxSeconds: Double? = nil
        public var gate = Gate.Settings()
        /// Cores for caching the frozen layers.
        public var threads = 1
        public init() {}
    }

    public typealias Report = TrainingReport

    public struct Candidate: @unchecked Sendable {
        /// The candidate (id 0 until the store gives it one).
        public var version: ModelVersion
        /// New weights of the layers that changed (top-layers, and lora merged), by layer index.
        public var layers: [Int: TrainableLayer.Parameters]
        /// The trained adapters (lora), by layer index.
        public var adapters: [Int: TrainableLayer.Adapters]
        public var report: Report
        public var gate: Gate.Report
    }

    public enum Event: Sendable {
        case phase(String)
        case step(step: Int, steps: Int, epoch: Int, loss: Float, elapsed: Double)
        case evaluation(step: Int, score: Double)
    }

    public enum Failure: Error, CustomStringConvertible {
        case cancelled
        case noData(String)
        public var description: String {
            switch self {
            case .cancelled: return "cancelled"
            case .noData(let m): return m
            }
        }
    }

    /// - Parameters:
    ///   - encoder: the parent's encoder (its layers are the starting point)
    ///   - parent: the parent version (head, temperature, out-of-scope statistics)
    ///   - cost: cost(truth, predicted) of a mistake on an example without its own cost
    ///   - fullDataLengths: token counts of all the dataset's examples, for the full fine-tune estimate
    public static func run(encoder: SentenceEncoder, parent: ModelVersion, plan: Plan, cost: @escaping (Int, Int) -> Double,
                           fullDataCount: Int, events: @escaping (Event) -> Void = { _ in }, shouldStop: () -> Bool = { false }) throws(Failure) -> Candidate {
        let started = Date()
        guard !plan.train.isEmpty else { throw .noData("nothing to train on: the regions have no labelled examples or failure cases") }
        let s = plan.settings
        let tuner = FineTuner(encoder: encoder, settings: s)
        let head = parent.head
        events(.phase("caching the frozen layers"))
        // Each distinct text runs through the frozen layers once: the target held-out examples
        // are among the global ones, and the out-of-scope refit reads the training texts the
        // selection already holds.
        // Texts are cached as the encoder reads them: through the normaliser of the version
        // that reads them (the candidate's, or the parent's when measuring the parent).
        var cached: [String: [Float]] = [:]
        let candidateNormaliser = plan.normaliser ?? parent.normaliser
        func cache(_ xs: [LabelledText], normaliser: Normaliser? = candidateNormaliser) throws(Failure) -> [[Float]] {
            if shouldStop() { throw .cancelled }
            let texts = xs.map { normaliser?.normalise($0.text).text ?? $0.text }
            var seen = Set<String>()
            let missing = texts.filter { cached[$0] == nil && seen.insert($0).inserted }
            for (t, block) in zip(missing, tuner.cacheFrozen(missing, threads: plan.threads)) { cached[t] = block }
            return texts.map { cached[$0]! }
        }
        var train = plan.train
        var trainC = try cache(train)
        let esC = try cache(plan.earlyStopping)
        // Training compute: caching what trains and what stops it, the steps and the
        // early-stopping evaluations. The gate's and the calibration's work is counted apart.
        var trainingFlops = tuner.flops
        let targetC = try cache(plan.targetHeldOut), globalC = try cache(plan.globalHeldOut)
        // Seeded typo copies of the global held-out examples, one per rate, for the robustness check.
        let perturbedHeldOut: [(rate: Double, examples: [LabelledText])] = plan.gate.typoRates.enumerated().map { k, rate in
            (rate, plan.globalHeldOut.enumerated().map { i, x in
                var y = x
                y.text = Typos.perturb(x.text, rate: rate, seed: plan.gate.typoSeed &+ UInt64(k) &* 1_000_003 &+ UInt64(i))
                return y
            })
        }
        var perturbedC: [[[Float]]] = []
        for p in perturbedHeldOut { perturbedC.append(try cache(p.examples)) }
        // The parent reads them through its own normaliser (the same texts unless the
        // candidate learnt words from the corrections).
        let sameNormaliser = candidateNormaliser === parent.normaliser
        let parentTargetC = sameNormaliser ? targetC : try cache(plan.targetHeldOut, normaliser: parent.normaliser)
        let parentGlobalC = sameNormaliser ? globalC : try cache(plan.globalHeldOut, normaliser: parent.normaliser)
        var parentPerturbedC = perturbedC
        if !sameNormaliser { parentPerturbedC = []; for p in perturbedHeldOut { parentPerturbedC.append(try cache(p.examples, normaliser: parent.normaliser)) } }
        let stack = tuner.makeStack(headWeight: head.weight, headBias: head.bias, mean: head.mean, scale: head.scale)
        var adversarialFlops: Double? = nil, adversarialCount: Int? = nil
        if plan.adversarialExamples > 0 {
            events(.phase("searching adversarial typos"))
            let before = tuner.flops
            let added = try adversarialTypos(train: train, cached: trainC, tuner: tuner, stack: stack, plan: plan,
                                             normaliser: candidateNormaliser, shouldStop: shouldStop)
            train += added
            trainC += try cache(added)
            adversarialFlops = tuner.flops - before
            adversarialCount = added.count
            trainingFlops += adversarialFlops!
        }
        let cacheSeconds = Date().timeIntervalSince(started)
        func predictions(_ c: [[Float]]) -> [Int] {
            let (_, logits) = tuner.vectorsAndLogits(stack, cached: c)
            let C = stack.classes
            return (0..<c.count).map { n in
                var best = 0
                for k in 1..<C where logits[n * C + k] > logits[n * C + best] { best = k }
                return best
            }
        }
        func costs(_ xs: [LabelledText], _ pred: [Int]) -> [Double] {
            zip(xs, pred).map { x, p in p == x.label ? 0 : (x.cost ?? cost(x.label, p)) }
        }
        /// Shares of `c`'s inputs `v` calls out of scope, with the stack as it is.
        func outOfScopeRate(_ v: ModelVersion, _ c: [[Float]]) -> Double {
            guard !c.isEmpty else { return 0 }
            let (vectors, logits) = tuner.vectorsAndLogits(stack, cached: c)
            let d = v.outOfScopeScores(vectors, count: c.count, logits: logits)
            return Double(d.filter { $0 > v.oosThreshold }.count) / Double(c.count)
        }
        events(.phase("measuring the parent"))
        let parentTarget = predictions(parentTargetC), parentGlobal = predictions(parentGlobalC)
        let parentPerturbed = parentPerturbedC.map { predictions($0) }
        let parentOOS = outOfScopeRate(parent, parentGlobalC), parentOOSTypos = parentPerturbedC.last.map { outOfScopeRate(parent, $0) }

        // Budget and cancellation are checked before every step.
        var lastStep = 0
        var stoppedBy = "done"
        var firstLoss: Double? = nil, lastLoss: Double? = nil
        let trainStart = Date()
        let stepsPerEpoch = (train.count + s.batchSize - 1) / s.batchSize
        let es: FineTuner.EarlyStopping? = plan.earlyStopping.isEmpty ? nil : FineTuner.EarlyStopping(
            every: max(1, stepsPerEpoch / 2), patience: 3, minSteps: 2 * stepsPerEpoch,
            evaluate: {
                // Minus the weighted mean cost: held-out examples stand for their intents' production share.
                let c = costs(plan.earlyStopping, predictions(esC))
                let w = plan.earlyStopping.map { Double($0.weight) }
                let score = -zip(c, w).reduce(0.0) { $0 + $1.0 * $1.1 } / max(1e-12, w.reduce(0, +))
                events(.evaluation(step: lastStep, score: score))
                return score
            })
        events(.phase("training"))
        let beforeSteps = tuner.flops
        let groups = train.map { x in x.group.map { (id: $0, noisy: x.noisy) } }
        let outcome = tuner.train(stack, cached: trainC, labels: train.map(\.label), weights: train.map(\.weight),
                                  groups: groups, earlyStopping: es,
                                  progress: { p in
                                      lastStep = p.step
                                      if firstLoss == nil { firstLoss = Double(p.loss) }
                                      lastLoss = Double(p.loss)
                                      events(.step(step: p.step, steps: p.steps, epoch: p.epoch, loss: p.loss, elapsed: Date().timeIntervalSince(trainStart)))
                                  },
                                  shouldStop: {
                                      if shouldStop() { stoppedBy = "cancelled"; return true }
                                      if let m = plan.maxSteps, lastStep >= m { stoppedBy = "max-steps"; return true }
                                      if let m = plan.maxSeconds, Date().timeIntervalSince(trainStart) >= m { stoppedBy = "max-seconds"; return true }
                                      return false
                                  })
        trainingFlops += tuner.flops - beforeSteps
        if stoppedBy == "cancelled" { throw .cancelled }
        if stoppedBy == "done" && outcome.stoppedEarly { stoppedBy = "early-stopping" }
        let trainSeconds = Date().timeIntervalSince(trainStart)

        events(.phase("measuring the candidate"))
        let candTarget = predictions(targetC), candGlobal = predictions(globalC)
        func pairs(_ xs: [LabelledText], _ p: [Int], _ c: [Int]) -> [Gate.Pair] {
            let pc = costs(xs, p), cc = costs(xs, c)
            return xs.indices.map { Gate.Pair(parentCost: pc[$0], candidateCost: cc[$0], parentCorrect: p[$0] == xs[$0].label,
                                              candidateCorrect: c[$0] == xs[$0].label, weight: Double(xs[$0].weight)) }
        }
        let candPerturbed = perturbedC.map { predictions($0) }
        let perturbedPairs = perturbedHeldOut.indices.map { k in
            (rate: perturbedHeldOut[k].rate, pairs: pairs(perturbedHeldOut[k].examples, parentPerturbed[k], candPerturbed[k]))
        }

        // The candidate version: the trained head over the parent's standardisation,
        // temperature refitted on the global held-out logits, and (when the encoder changed)
        // out-of-scope statistics from the new sentence vectors.
        if shouldStop() { throw .cancelled }
        events(.phase("calibrating the candidate"))
        let C = stack.classes, H = stack.hidden
        let newHead = LinearHead(weight: stack.headWeight.values, bias: stack.headBias.values, mean: head.mean, scale: head.scale,
                                 classes: C, dimension: H)
        let (globalVectors, globalLogits) = tuner.vectorsAndLogits(stack, cached: globalC)
        let T = plan.globalHeldOut.isEmpty ? parent.temperature
            : TemperatureScaling.fit(logits: globalLogits, labels: plan.globalHeldOut.map(\.label), classes: C)
        var oos = parent.outOfScope, threshold = parent.oosThreshold, calibration = parent.oosCalibration
        if s.method != .head && !plan.outOfScopeTrain.isEmpty {
            events(.phase("refitting the out-of-scope statistics"))
            let oosC = try cache(plan.outOfScopeTrain)
            let (v, _) = tuner.vectorsAndLogits(stack, cached: oosC)
            oos = OutOfScopeModel.fit(v, labels: plan.outOfScopeTrain.map(\.label), classes: C, dimension: H, k: parent.outOfScope.k)
        }
        // The rule's standardisation and threshold follow the new head (its probabilities
        // changed) and, when the encoder changed, the new statistics; set on the global
        // held-out examples, as model/fit sets them on validation. Without a calibration
        // (a parent from before it), the neighbour distance's threshold is re-set likewise.
        if !plan.globalHeldOut.isEmpty && (s.method != .head || calibration != nil) {
            if calibration != nil {
                (calibration, threshold) = OOSCalibration.fit(outOfScope: oos, vectors: globalVectors, logits: globalLogits, count: plan.globalHeldOut.count,
                                                              classes: C, temperature: T, retention: plan.oosRecall)
            } else {
                threshold = thresholdKeeping(recall: plan.oosRecall, inScopeScores: oos.scores(globalVectors, count: plan.globalHeldOut.count).neighbour)
            }
        }
        // The candidate's out-of-scope calls on the same in-scope held-out inputs, with its own
        // statistics and threshold.
        let candidateForOOS = ModelVersion(id: 0, labels: parent.labels, head: newHead, temperature: T, outOfScope: oos, oosThreshold: threshold,
                                           oosCalibration: calibration)
        let oosCheck: Gate.OutOfScopeCheck? = plan.globalHeldOut.isEmpty ? nil : Gate.OutOfScopeCheck(
            examples: plan.globalHeldOut.count, parentRate: parentOOS, candidateRate: outOfScopeRate(candidateForOOS, globalC),
            parentRateWithTypos: parentOOSTypos, candidateRateWithTypos: perturbedC.last.map { outOfScopeRate(candidateForOOS, $0) })
        let gate = Gate.evaluate(target: pairs(plan.targetHeldOut, parentTarget, candTarget),
                                 global: pairs(plan.globalHeldOut, parentGlobal, candGlobal), perturbed: perturbedPairs,
                                 outOfScope: oosCheck, settings: plan.gate)
        var layers: [Int: TrainableLayer.Parameters] = [:], adapters: [Int: TrainableLayer.Adapters] = [:]
        for (k, l) in stack.layers.enumerated() {
            let index = tuner.firstTrainable + k
            if let a = l.adapters {
                adapters[index] = a
                layers[index] = a.merged(into: l.params)
            } else {
                layers[index] = l.params
            }
        }
        // Fragility per intent: how often the typo copies' predictions differ from the clean ones.
        let fragility: [String: Double]? = candPerturbed.last.map { p in
            Fragility.perIntent(labels: parent.labels, truth: plan.globalHeldOut.map(\.label), clean: candGlobal, variants: p, perExample: 1)
        }
        let version = ModelVersion(id: 0, labels: parent.labels, head: newHead, temperature: T, outOfScope: oos, oosThreshold: threshold,
                                   normaliser: candidateNormaliser, fragility: fragility, oosCalibration: calibration,
                                   precision: parent.precision)
        let fullLengths = (trainC + esC + globalC).map { $0.count / H }
        let meanLength = fullLengths.isEmpty ? 0 : fullLengths.reduce(0, +) / fullLengths.count
        let fullFlops = FineTuner.fullFineTuneFlops([Int](repeating: max(1, meanLength), count: fullDataCount), epochs: s.epochs,
                                                    classes: C, config: encoder.config)
        let trainable = stack.layers.reduce(0) { $0 + $1.trainable.reduce(0) { $0 + $1.count } } + stack.headWeight.count + stack.headBias.count
        let report = Report(method: s.method.rawValue, layers: stack.layers.count, rank: s.method == .lora ? s.rank : nil, epochs: s.epochs,
                            steps: outcome.steps, plannedSteps: stepsPerEpoch * s.epochs, stoppedBy: stoppedBy, bestStep: outcome.bestStep,
                            earlyStoppingInitialScore: outcome.initialScore, earlyStoppingBestScore: outcome.bestScore,
                            trainExamples: train.count, earlyStoppingExamples: plan.earlyStopping.count,
                            targetHeldOutExamples: plan.targetHeldOut.count, globalHeldOutExamples: plan.globalHeldOut.count,
                            firstLoss: firstLoss, lastLoss: lastLoss, cacheSeconds: cacheSeconds, trainSeconds: trainSeconds,
                            seconds: Date().timeIntervalSince(started), trainingFlops: trainingFlops, flops: tuner.flops, fullFineTuneFlops: fullFlops, temperature: T,
                            trainableParameters: trainable, adversarialExamples: adversarialCount, adversarialFlops: adversarialFlops,
                            consistency: s.consistency > 0 ? Double(s.consistency) : nil,
                            adversarialEpsilon: s.adversarialEpsilon > 0 ? Double(s.adversarialEpsilon) : nil)
        return Candidate(version: version, layers: layers, adapters: adapters, report: report, gate: gate)
    }

    /// The adversarial copies of the riskiest target examples: the clean examples of a group
    /// (the target regions' examples and failures; all examples when there are no groups),
    /// the parent's smallest correct-intent margins first, each given the one-character edit
    /// that lowers that margin most, read through the candidate's normaliser as it will be
    /// served. The search runs the candidate edits through the frozen layers and the parent's
    /// stack, a chunk at a time.
    static func adversarialTypos(train: [LabelledText], cached: [[Float]], tuner: FineTuner, stack: ClassifierStack, plan: Plan,
                                 normaliser: Normaliser?, shouldStop: () -> Bool) throws(Failure) -> [LabelledText] {
        let grouped = train.indices.filter { train[$0].group != nil && !train[$0].noisy }
        let pool = grouped.isEmpty ? Array(train.indices) : grouped
        let (_, logits) = tuner.vectorsAndLogits(stack, cached: pool.map { cached[$0] })
        let C = stack.classes
        let margins = pool.indices.map { k -> Float in
            let y = train[pool[k]].label
            var other = -Float.infinity
            for c in 0..<C where c != y { other = max(other, logits[k * C + c]) }
            return logits[k * C + y] - other
        }
        let chosen = pool.indices.sorted { (margins[$0], $0) < (margins[$1], $1) }.prefix(plan.adversarialExamples).map { pool[$0] }
        var cancelled = false
        let r = CharacterAttack.run(sentences: chosen.map { (train[$0].text, train[$0].label) }, maxCandidates: plan.adversarialCandidates,
                                    seed: plan.settings.seed, onlyCorrect: false, chunk: 512) { texts in
            if cancelled || shouldStop() { cancelled = true; return [Float](repeating: 0, count: texts.count * C) }
            let read = texts.map { normaliser?.normalise($0).text ?? $0 }
            return tuner.vectorsAndLogits(stack, cached: tuner.cacheFrozen(read, threads: plan.threads)).1
        }
        if cancelled { throw .cancelled }
        var nextGroup = (train.compactMap(\.group).max() ?? -1) + 1
        return r.adversarial.map { a in
            let x = train[chosen[a.index]]
            let group = x.group ?? { defer { nextGroup += 1 }; return nextGroup }()
            return LabelledText(text: a.text, label: x.label, weight: x.weight, cost: x.cost, group: group, noisy: true)
        }
    }
}
