import Scoring

/// The greedy one-edit character attack: for each correctly classified sentence, every
/// one-character edit of one word (swap two neighbours, drop, double, a neighbouring key), a
/// seeded sample of at most `maxCandidates`; the attack succeeds on a sentence when one of them
/// changes the prediction. `adversarial` is, per sentence, the edit that lowered the correct
/// intent's logit margin most (for adversarial training).
public enum CharacterAttack {
    public struct Result: Sendable {
        public var attacked: Int
        public var succeeded: Int
        public var successRate: Double { attacked == 0 ? 0 : Double(succeeded) / Double(attacked) }
        /// Per attacked sentence (in input order), the edit that lowered the correct intent's margin most.
        public var adversarial: [(index: Int, text: String, margin: Float)]
    }

    public static func candidates(_ text: String, max: Int, rng: inout SeededRandom) -> [String] {
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

    /// `logits` maps texts to `[N, C]` logits; it is called on chunks of at most `chunk` texts.
    /// With `onlyCorrect` false every sentence is attacked (for training: the worst edit of
    /// each), not only those classified correctly.
    public static func run(sentences: [(String, Int)], maxCandidates: Int, seed: UInt64, onlyCorrect: Bool = true, chunk: Int = 1024,
                           logits: ([String]) -> [Float]) -> Result {
        let clean = logits(sentences.map(\.0))
        let C = clean.count / max(1, sentences.count)
        func argmax(_ l: [Float], _ n: Int) -> Int { (0..<C).max { l[n * C + $0] < l[n * C + $1] }! }
        var rng = SeededRandom(seed: seed &+ 500)
        var attacked = 0, succeeded = 0
        var batch: [String] = [], owner: [Int] = []
        for (i, s) in sentences.enumerated() where !onlyCorrect || argmax(clean, i) == s.1 {
            let c = candidates(s.0, max: maxCandidates, rng: &rng)
            guard !c.isEmpty else { continue }
            attacked += 1
            batch += c
            owner += [Int](repeating: i, count: c.count)
        }
        var l: [Float] = []
        l.reserveCapacity(batch.count * C)
        for start in stride(from: 0, to: batch.count, by: max(1, chunk)) { l += logits(Array(batch[start..<min(start + chunk, batch.count)])) }
        var bestMargin: [Int: (Float, String)] = [:]
        var flipped = Set<Int>()
        for (k, i) in owner.enumerated() {
            let label = sentences[i].1
            var other = -Float.infinity
            for c in 0..<C where c != label { other = max(other, l[k * C + c]) }
            let margin = l[k * C + label] - other
            if margin < 0 && (onlyCorrect || argmax(clean, i) == label) { flipped.insert(i) }
            if bestMargin[i] == nil || margin < bestMargin[i]!.0 { bestMargin[i] = (margin, batch[k]) }
        }
        succeeded = flipped.count
        let adversarial = bestMargin.keys.sorted().map { (index: $0, text: bestMargin[$0]!.1, margin: bestMargin[$0]!.0) }
        return Result(attacked: attacked, succeeded: succeeded, adversarial: adversarial)
    }
}
