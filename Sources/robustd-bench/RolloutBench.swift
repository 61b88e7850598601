import ArgumentParser
import Encoder
import Foundation
import Rollout
import Scoring
import Tensor
import Training

/// The staged rollout's decisions, simulated on Banking77 traffic against candidates of known
/// quality, over many seeds: how often each is promoted, the requests and labels it took, and
/// the fixed gate's answer on the same seeds.
struct RolloutBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Rollout decisions on replayed Banking77 traffic: a better, an equal, a worse and a typo-fragile candidate, many seeds.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seed of the scenario and of the candidates' training (each candidate is trained once).")
    var seed: UInt64 = 1

    @Option(help: "Seeds of the simulation: each varies the traffic, the complaints and the reviews.")
    var seeds: Int = 50

    @Option(help: "The first simulation seed (seeds run from it on).")
    var firstSeed: UInt64 = 1000

    @Option(help: "Share of the scenario's replayed errors reported as corrections (the fine-tunes' failure cases).")
    var feedbackRate = 0.5

    @Option(help: "Share of wrong served answers that draw a complaint.")
    var complaintRate = 0.5

    @Option(help: "Share of disagreements a reviewer labels.")
    var reviewRate = 0.2

    @Option(help: "Share of requests with typos (half at 10%, half at 20% of words).")
    var typoShare = 0.33

    @Option(help: "Requests after which a seed's rollout is cut off, undecided.")
    var maxRequests = 50_000

    @Option(help: "Share of the traffic the candidate answers in canary (default: the daemon's).")
    var canaryShare: Double?

    @Option(help: "Candidate requests before a promotion (default: the daemon's).")
    var canaryMinRequests: Int?

    @Option(help: "Reviews before the shadow may end (default: the daemon's).")
    var shadowMinLabels: Int?

    @Option(help: "Epochs of the candidates' fine-tunes.")
    var epochs = 6

    @Option(help: "λ of the fine-tunes' consistency term (finetune/start's `consistency`; 0: off, the daemon's default).")
    var consistency: Double = 0

    @Option(help: "Noisy copies of each target example (finetune/start's `noisyCopies`).")
    var noisyCopies = 1

    @Option(help: "Noisy copies of each replayed example (finetune/start's `replayCopies`).")
    var replayCopies = DataSelection.Options().replayCopies

    @Option(help: "Target regions whose corrections the worse candidate gets relabelled to a wrong intent (of the scenario's 10).")
    var poisoned = 6

    @Option(help: "Candidates to train and simulate, comma-separated (better, equal, worse, typo-fragile).")
    var candidates = "better,equal,worse,typo-fragile"

    @Option(help: "A file for the trained candidates' predictions: read if it exists (no training then), else written.")
    var cache: String?

    struct Candidate {
        var name: String
        var version: ModelVersion
        var encoder: SentenceEncoder
        var plan: LocalFineTune.Plan
        var gate: Gate.Report
        /// Predictions on the evaluation set: clean, at 10% and at 20% word typos.
        var predictions: [[Int]] = []
    }

    /// Gate.Pair, storable.
    struct PairRecord: Codable {
        var p: Double, c: Double, pr: Bool, cr: Bool, w: Double
        init(_ x: Gate.Pair) { p = x.parentCost; c = x.candidateCost; pr = x.parentCorrect; cr = x.candidateCorrect; w = x.weight }
        var pair: Gate.Pair { Gate.Pair(parentCost: p, candidateCost: c, parentCorrect: pr, candidateCorrect: cr, weight: w) }
    }

    /// What the simulation needs of a trained candidate.
    struct Trained: Codable {
        var name: String
        var predictions: [[Int]]
        var target: [PairRecord]
        var global: [PairRecord]
        var perturbedRates: [Double]
        var perturbed: [[PairRecord]]
        var outOfScope: Gate.OutOfScopeCheck?
        var gateSettings: Gate.Settings
        var gatePassed: Bool
        var gateReasons: [String]
    }

    struct Cached: Codable {
        var header: [String]
        var parentPredictions: [[Int]]
        var truth: [Int]
        var candidates: [Trained]
    }

    func run() throws {
        let data: Cached
        if let cache, let bytes = FileManager.default.contents(atPath: cache) {
            data = try JSONDecoder().decode(Cached.self, from: bytes)
            print("robustd-bench rollout: candidates' predictions read from \(cache)")
        } else {
            data = try train()
            if let cache { try JSONEncoder().encode(data).write(to: URL(fileURLWithPath: cache)) }
        }
        for line in data.header { print(line) }
        simulateAll(data)
    }

    func train() throws -> Cached {
        var header: [String] = []
        let sc = try WeakenedIntents(paths: paths, seed: seed, feedbackRate: feedbackRate)
        let labels = sc.labels, C = labels.count
        header.append("robustd-bench rollout: Banking77 (Casanueva et al. 2020, CC BY 4.0), model \(paths.model)")
        header.append("scenario seed \(seed): weakened \(sc.weak.sorted().joined(separator: ", ")); \(sc.failures.count) failures reported; parent fitted in \(Int(sc.parentSeconds)) s")
        var base = FineTuner.Settings(method: .lora)
        base.layers = 2
        base.epochs = epochs
        base.batchSize = 16
        base.consistency = Float(consistency)
        header.append("fine-tunes: \(epochs) epochs, consistency λ \(consistency), \(noisyCopies) noisy cop\(noisyCopies == 1 ? "y" : "ies") of each target example, \(replayCopies) of each replayed one; the worse one with \(poisoned) regions' corrections poisoned")
        var list: [Candidate] = []
        for name in candidates.split(separator: ",").map(String.init) {
            var options = DataSelection.Options()
            options.seed = seed
            options.typoCopies = noisyCopies
            options.replayCopies = replayCopies
            var settings = base
            var plan: LocalFineTune.Plan
            switch name {
            case "better":
                plan = sc.plan(settings, targets: sc.targets, failures: sc.failures, options: options)
            case "equal":
                // Nothing to fix: the head retrained on ten intents the parent already knows well.
                settings.method = .head
                var rng = SeededRandom(seed: seed &+ 77)
                let strong = Set(labels.filter { !sc.targets.contains($0) && !sc.weak.contains($0) }.shuffled(using: &rng).prefix(10))
                plan = sc.plan(settings, targets: strong, failures: [], options: options)
            case "worse":
                // Poisoned corrections: most target regions' corrections (and the examples the
                // selection takes of them) relabelled to another intent, as a bad labelling batch
                // would. With 3 of the 10 poisoned, the 7 regions fixed outweighed them: that
                // candidate was better than its parent on the traffic (docs/rollout.md).
                let counts = Dictionary(sc.train.map { ($0.1, 1) }, uniquingKeysWith: +)
                let poisonedIntents = Set(sc.targets.sorted { (counts[$0] ?? 0, $0) > (counts[$1] ?? 0, $1) }.prefix(poisoned))
                func wrong(_ l: String) -> String { labels[(sc.index[l]! + 7) % C] }
                let poisonedFailures = sc.failures.map { f in poisonedIntents.contains(f.correct) ? .init(text: f.text, correct: wrong(f.correct), cost: f.cost) : f }
                plan = sc.plan(settings, targets: sc.targets, failures: poisonedFailures, options: options)
                plan.train = plan.train.map { x in
                    guard poisonedIntents.contains(labels[x.label]) else { return x }
                    var y = x
                    y.label = sc.index[wrong(labels[x.label])]!
                    return y
                }
            case "typo-fragile":
                // The better recipe, plus typo copies of its training examples taught as another intent:
                // better on clean text, worse on text with typos.
                plan = sc.plan(settings, targets: sc.targets, failures: sc.failures, options: options)
                var rng = SeededRandom(seed: seed &+ 91)
                plan.train += plan.train.map { x in
                    LabelledText(text: typos(x.text, rate: 0.3, rng: &rng), label: (x.label + 7) % C, weight: x.weight)
                }
            default:
                throw ValidationError("unknown candidate '\(name)'; known: better, equal, worse, typo-fragile")
            }
            let t0 = Date()
            FileHandle.standardError.write(Data("training '\(name)' (\(plan.settings.method.rawValue), \(plan.train.count) examples)…\n".utf8))
            let c = try LocalFineTune.run(encoder: sc.enc, parent: sc.parent, plan: plan, cost: { _, _ in 1 }, fullDataCount: sc.cut.count)
            FileHandle.standardError.write(Data(String(format: "  %.0f s, %d steps (%@)\n", Date().timeIntervalSince(t0), c.report.steps, c.report.stoppedBy).utf8))
            list.append(Candidate(name: name, version: c.version, encoder: sc.enc.replacingLayers(c.layers.mapValues(\.serving)), plan: plan, gate: c.gate))
        }

        // Predictions on the evaluation half of test (no version saw it), clean and with typos.
        var typoRng = SeededRandom(seed: seed &+ 500)
        let clean = sc.evaluation.map(\.0)
        let variants = [clean, clean.map { typos($0, rate: 0.1, rng: &typoRng) }, clean.map { typos($0, rate: 0.2, rng: &typoRng) }]
        let truth = sc.evaluation.map { sc.index[$0.1]! }
        FileHandle.standardError.write(Data("predicting \(variants.count * clean.count) evaluation texts per version…\n".utf8))
        let parentPredictions = variants.map { sc.predict(sc.parent, sc.enc, $0) }
        for k in list.indices { list[k].predictions = variants.map { sc.predict(list[k].version, list[k].encoder, $0) } }
        func accuracy(_ p: [Int]) -> Double { Double(zip(p, truth).filter { $0 == $1 }.count) / Double(truth.count) }

        header.append(String(format: "parent: accuracy %.2f%% clean, %.2f%% at 10%% typos, %.2f%% at 20%% typos", 100 * accuracy(parentPredictions[0]),
                             100 * accuracy(parentPredictions[1]), 100 * accuracy(parentPredictions[2])))
        let trained = list.map { c -> Trained in
            let h = heldOutPairs(c, sc: sc)
            return Trained(name: c.name, predictions: c.predictions, target: h.target.map(PairRecord.init), global: h.global.map(PairRecord.init),
                           perturbedRates: h.perturbed.map(\.rate), perturbed: h.perturbed.map { $0.pairs.map(PairRecord.init) },
                           outOfScope: c.gate.outOfScope, gateSettings: c.plan.gate, gatePassed: c.gate.passed, gateReasons: c.gate.reasons)
        }
        return Cached(header: header, parentPredictions: parentPredictions, truth: truth, candidates: trained)
    }

    func simulateAll(_ data: Cached) {
        let truth = data.truth, parentPredictions = data.parentPredictions
        func accuracy(_ p: [Int]) -> Double { Double(zip(p, truth).filter { $0 == $1 }.count) / Double(truth.count) }
        var settings = RolloutSettings()
        if let s = canaryShare { settings.canaryShare = s }
        if let n = canaryMinRequests { settings.canary.minRequests = n }
        if let n = shadowMinLabels { settings.shadow.minLabels = n }
        print(String(format: "traffic: the evaluation half (%d sentences), drawn at random, %.0f%% with typos; complaints for %.0f%% of wrong served answers; %.0f%% of disagreements reviewed; %d seeds",
                     truth.count, 100 * typoShare, 100 * complaintRate, 100 * reviewRate, seeds))
        print(String(format: "rollout: false promotion %.2f, false rollback %.2f, smallest effect %.2f, canary share %.2f; shadow ≥ %d requests and %d labels, canary ≥ %d candidate requests",
                     settings.falsePromotionRate, settings.falseRollbackRate, settings.minEffect, settings.canaryShare,
                     settings.shadow.minRequests, settings.shadow.minLabels, settings.canary.minRequests))
        print("")
        print("candidate      acc clean  @10%    @20%   | fixed gate  offline gate | live promoted  end-to-end  ≤5,000 req | requests (median, p90)  labels (median)")
        for c in data.candidates {
            var oldPass = 0, newPass = 0, livePromoted = 0, promoted = 0, promotedFast = 0, liveFast = 0
            var requests: [Int] = [], labelCounts: [Int] = [], outcomes: [String: Int] = [:]
            let target = c.target.map(\.pair), global = c.global.map(\.pair)
            let perturbed = zip(c.perturbedRates, c.perturbed).map { (rate: $0, pairs: $1.map(\.pair)) }
            for s in 0..<seeds {
                let seedValue = UInt64(s) &+ firstSeed
                var fixed = c.gateSettings
                fixed.rule = .nonInferiority
                fixed.seed = seedValue
                fixed.typoRates = []
                var screen = c.gateSettings
                screen.seed = seedValue
                if Gate.evaluate(target: target, global: global, settings: fixed).passed { oldPass += 1 }
                let offline = Gate.evaluate(target: target, global: global, perturbed: perturbed, outOfScope: c.outOfScope, settings: screen).passed
                if offline { newPass += 1 }
                let r = simulate(control: parentPredictions, candidate: c.predictions, truth: truth, settings: settings, seed: seedValue)
                outcomes[r.rollout.timeline.last.map { "\($0.to.rawValue) by \($0.by)" } ?? "undecided", default: 0] += 1
                requests.append(r.requests)
                labelCounts.append(r.rollout.labels)
                if r.rollout.stage == .promoted {
                    livePromoted += 1
                    if r.requests <= 5000 { liveFast += 1 }
                    if offline {
                        promoted += 1
                        if r.requests <= 5000 { promotedFast += 1 }
                    }
                }
            }
            requests.sort(); labelCounts.sort()
            func pct(_ n: Int) -> String { String(format: "%5.1f%%", 100 * Double(n) / Double(seeds)) }
            print(String(format: "%@ %7.2f%%  %6.2f%%  %6.2f%% |  %@      %@     |    %@       %@     %@  | %6d %6d            %5d",
                         c.name.padding(toLength: 13, withPad: " ", startingAt: 0) as NSString,
                         100 * accuracy(c.predictions[0]), 100 * accuracy(c.predictions[1]), 100 * accuracy(c.predictions[2]),
                         pct(oldPass), pct(newPass), pct(livePromoted), pct(promoted), pct(promotedFast),
                         requests[requests.count / 2], requests[min(requests.count - 1, requests.count * 9 / 10)], labelCounts[labelCounts.count / 2]))
            print("    outcomes: " + outcomes.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                  + "; live promotion within 5,000 requests in \(pct(liveFast).trimmingCharacters(in: .whitespaces)) of seeds")
            // The offline gate's verdict as this build decides it, on the first seed.
            var first = c.gateSettings
            first.seed = firstSeed
            let g = Gate.evaluate(target: target, global: global, perturbed: perturbed, outOfScope: c.outOfScope, settings: first)
            print("    offline gate (first seed): " + (g.passed ? "passed" : "failed: " + g.reasons.joined(separator: "; ")))
            let rows = [("clean", g.global)] + (g.perturbed ?? []).map { (String(format: "%.0f%% typos", 100 * $0.typoRate), $0.comparison) }
            print("    held-out (\(g.global.examples) examples, \(String(format: "%.0f", g.global.effectiveExamples)) effective): " + rows.map { name, x in
                String(format: "%@ cost %.3f → %.3f, only parent right %d, only candidate %d", name, x.parentCost, x.candidateCost, x.parentOnlyCorrect, x.candidateOnlyCorrect)
            }.joined(separator: "; "))
        }
        print("")
        print("fixed gate = the old rule (non-inferiority bound on the clean held-out data); offline gate = the new screen (clean, typo copies, out of scope);")
        print("live promoted = shadow → canary → promoted from the traffic alone; end-to-end = offline gate passed and promoted live.")
    }

    /// The candidate's and the parent's held-out pairs for the gates (the plan's held-out sets, the same typo copies LocalFineTune makes).
    func heldOutPairs(_ c: Candidate, sc: WeakenedIntents) -> (target: [Gate.Pair], global: [Gate.Pair], perturbed: [(rate: Double, pairs: [Gate.Pair])]) {
        func pairs(_ xs: [LabelledText]) -> [Gate.Pair] {
            let texts = xs.map(\.text)
            let p = sc.predict(sc.parent, sc.enc, texts), q = sc.predict(c.version, c.encoder, texts)
            return xs.indices.map { i in
                Gate.Pair(parentCost: p[i] == xs[i].label ? 0 : (xs[i].cost ?? 1), candidateCost: q[i] == xs[i].label ? 0 : (xs[i].cost ?? 1),
                          parentCorrect: p[i] == xs[i].label, candidateCorrect: q[i] == xs[i].label, weight: Double(xs[i].weight))
            }
        }
        let g = c.plan.gate
        let perturbed = g.typoRates.enumerated().map { k, rate in
            (rate: rate, pairs: pairs(c.plan.globalHeldOut.enumerated().map { i, x in
                var y = x
                y.text = Typos.perturb(x.text, rate: rate, seed: g.typoSeed &+ UInt64(k) &* 1_000_003 &+ UInt64(i))
                return y
            }))
        }
        return (pairs(c.plan.targetHeldOut), pairs(c.plan.globalHeldOut), perturbed)
    }

    /// One seed's rollout: requests drawn from the evaluation set until the rollout ends (or the cut-off).
    func simulate(control: [[Int]], candidate: [[Int]], truth: [Int], settings: RolloutSettings, seed: UInt64) -> (rollout: Rollout, requests: Int) {
        var traffic = SeededRandom(seed: seed), complaints = SeededRandom(seed: seed &+ 1), reviews = SeededRandom(seed: seed &+ 2)
        var r = Rollout(id: 1, candidate: 2, control: 1, settings: settings, maxCost: 1, now: 0, gate: "offline gate")
        let n = truth.count
        for request in 0..<maxRequests {
            let i = Int(traffic.next() % UInt64(n))
            let u = traffic.unit()
            let v = u < typoShare / 2 ? 1 : u < typoShare ? 2 : 0
            let k = control[v][i], c = candidate[v][i], y = truth[i]
            // Sticky per input: the same text always goes to the same arm.
            var h = UInt64(i) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(v) &* 0xBF58_476D_1CE4_E5B9
            h ^= h >> 31
            let arm = r.arm(forHash: h)
            // The other version scores every request unseen (the candidate in shadow and on the
            // control's canary share, the control on the candidate's): both answers are known.
            r.recordShadow(requests: 1, disagreeing: k != c ? 1 : 0)
            if k != c && reviews.unit() < reviewRate { r.recordLabel(controlCost: k == y ? 0 : 1, candidateCost: c == y ? 0 : 1) }
            if r.stage == .canary {
                let served = arm == .candidate ? c : k
                r.recordServed(arm: arm, inputs: 1, latencyMs: 5, outOfScope: 0, flagged: 0, expectedCost: 0)
                if k != c { r.recordDisagreementsServed(arm: arm, count: 1) }
                if served != y && complaints.unit() < complaintRate { r.recordFailureReport(arm: arm, cost: 1, onDisagreement: k != c) }
            }
            _ = r.decide(now: Double(request))
            if r.stage.isFinal { return (r, request + 1) }
        }
        return (r, maxRequests)
    }
}
