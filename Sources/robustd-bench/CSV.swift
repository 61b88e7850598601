import ArgumentParser
import Datasets
import Scoring
import Foundation

/// A Banking77-style CSV (columns `text` and `category` or `label`) as rows of [text, label],
/// after a header row, read by the daemon's own CSV reader (Datasets). A file it refuses
/// yields no rows (the benchmark then reports it has no data).
func parseCSV(_ text: String) -> [[String]] {
    guard let records = try? CSVReader.records(text) else { return [] }
    return [["text", "label"]] + records.map { [$0.fields["text"] ?? "", $0.fields["category"] ?? $0.fields["label"] ?? ""] }
}

/// The model and Banking77 folders, for the benchmarks that need both.
struct BenchPaths: ParsableArguments {
    @Option(help: "The model folder.")
    var model: String = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/robustd/models/all-MiniLM-L6-v2").path

    @Option(help: "The Banking77 folder (default: shared/ beside the checkout).")
    var data: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/data/banking77").path

    /// (text, label) rows of a CSV file of the folder.
    func rows(_ file: String) throws -> [(String, String)] {
        parseCSV(try String(contentsOfFile: data + "/" + file, encoding: .utf8)).dropFirst().filter { $0.count >= 2 }.map { ($0[0], $0[1]) }
    }

    /// The first `perIntent` rows of each label, in file order.
    func rows(_ file: String, perIntent: Int) throws -> [(String, String)] {
        var seen: [String: Int] = [:]
        return try rows(file).filter { row in
            seen[row.1, default: 0] += 1
            return seen[row.1]! <= perIntent
        }
    }

    /// The tokenizer's whole words, which a normaliser never corrects (as the daemon protects them).
    func protectedWords() throws -> Set<String> {
        Normaliser.wholeWords(ofVocabulary: try String(contentsOfFile: model + "/vocab.txt", encoding: .utf8).split(separator: "\n").map(String.init))
    }
}

/// Word typos for replayed traffic and for evaluation (swap, drop, double a letter in about
/// `rate` of the words of 3+ letters): a different generator from the fine-tune's
/// augmentation (``Typos``), so that robustness is not measured on the noise it trained on.
func typos(_ text: String, rate: Double, rng: inout SeededRandom) -> String {
    var words = text.split(separator: " ").map { Array($0) }
    for i in words.indices where words[i].count >= 3 && Double(rng.next() % 1000) / 1000 < rate {
        let p = Int(rng.next() % UInt64(words[i].count - 1))
        switch rng.next() % 3 {
        case 0: words[i].swapAt(p, p + 1)
        case 1: words[i].remove(at: p)
        default: words[i].insert(words[i][p], at: p)
        }
    }
    return words.map { String($0) }.joined(separator: " ")
}
