import Foundation

/// The paper's "correct only the input transformation": a per-version spelling normaliser in
/// front of the tokenizer, derived from the deployment's own words (its training texts and
/// the corrections it received). A word the vocabulary does not know is replaced by the most
/// likely known word within a small, keyboard-aware edit distance, weighed by how often the
/// deployment sees that word. Known words, anything with a digit, short words and words with
/// no close known word (names, new terms) are left exactly as they are.
///
/// Immutable once built; shared across threads. Deterministic: the same vocabulary gives the
/// same output on every machine.
public final class Normaliser: Sendable {
    public struct Settings: Sendable, Codable, Equatable {
        /// Largest weighted edit cost of a correction (unit edits cost 1, cheaper kinds less).
        public var maxCost = 2.0
        /// Largest cost for words of `shortLength` letters or fewer (two edits on a four-letter
        /// word leave too little of it to go on).
        public var shortMaxCost = 1.0
        public var shortLength = 4
        /// Words shorter than this are never corrected.
        public var minLength = 3
        /// How much a unit of edit cost weighs against the log of a word's frequency: a
        /// correction one unit further away must be e^costWeight times as frequent to win.
        public var costWeight = 4.0
        /// A vocabulary word seen at most `rareCount` times within cost 1 of a word seen
        /// `typoRatio` times as often is taken for a typo in the data and left out.
        public var rareCount = 1
        public var typoRatio = 20.0
        public init() {}
    }

    public let settings: Settings
    /// Lower-cased word → how often the deployment's texts hold it.
    public let counts: [String: Int]
    /// Words that are real but not the deployment's (the tokenizer's whole words): never
    /// corrected, never taken for typos in the data. Not stored with the version: they come
    /// from the model's vocabulary when the version is loaded.
    public let protected: Set<String>
    /// The vocabulary by length: `[length] → [(letters, log count)]`.
    private let byLength: [[(word: [UInt32], logCount: Double, text: String)]]
    /// Symmetric-delete index: every string one or two deletions from a vocabulary word (and
    /// the word itself) → the words, as (length, position in `byLength[length]`). A word within
    /// two edits of a typed one shares such a string with it, so a lookup finds every
    /// candidate without scanning the vocabulary.
    private let deletions: [String: [UInt32]]

    public init(counts: [String: Int], protected: Set<String> = [], settings: Settings = Settings()) {
        self.settings = settings
        self.counts = counts
        self.protected = protected
        var buckets: [[(word: [UInt32], logCount: Double, text: String)]] = []
        for (w, c) in counts.sorted(by: { $0.key < $1.key }) {
            let letters = w.unicodeScalars.map(\.value)
            while buckets.count <= letters.count { buckets.append([]) }
            buckets[letters.count].append((letters, log(Double(c) + 1), w))
        }
        byLength = buckets
        var index: [String: [UInt32]] = [:]
        for (length, bucket) in buckets.enumerated() {
            for (k, entry) in bucket.enumerated() {
                let id = UInt32(length) << 24 | UInt32(k)
                for d in Self.deletionVariants(entry.word) { index[d, default: []].append(id) }
            }
        }
        deletions = index
    }

    /// `word` with zero, one and two letters deleted, each once.
    static func deletionVariants(_ word: [UInt32]) -> Set<String> {
        func text(_ s: [UInt32]) -> String { String(String.UnicodeScalarView(s.compactMap(Unicode.Scalar.init))) }
        var out: Set<String> = [text(word)]
        for i in word.indices {
            var one = word
            one.remove(at: i)
            out.insert(text(one))
            for j in one.indices {
                var two = one
                two.remove(at: j)
                out.insert(text(two))
            }
        }
        return out
    }

    /// Builds the vocabulary from `texts` (training texts, corrections), leaving out the words
    /// that look like typos of much more frequent ones.
    public static func build(texts: some Sequence<String>, protected: Set<String> = [], settings: Settings = Settings()) -> Normaliser {
        var raw: [String: Int] = [:]
        for t in texts {
            for token in tokens(t) where token.kind == .word { raw[token.lower, default: 0] += 1 }
        }
        let all = Normaliser(counts: raw, settings: settings)
        var kept = raw
        for (w, c) in raw where c <= settings.rareCount && w.unicodeScalars.count >= settings.minLength && !protected.contains(w) {
            let letters = w.unicodeScalars.map(\.value)
            if all.closeFrequentWord(letters, excluding: w, minCount: Double(c) * settings.typoRatio) { kept[w] = nil }
        }
        return Normaliser(counts: kept, protected: protected, settings: settings)
    }

