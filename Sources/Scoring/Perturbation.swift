/// Seeded typos, the kind people make: a swapped pair, a dropped letter, a doubled letter, a
/// neighbouring key. The same seed gives the same variants on every machine.
public enum Typos {
    public static let keyboard: [Character: String] = [
        "q": "wa", "w": "qes", "e": "wrd", "r": "etf", "t": "ryg", "y": "tuh", "u": "yij", "i": "uok", "o": "ipl", "p": "o",
        "a": "qsz", "s": "awdz", "d": "sefx", "f": "drgc", "g": "fthv", "h": "gyjb", "j": "hukn", "k": "jilm", "l": "ko",
        "z": "asx", "x": "zsdc", "c": "xdfv", "v": "cfgb", "b": "vghn", "n": "bhjm", "m": "njk",
    ]

    /// `text` with about `rate` of its words (those of 2+ letters) given one typo each.
    public static func perturb(_ text: String, rate: Double, seed: UInt64) -> String {
        var rng = SeededRandom(seed: seed &+ 0x1234_5678)
        var words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        for i in words.indices {
            var chars = Array(words[i])
            guard chars.count >= 2, chars.allSatisfy({ $0.isLetter }) || chars.count >= 3 else { continue }
            guard rng.unit() < rate else { continue }
            let p = Int(rng.next() % UInt64(chars.count))
            switch rng.next() % 4 {
            case 0 where p + 1 < chars.count: chars.swapAt(p, p + 1)
            case 1: chars.remove(at: p)
            case 2: chars.insert(chars[p], at: p)
            default:
                let lower = Character(chars[p].lowercased())
                if let near = keyboard[lower], !near.isEmpty {
                    let options = Array(near)
                    chars[p] = options[Int(rng.next() % UInt64(options.count))]
                } else if p + 1 < chars.count { chars.swapAt(p, p + 1) }
            }
            words[i] = String(chars)
        }
        return words.joined(separator: " ")
    }
}

/// Noisy variants of a training text for robust training: the first copy has typos at the
/// given rate; later copies vary the kind of noise (twice the typos and changed punctuation;
/// typos, a dropped word and changed casing), so a model learns that none of them changes the
/// intent.
public enum Noise {
    public static func variant(_ text: String, copy c: Int, typoRate: Double, seed: UInt64) -> String {
        var t = Typos.perturb(text, rate: c % 3 == 1 ? min(1, 2 * typoRate) : typoRate, seed: seed)
        guard c > 0 else { return t }
        var rng = SeededRandom(seed: seed &+ 0x51_7cc1_b727)
        if c % 3 == 1 { t = punctuation(t, rng: &rng) }
        if c % 3 == 2 { t = casing(droppingAWord(t, rng: &rng), rng: &rng) }
        return t
    }

    /// Drops the final punctuation mark, or adds a "?" or "." when there is none.
    static func punctuation(_ t: String, rng: inout SeededRandom) -> String {
        guard let last = t.last else { return t }
        if last.isPunctuation { return String(t.dropLast()) }
        return t + (rng.next() % 2 == 0 ? "?" : ".")
    }

    /// Drops one word of a sentence of four or more words.
    static func droppingAWord(_ t: String, rng: inout SeededRandom) -> String {
        var words = t.split(separator: " ").map(String.init)
        guard words.count >= 4 else { return t }
        words.remove(at: Int(rng.next() % UInt64(words.count)))
        return words.joined(separator: " ")
    }

    /// All lower case, or the first letter upper case.
    static func casing(_ t: String, rng: inout SeededRandom) -> String {
        rng.next() % 2 == 0 ? t.lowercased() : t.prefix(1).uppercased() + t.dropFirst()
    }
}
