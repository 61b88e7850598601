import Foundation
import Scoring
import Testing

@Suite("Spelling normaliser")
struct NormaliserTests {
    static let texts = [
        "my card has not arrived yet", "when will my card arrive", "I want to activate my new card",
        "how do I top up my account", "top up with a transfer", "why was my transfer declined",
        "the exchange rate was wrong", "I need a refund for this payment", "my payment was declined",
        "where is my card", "card delivery takes how long", "can I top up by cheque",
    ] + [String](repeating: "my card and my account and my transfer", count: 30)

    @Test("the typos people make come back to the deployment's words: swaps, drops, doubles, neighbouring keys")
    func correctsTypos() {
        let n = Normaliser.build(texts: Self.texts)
        for (typed, meant) in [("crad", "card"), ("transfre", "transfer"), ("acount", "account"), ("accountt", "account"),
                               ("declinde", "declined"), ("paymebt", "payment"), ("arived", "arrived"), ("exchnage", "exchange")] {
            #expect(n.correction(typed)?.word == meant, "\(typed)")
        }
        let r = n.normalise("Why was my TRANSFRE declinde, and where is my Crad?")
        #expect(r.text == "Why was my TRANSFER declined, and where is my Card?")
        #expect(r.corrections.map(\.from) == ["TRANSFRE", "declinde", "Crad"])
        #expect(r.corrections.allSatisfy { $0.cost > 0 && $0.cost <= 2 })
    }

    @Test("known words, numbers, short words, protected words and words with nothing close are left as typed, byte for byte")
    func leavesTheRestAlone() {
        let n = Normaliser.build(texts: Self.texts, protected: ["cart"])
        for text in ["my card has not arrived yet", "I paid 250 on 12/03 with code ab12cd", "ok so at", "Zürich – Monzo!",
                     "put it in the cart", "  spaces\tand\ttabs  ", ""] {
            let r = n.normalise(text)
            #expect(r.text == text && r.corrections.isEmpty, "\(text) → \(r.text)")
        }
        // Two edits on a four-letter word are too many: "cxrx" stays.
        #expect(n.correction("cxrx") == nil)
    }

    @Test("frequency decides between equally close words; a unit of edit cost must be bought with e^costWeight as many uses")
    func frequencyPrior() {
        // "tap" is one substitution from both "top" (frequent) and "tip" (rare).
        let n = Normaliser(counts: ["top": 500, "tip": 2, "stop": 30])
        #expect(n.correction("tap")?.word == "top")
        // "stoop" is a doubled letter from "stop" (0.6) and a drop plus a double from "top" (1.6):
        // 500/30 < e^4, so the closer word wins.
        #expect(n.correction("stoop")?.word == "stop")
    }

    @Test("building leaves out the data's own typos (rare words one edit from frequent ones) unless the model knows them")
    func buildFilter() {
        let texts = [String](repeating: "my card is here", count: 40) + ["my cadr is here", "my cart is here"]
        let n = Normaliser.build(texts: texts, protected: ["cart"])
        #expect(n.counts["card"] == 40)
        #expect(n.counts["cadr"] == nil)
        #expect(n.counts["cart"] == 1)
        #expect(n.normalise("my cadr").text == "my card")
        // Corrections add their words; their typos go the same way.
        let more = n.adding(texts: ["my pin is blocked", "my pni is here"])
        #expect(more.counts["blocked"] == 1)
        #expect(more.counts["card"] == 40)
    }

    @Test("edit costs: neighbouring keys, doubled letters and swaps cost less than other edits; a limit cuts the work short")
    func editCosts() {
        func cost(_ a: String, _ b: String, limit: Double = 9) -> Double {
            Normaliser.editCost(a.unicodeScalars.map(\.value), b.unicodeScalars.map(\.value), limit: limit)
        }
        #expect(cost("card", "card") == 0)
        #expect(abs(cost("cqrd", "card") - 0.7) < 1e-9)   // q and a are neighbours
        #expect(cost("cmrd", "card") == 1)                 // m and a are not
        #expect(abs(cost("crad", "card") - 0.8) < 1e-9)
        #expect(abs(cost("caard", "card") - 0.6) < 1e-9)
        #expect(abs(cost("adress", "address") - 0.6) < 1e-9)
        #expect(cost("crd", "card") == 1)
        #expect(cost("xyzw", "card", limit: 1) > 1)
    }

    @Test("the same vocabulary gives the same corrections whatever order it was built in")
    func deterministic() {
        let a = Normaliser.build(texts: Self.texts), b = Normaliser.build(texts: Self.texts.reversed())
        let typed = "wehn will my crad arive and why was my tarnsfer declnied"
        #expect(a.normalise(typed).text == b.normalise(typed).text)
        #expect(a.normalise(typed).text == "when will my card arrive and why was my transfer declined")
    }
}

@Suite("Noisy copies for robust training")
struct NoiseTests {
    @Test("the first copy is the typo copy; later ones vary punctuation, drop a word and change casing; all seeded")
    func variants() {
        let text = "Why was my card payment declined today?"
        #expect(Noise.variant(text, copy: 0, typoRate: 0.1, seed: 9) == Typos.perturb(text, rate: 0.1, seed: 9))
        let second = Noise.variant(text, copy: 1, typoRate: 0, seed: 9)
        #expect(second == "Why was my card payment declined today")
        let third = Noise.variant(text, copy: 2, typoRate: 0, seed: 9)
        #expect(third.split(separator: " ").count == 6)
        #expect(third == third.lowercased() || third.first?.isUppercase == true)
        #expect(Noise.variant(text, copy: 2, typoRate: 0.3, seed: 4) == Noise.variant(text, copy: 2, typoRate: 0.3, seed: 4))
        #expect(Noise.variant("no punctuation here", copy: 1, typoRate: 0, seed: 2).last.map { "?.".contains($0) } == true)
    }
}

@Suite("Spelling normaliser: the index")
struct NormaliserIndexTests {
    @Test("the symmetric-delete index finds what a scan of the whole vocabulary finds, for one- and two-edit typos")
    func indexMatchesScan() {
        let n = Normaliser.build(texts: NormaliserTests.texts + ["please transfer the money to my savings account",
                                                                  "I lost my wallet and my phone yesterday", "cancel the standing order"])
        var rng = SeededRandom(seed: 11)
        var checked = 0
        for word in n.counts.keys.sorted() where word.count >= 3 {
            for rate in [0.99, 0.99] {
                var typed = Typos.perturb(word, rate: rate, seed: rng.next())
                if rng.next() % 2 == 0 { typed = Typos.perturb(typed, rate: rate, seed: rng.next()) }
                guard n.counts[typed] == nil else { continue }
                let a = n.correction(typed), b = n.correction(typed, exhaustive: true)
                #expect(a?.word == b?.word, "\(word) → \(typed): index \(a?.word ?? "-"), scan \(b?.word ?? "-")")
                checked += 1
            }
        }
        #expect(checked > 50)
    }
}