    /// This vocabulary with more texts' words added (a fine-tune's corrections).
    public func adding(texts: some Sequence<String>) -> Normaliser {
        let extra = Normaliser.build(texts: texts, protected: protected, settings: settings)
        return Normaliser(counts: counts.merging(extra.counts, uniquingKeysWith: +), protected: protected, settings: settings)
    }

    /// One change the normaliser made.
    public struct Correction: Sendable, Equatable, Codable {
        public var from: String
        public var to: String
        public var cost: Double
    }

    /// `text` with its unknown words corrected, and what changed (empty: `text` unchanged).
    public func normalise(_ text: String) -> (text: String, corrections: [Correction]) {
        var out = ""
        var corrections: [Correction] = []
        for token in Self.tokens(text) {
            guard token.kind == .word, counts[token.lower] == nil, !protected.contains(token.lower), let best = correction(token.lower) else {
                out += token.text
                continue
            }
            let fixed = Self.matchingCase(best.word, like: token.text)
            corrections.append(.init(from: token.text, to: fixed, cost: best.cost))
            out += fixed
        }
        return corrections.isEmpty ? (text, []) : (out, corrections)
    }

    /// The best known word for the unknown lower-cased `word`, if one is close enough: within
    /// two edits and the cost limit. `exhaustive` scans the whole vocabulary instead of the
    /// index (for checking the index; it may also find words three cheap edits away).
    public func correction(_ word: String, exhaustive: Bool = false) -> (word: String, cost: Double)? {
        let letters = word.unicodeScalars.map(\.value)
        guard letters.count >= settings.minLength else { return nil }
        let limit = letters.count <= settings.shortLength ? settings.shortMaxCost : settings.maxCost
        var best: (text: String, cost: Double, score: Double)? = nil
        func consider(_ candidate: (word: [UInt32], logCount: Double, text: String)) {
            let cost = Self.editCost(letters, candidate.word, limit: limit)
            guard cost <= limit else { return }
            let score = candidate.logCount - settings.costWeight * cost
            if let b = best, score < b.score || (score == b.score && candidate.text > b.text) { return }
            best = (candidate.text, cost, score)
        }
        if exhaustive {
            let reach = Int(limit.rounded(.up))
            for length in max(1, letters.count - reach)...(letters.count + reach) where length < byLength.count {
                for candidate in byLength[length] { consider(candidate) }
            }
        } else {
            var seen = Set<UInt32>()
            for d in Self.deletionVariants(letters) {
                for id in deletions[d] ?? [] where seen.insert(id).inserted {
                    consider(byLength[Int(id >> 24)][Int(id & 0xFF_FFFF)])
                }
            }
        }
        return best.map { ($0.text, $0.cost) }
    }

    private func closeFrequentWord(_ letters: [UInt32], excluding: String, minCount: Double) -> Bool {
        for d in Self.deletionVariants(letters) {
            for id in deletions[d] ?? [] {
                let candidate = byLength[Int(id >> 24)][Int(id & 0xFF_FFFF)]
                guard candidate.text != excluding, exp(candidate.logCount) - 1 >= minCount else { continue }
                if Self.editCost(letters, candidate.word, limit: 1) <= 1 { return true }
            }
        }
        return false
    }

    // MARK: edit cost

    /// The whole words of a WordPiece vocabulary (`vocab.txt` lines): the protected words.
    public static func wholeWords(ofVocabulary vocabulary: some Sequence<String>) -> Set<String> {
        var out = Set<String>()
        for t in vocabulary where !t.hasPrefix("##") && !t.hasPrefix("[") {
            let s = t.unicodeScalars
            if s.count >= 2, s.allSatisfy({ $0.properties.isAlphabetic }) { out.insert(t.lowercased()) }
        }
        return out
    }

