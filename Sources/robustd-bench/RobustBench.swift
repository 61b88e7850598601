import ArgumentParser
import Encoder
import Foundation
import Scoring
import Tensor
import Training

/// Robustness on Banking77 test (Casanueva et al. 2020, CC BY 4.0): clean accuracy, accuracy
/// under word typos, and the success rate of a greedy one-edit character attack, for the
/// parent and for what robust training adds (docs/robustness.md).
struct RobustBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "robust",
        abstract: "Robustness table on Banking77 test: clean, 10%/20% word typos, one-edit attack success rate, seconds, FLOPs.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Seed of the typos and of the attack's sample.")
    var seed: UInt64 = 1

    @Option(help: "Correctly classified test sentences attacked (0: no attack column).")
    var attackSentences: Int = 300

    @Option(help: "Candidate edits tried per attacked sentence at most (a seeded sample when there are more).")
    var attackCandidates: Int = 48

    @Flag(help: "Do not protect the tokenizer's whole words from correction.")
    var unprotected = false

    @Option(help: "The normaliser's cost weight (log-frequency units per unit of edit cost).")
    var costWeight: Double = 4

    @Flag(help: "Also print what the normaliser changed on a few test sentences.")
    var showCorrections = false

    func run() throws {
        let enc = try SentenceEncoder.load(folder: paths.model)
        let engine = BatchEngine(encoder: enc)
        let fullTrain = try paths.rows("train.csv"), test = try paths.rows("test.csv")
        let labels = Array(Set(fullTrain.map(\.1))).sorted()
        let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
        let H = enc.hiddenSize
        func embed(_ texts: [String]) -> [Float] { WeakenedIntents.embed(texts, engine: engine, with: enc) }
        let texts = test.map(\.0), y = test.map { index[$0.1]! }
        var evRng = SeededRandom(seed: seed &+ 300)
        let typo10 = texts.map { typos($0, rate: 0.1, rng: &evRng) }, typo20 = texts.map { typos($0, rate: 0.2, rng: &evRng) }

        // Parent as model/fit makes it: λ chosen on a stratified 10% of train.
        var t0 = Date()
        let (train, validation) = stratifiedSplit(fullTrain, label: \.1, fraction: 0.1, seed: 42)
        let trainX = embed(train.map(\.0)), valX = embed(validation.map(\.0))
        let trainY = train.map { index[$0.1]! }, valY = validation.map { index[$0.1]! }
        let (parent, report) = HeadFitting.fit(id: 1, labels: labels, dimension: H, train: (trainX, trainY), validation: (valX, valY))
        let parentSeconds = Date().timeIntervalSince(t0)
        t0 = Date()
        var nset = Normaliser.Settings()
        nset.costWeight = costWeight
        let vocab = try String(contentsOfFile: paths.model + "/vocab.txt", encoding: .utf8).split(separator: "\n").map(String.init)
        let normaliser = Normaliser.build(texts: fullTrain.map(\.0), protected: unprotected ? [] : Normaliser.wholeWords(ofVocabulary: vocab), settings: nset)
        let normaliserSeconds = Date().timeIntervalSince(t0)
        print(String(format: "parent: frozen encoder + logistic-regression head, λ %g chosen on 10%% of train (%d), %.0f s with embedding; normaliser: %d words from %d training texts in %.2f s",
                     report.lambda, validation.count, parentSeconds, normaliser.counts.count, fullTrain.count, normaliserSeconds))

        func predict(_ v: ModelVersion, _ xs: [String], normalise: Bool) -> [Int] {
            let input = normalise ? xs.map { normaliser.normalise($0).text } : xs
            let logits = v.head.logits(embed(input), count: input.count)
            let C = labels.count
            return (0..<input.count).map { n in (0..<C).max { logits[n * C + $0] < logits[n * C + $1] }! }
        }
        func acc(_ p: [Int]) -> Double { Double(zip(p, y).filter { $0 == $1 }.count) / Double(y.count) }

        // The attack's sample: seeded, from the whole test set; each row attacks the sample's
        // sentences it classifies correctly.
        var sampleRng = SeededRandom(seed: seed &+ 400)
        let sample = Array(test.indices.shuffled(using: &sampleRng).prefix(attackSentences))

        print("")
        print("row                              clean    @10% typos (Δ)     @20% typos (Δ)     attack success   seconds")
        func row(_ name: String, _ v: ModelVersion, normalise: Bool, seconds: Double) {
            let a = acc(predict(v, texts, normalise: normalise))
            let a10 = acc(predict(v, typo10, normalise: normalise)), a20 = acc(predict(v, typo20, normalise: normalise))
            var attack = "—"
            if attackSentences > 0 {
                let r = CharacterAttack.run(sentences: sample.map { (texts[$0], y[$0]) }, maxCandidates: attackCandidates, seed: seed) { xs in
                    let input = normalise ? xs.map { normaliser.normalise($0).text } : xs
                    return v.head.logits(embed(input), count: input.count)
                }
                attack = String(format: "%5.1f%% of %d", 100 * r.successRate, r.attacked)
            }
            print(String(format: "%@  %6.2f%%  %6.2f%% (%+5.2f)   %6.2f%% (%+5.2f)   %@  %7.1f", name.padding(toLength: 31, withPad: " ", startingAt: 0) as NSString,
                         100 * a, 100 * a10, 100 * (a10 - a), 100 * a20, 100 * (a20 - a), attack.padding(toLength: 15, withPad: " ", startingAt: 0) as NSString, seconds))
        }
        row("parent", parent, normalise: false, seconds: parentSeconds)
        row("parent + normaliser", parent, normalise: true, seconds: parentSeconds + normaliserSeconds)

        // The head refitted on all of train at the chosen λ (model/fit's refit).
        t0 = Date()
        let allX = trainX + valX, allY = trainY + valY
        let std = LogisticRegression.standardization(allX, count: allY.count, dimension: H)
        let refit = LogisticRegression.fit(allX, labels: allY, classes: labels.count, dimension: H, lambda: report.lambda, standardization: std, start: parent.head)
        let refitVersion = ModelVersion(id: 2, labels: labels, head: refit.head, temperature: parent.temperature, outOfScope: parent.outOfScope, oosThreshold: parent.oosThreshold)
        let refitSeconds = parentSeconds + Date().timeIntervalSince(t0)
        row("parent refitted on all train", refitVersion, normalise: false, seconds: refitSeconds)
        row("refitted + normaliser", refitVersion, normalise: true, seconds: refitSeconds + normaliserSeconds)

        if showCorrections {
            print("")
            for t in typo10.prefix(400) {
                let n = normaliser.normalise(t)
                if !n.corrections.isEmpty { print("  \(t)\n→ \(n.text)   \(n.corrections.map { "\($0.from)→\($0.to) (\(String(format: "%.1f", $0.cost)))" }.joined(separator: ", "))") }
            }
        }
        print("")
        print("typos: the benchmark's own generator (swap, drop, double a letter in 10% / 20% of the words of 3+ letters), not the fine-tune's; attack: every one-character edit (swap, drop, double, neighbouring key) of one word, up to \(attackCandidates) per sentence, success if any flips a correct prediction")
    }
}

