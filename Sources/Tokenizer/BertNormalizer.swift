import Foundation

/// BERT's text normalisation, in the order HuggingFace's `BertNormalizer` applies it:
/// clean the text (drop NUL, U+FFFD and control characters; map whitespace to a space),
/// put spaces around CJK ideographs, strip accents (NFD, then drop nonspacing marks),
/// lower-case.
public struct BertNormalizer: Sendable {
    public var cleanText = true
    public var handleChineseChars = true
    /// nil: follow `lowercase`, as BERT does.
    public var stripAccents: Bool? = nil
    public var lowercase = true

    public init(cleanText: Bool = true, handleChineseChars: Bool = true, stripAccents: Bool? = nil, lowercase: Bool = true) {
        self.cleanText = cleanText
        self.handleChineseChars = handleChineseChars
        self.stripAccents = stripAccents
        self.lowercase = lowercase
    }

    public func normalize(_ text: String) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(text.unicodeScalars.count + 8)
        for c in text.unicodeScalars {
            if cleanText {
                if c.value == 0 || c.value == 0xFFFD || Self.isControl(c) { continue }
                if Self.isWhitespace(c) { out.append(" "); continue }
            }
            if handleChineseChars && Self.isChineseChar(c) {
                out.append(" "); out.append(c); out.append(" ")
                continue
            }
            out.append(c)
        }
        if stripAccents ?? lowercase {
            // Decompose only when something is not ASCII; ASCII has no accents.
            if out.contains(where: { $0.value >= 0x80 }) {
                var s = String.UnicodeScalarView()
                s.append(contentsOf: out)
                let nfd = String(s).decomposedStringWithCanonicalMapping
                out = nfd.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
            }
        }
        if lowercase {
            var lowered: [Unicode.Scalar] = []
            lowered.reserveCapacity(out.count)
            for c in out {
                if c.value < 0x80 {
                    lowered.append(c.value >= 0x41 && c.value <= 0x5A ? Unicode.Scalar(c.value + 32)! : c)
                } else {
                    lowered.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
                }
            }
            out = lowered
        }
        return out
    }

    /// Tab, newline and carriage return count as whitespace here, not as control characters.
    public static func isWhitespace(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09, 0x0A, 0x0D, 0x20: return true
        default: return c.value >= 0x80 && c.properties.isWhitespace
        }
    }

    /// Control, format, unassigned, private-use (Unicode "Other"), except tab/newline/CR.
    public static func isControl(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x09, 0x0A, 0x0D: return false
        case 0x20..<0x7F: return false
        default:
            switch c.properties.generalCategory {
            case .control, .format, .unassigned, .privateUse, .surrogate: return true
            default: return false
            }
        }
    }

    /// The CJK Unified Ideographs blocks BERT isolates (not Hiragana, Katakana or Hangul).
    public static func isChineseChar(_ c: Unicode.Scalar) -> Bool {
        switch c.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B820...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}
