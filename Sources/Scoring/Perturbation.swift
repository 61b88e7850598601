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