/// The greedy one-edit character attack: for each correctly classified sentence, every
/// one-character edit of one word (swap two neighbours, drop, double, a neighbouring key), a
/// seeded sample of at most `maxCandidates`; the attack succeeds on a sentence when one of them
/// changes the prediction. `adversarial` is, per sentence, the edit that lowered the correct
/// intent's logit margin most (for adversarial training).
enum CharacterAttack {
    struct Result {
        var attacked: Int
        var succeeded: Int
        var successRate: Double { attacked == 0 ? 0 : Double(succeeded) / Double(attacked) }
        var adversarial: [(text: String, label: Int)]
    }

    static func candidates(_ text: String, max: Int, rng: inout SeededRandom) -> [String] {
        let words = text.split(separator: " ", omittingEmptySubsequences: false).map { Array($0) }
        var out: [String] = []
        for (w, word) in words.enumerated() where word.count >= 3 && word.allSatisfy(\.isLetter) {
            func with(_ chars: [Character]) {
                var ws = words
                ws[w] = chars
                out.append(ws.map { String($0) }.joined(separator: " "))
            }
            for p in word.indices {
                if p + 1 < word.count, word[p] != word[p + 1] { var c = word; c.swapAt(p, p + 1); with(c) }
                var d = word; d.remove(at: p); with(d)
                var e = word; e.insert(word[p], at: p); with(e)
                if let near = Typos.keyboard[Character(word[p].lowercased())] {
                    for k in near { var s = word; s[p] = k; with(s) }
                }
            }
        }
        if out.count > max { out.shuffle(using: &rng); out = Array(out.prefix(max)) }
        return out
    }

    /// `logits` maps texts to `[N, C]` logits.
    static func run(sentences: [(String, Int)], maxCandidates: Int, seed: UInt64, logits: ([String]) -> [Float]) -> Result {
        let clean = logits(sentences.map(\.0))
        let C = clean.count / max(1, sentences.count)
        func argmax(_ l: [Float], _ n: Int) -> Int { (0..<C).max { l[n * C + $0] < l[n * C + $1] }! }
        var rng = SeededRandom(seed: seed &+ 500)
        var attacked = 0, succeeded = 0
        var adversarial: [(String, Int)] = []
        var batch: [String] = [], owner: [Int] = []
        var lists: [[String]] = []
        for (i, s) in sentences.enumerated() where argmax(clean, i) == s.1 {
            let c = candidates(s.0, max: maxCandidates, rng: &rng)
            guard !c.isEmpty else { continue }
            attacked += 1
            lists.append(c)
            batch += c
            owner += [Int](repeating: i, count: c.count)
        }
        let l = batch.isEmpty ? [] : logits(batch)
        var bestMargin: [Int: (Float, String)] = [:]
        var flipped = Set<Int>()
        for (k, i) in owner.enumerated() {
            let label = sentences[i].1
            var other = -Float.infinity
            for c in 0..<C where c != label { other = max(other, l[k * C + c]) }
            let margin = l[k * C + label] - other
            if margin < 0 { flipped.insert(i) }
            if bestMargin[i] == nil || margin < bestMargin[i]!.0 { bestMargin[i] = (margin, batch[k]) }
        }
        succeeded = flipped.count
        adversarial = bestMargin.keys.sorted().map { (bestMargin[$0]!.1, sentences[$0].1) }
        return Result(attacked: attacked, succeeded: succeeded, adversarial: adversarial)
    }
}
