/// The ids a sentence becomes, and what truncation did.
public struct Encoding: Sendable, Equatable {
    /// `[CLS] pieces… [SEP]`, at most `maxLength` ids.
    public var ids: [Int32]
    /// How many ids the sentence had before truncation (with [CLS] and [SEP]).
    public var untruncatedCount: Int
    public var wasTruncated: Bool { untruncatedCount > ids.count }
}

/// BERT tokenisation end to end: normaliser → pre-tokeniser → WordPiece → [CLS]/[SEP] and
/// truncation. Matches HuggingFace's fast `BertTokenizer` for uncased and cased BERT vocabularies.
public final class BertTokenizer: Sendable {
    public let normalizer: BertNormalizer
    public let wordPiece: WordPiece
    public let idToToken: [String]
    public let clsID: Int32, sepID: Int32, padID: Int32, unknownID: Int32

    public struct MissingToken: Error, CustomStringConvertible {
        public let token: String
        public var description: String { "the vocabulary has no \(token) token" }
    }

    /// - Parameters:
    ///   - vocab: tokens in id order (vocab.txt's lines)
    public init(vocab: [String], normalizer: BertNormalizer, unknownToken: String = "[UNK]", clsToken: String = "[CLS]",
                sepToken: String = "[SEP]", padToken: String = "[PAD]", maxInputCharsPerWord: Int = 100) throws {
        var map: [String: Int32] = [:]
        map.reserveCapacity(vocab.count)
        for (i, t) in vocab.enumerated() where map[t] == nil { map[t] = Int32(i) }
        func id(_ t: String) throws -> Int32 {
            guard let i = map[t] else { throw MissingToken(token: t) }
            return i
        }
        unknownID = try id(unknownToken)
        clsID = try id(clsToken)
        sepID = try id(sepToken)
        padID = try id(padToken)
        self.normalizer = normalizer
        idToToken = vocab
        wordPiece = WordPiece(vocab: map, unknownID: unknownID, maxInputCharsPerWord: maxInputCharsPerWord)
    }

    public var vocabularySize: Int { idToToken.count }

    /// Word-piece ids of `text`, without special tokens or truncation.
    public func pieces(_ text: String) -> [Int32] {
        let normalized = normalizer.normalize(text)
        var ids: [Int32] = []
        ids.reserveCapacity(normalized.count / 3 + 4)
        for word in BertPreTokenizer.split(normalized) { wordPiece.tokenize(word, into: &ids) }
        return ids
    }

    /// `[CLS] pieces [SEP]`, truncated to `maxLength` ids (keeping [CLS] and [SEP]).
    public func encode(_ text: String, maxLength: Int) -> Encoding {
        precondition(maxLength >= 2, "maxLength must leave room for [CLS] and [SEP]")
        let p = pieces(text)
        var ids: [Int32] = [clsID]
        ids.append(contentsOf: p.prefix(maxLength - 2))
        ids.append(sepID)
        return Encoding(ids: ids, untruncatedCount: p.count + 2)
    }

    public func tokens(_ ids: [Int32]) -> [String] { ids.map { idToToken.indices.contains(Int($0)) ? idToToken[Int($0)] : "?" } }
}
