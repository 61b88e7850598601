/// Splits normalised text into words: on whitespace (dropped) and around every punctuation
/// character (kept, each on its own), as HuggingFace's `BertPreTokenizer` does.
public enum BertPreTokenizer {
    public static func split(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var words: [ArraySlice<Unicode.Scalar>] = []
        var start: Int? = nil
        for (i, c) in scalars.enumerated() {
            if isWhitespace(c) {
                if let s = start { words.append(scalars[s..<i]); start = nil }
            } else if isPunctuation(c) {
                if let s = start { words.append(scalars[s..<i]); start = nil }
                words.append(scalars[i..<(i + 1)])
            } else if start == nil {
                start = i
            }
        }
        if let s = start { words.append(scalars[s..<scalars.count]) }
        return words
    }

    static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        c.value == 0x20 || (c.value >= 0x09 && c.value <= 0x0D) || (c.value >= 0x80 && c.properties.isWhitespace)
    }

    /// ASCII punctuation (which includes `$`, `+`, `^`, `` ` ``, `|`, `~`), or any Unicode P* category.
    public static func isPunctuation(_ c: Unicode.Scalar) -> Bool {
        let v = c.value
        if (v >= 33 && v <= 47) || (v >= 58 && v <= 64) || (v >= 91 && v <= 96) || (v >= 123 && v <= 126) { return true }
        if v < 0x80 { return false }
        switch c.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }
}
