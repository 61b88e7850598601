/// Greedy longest-match-first sub-word tokenisation against a vocabulary; continuation
/// pieces carry the `##` prefix. A word longer than `maxInputCharsPerWord`, or one that
/// cannot be covered by pieces, becomes the unknown token.
public struct WordPiece: Sendable {
    public let vocab: [String: Int32]
    public let unknownID: Int32
    public let maxInputCharsPerWord: Int
    public let continuingPrefix: String

    public init(vocab: [String: Int32], unknownID: Int32, maxInputCharsPerWord: Int = 100, continuingPrefix: String = "##") {
        self.vocab = vocab
        self.unknownID = unknownID
        self.maxInputCharsPerWord = maxInputCharsPerWord
        self.continuingPrefix = continuingPrefix
    }

    /// Appends the ids of `word`'s pieces to `ids`.
    public func tokenize(_ word: ArraySlice<Unicode.Scalar>, into ids: inout [Int32]) {
        let chars = Array(word)
        if chars.count > maxInputCharsPerWord {
            ids.append(unknownID)
            return
        }
        var pieces: [Int32] = []
        var start = 0
        while start < chars.count {
            var end = chars.count
            var found: Int32? = nil
            while start < end {
                var s = start > 0 ? continuingPrefix : ""
                s.unicodeScalars.append(contentsOf: chars[start..<end])
                if let id = vocab[s] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let id = found else {
                ids.append(unknownID)
                return
            }
            pieces.append(id)
            start = end
        }
        ids.append(contentsOf: pieces)
    }
}
