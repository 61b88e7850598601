import Testing
import Tokenizer

@Suite("BERT tokenizer stages")
struct TokenizerTests {
    func norm(_ s: String, _ n: BertNormalizer = BertNormalizer()) -> String {
        var v = String.UnicodeScalarView()
        v.append(contentsOf: n.normalize(s))
        return String(v)
    }

    @Test("normaliser: control characters dropped, whitespace mapped, accents stripped, lower-cased, CJK isolated")
    func normalizer() {
        #expect(norm("Ab\u{0}c\u{7}d\u{FFFD}e\u{200B}") == "abcde")
        #expect(norm("a\tb\nc\u{A0}d\u{3000}e") == "a b c d e")
        #expect(norm("Café NAÏVE") == "cafe naive")
        #expect(norm("cafe\u{301}") == "cafe")
        #expect(norm("我的卡") == " 我  的  卡 ")
        #expect(norm("Café", BertNormalizer(lowercase: false)) == "Café")
        #expect(norm("Café", BertNormalizer(stripAccents: true, lowercase: false)) == "Cafe")
    }

    @Test("pre-tokeniser: whitespace splits, each punctuation character stands alone")
    func preTokenizer() {
        let words = BertPreTokenizer.split(Array("hi,  there!!$5 a-b".unicodeScalars)).map { w in
            var v = String.UnicodeScalarView(); v.append(contentsOf: w); return String(v)
        }
        #expect(words == ["hi", ",", "there", "!", "!", "$", "5", "a", "-", "b"])
    }

    @Test("WordPiece: greedy longest match, ## continuations, [UNK] for uncoverable and over-long words")
    func wordPiece() throws {
        let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "aff", "##a", "x"]
        let tok = try BertTokenizer(vocab: vocab, normalizer: BertNormalizer())
        #expect(tok.tokens(tok.pieces("unaffable")) == ["un", "##aff", "##able"])
        #expect(tok.tokens(tok.pieces("unaffz")) == ["[UNK]"])
        #expect(tok.tokens(tok.pieces(String(repeating: "x", count: 101))) == ["[UNK]"])
        #expect(tok.tokens(tok.encode("", maxLength: 8).ids) == ["[CLS]", "[SEP]"])
        let e = tok.encode("x x x x x x x x x x", maxLength: 5)
        #expect(tok.tokens(e.ids) == ["[CLS]", "x", "x", "x", "[SEP]"])
        #expect(e.untruncatedCount == 12)
        #expect(throws: BertTokenizer.MissingToken.self) { try BertTokenizer(vocab: ["a"], normalizer: BertNormalizer()) }
    }
}