    /// Keyboard neighbours (QWERTY), as unordered pairs.
    static let neighbours: Set<UInt64> = {
        var s = Set<UInt64>()
        for (k, near) in Typos.keyboard {
            let a = k.unicodeScalars.first!.value
            for c in near.unicodeScalars { s.insert(pair(a, c.value)) }
        }
        return s
    }()

    @inline(__always) static func pair(_ a: UInt32, _ b: UInt32) -> UInt64 {
        a < b ? UInt64(a) << 32 | UInt64(b) : UInt64(b) << 32 | UInt64(a)
    }

    /// Weighted optimal-string-alignment distance from the typed word `t` to the known word
    /// `v`: a substitution costs 1 (0.7 between neighbouring keys), an extra or a missing
    /// letter 1 (0.6 when it doubles or undoes a doubled letter), swapping two neighbours 0.8.
    /// Returns a value above `limit` as soon as every path exceeds it.
    public static func editCost(_ t: [UInt32], _ v: [UInt32], limit: Double) -> Double {
        let n = t.count, m = v.count
        if n == 0 || m == 0 { return Double(max(n, m)) }
        let w = m + 1
        var prev2 = [Double](repeating: 0, count: w)
        var prev = (0...m).map { Double($0) }
        var cur = [Double](repeating: 0, count: w)
        for i in 1...n {
            // t has letter t[i-1] that v lacks: an extra letter (cheap if it repeats a neighbour).
            let extra = (i >= 2 && t[i - 1] == t[i - 2]) || (i < n && t[i - 1] == t[i]) ? 0.6 : 1.0
            cur[0] = prev[0] + extra
            var rowMin = cur[0]
            for j in 1...m {
                let a = t[i - 1], b = v[j - 1]
                let sub = a == b ? 0 : (neighbours.contains(pair(a, b)) ? 0.7 : 1.0)
                // v has letter v[j-1] that t lacks: a missing letter (cheap when v doubles it).
                let missing = (j >= 2 && v[j - 1] == v[j - 2]) || (j < m && v[j - 1] == v[j]) ? 0.6 : 1.0
                var c = min(prev[j - 1] + sub, prev[j] + extra, cur[j - 1] + missing)
                if i >= 2, j >= 2, a == v[j - 2], t[i - 2] == b, a != b { c = min(c, prev2[j - 2] + 0.8) }
                cur[j] = c
                rowMin = min(rowMin, c)
            }
            if rowMin > limit { return limit + 1 }
            swap(&prev2, &prev)
            swap(&prev, &cur)
        }
        return prev[m]
    }

    // MARK: words

    enum Kind { case word, other }
    struct Token {
        var text: String
        var kind: Kind
        var lower: String
    }

    /// The text cut into runs of letters and digits (a run holding a digit is not a word) and
    /// everything between them, which is kept byte for byte.
    static func tokens(_ text: String) -> [Token] {
        var out: [Token] = []
        var run = String.UnicodeScalarView(), other = String.UnicodeScalarView()
        var hasDigit = false
        func flushRun() {
            guard !run.isEmpty else { return }
            let s = String(run)
            out.append(Token(text: s, kind: hasDigit ? .other : .word, lower: hasDigit ? "" : s.lowercased()))
            run = .init(); hasDigit = false
        }
        func flushOther() {
            guard !other.isEmpty else { return }
            out.append(Token(text: String(other), kind: .other, lower: ""))
            other = .init()
        }
        for u in text.unicodeScalars {
            let p = u.properties
            if p.isAlphabetic || p.numericType != nil {
                flushOther()
                if p.numericType != nil { hasDigit = true }
                run.append(u)
            } else {
                flushRun()
                other.append(u)
            }
        }
        flushRun(); flushOther()
        return out
    }

    /// `word` (lower case) written the way `original` was: all capitals, a capital first, or as is.
    static func matchingCase(_ word: String, like original: String) -> String {
        let letters = original.unicodeScalars.filter { $0.properties.isAlphabetic }
        if letters.count > 1, letters.allSatisfy({ $0.properties.isUppercase }) { return word.uppercased() }
        if let f = letters.first, f.properties.isUppercase { return word.prefix(1).uppercased() + word.dropFirst() }
        return word
    }
}
