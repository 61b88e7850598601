import Datasets
import Foundation
import JSON
import Testing
@testable import Store

@Suite("Reading and validating datasets")
struct DatasetReadingTests {
    @Test("CSV: quotes, doubled quotes, line breaks inside quotes, CRLF; each record knows its line")
    func csv() throws {
        let text = "text,category\r\n\"I ordered, but \"\"nothing\"\"\",card_arrival\r\nplain,x\n\"two\nlines\",y\n\nlast,z"
        let r = try CSVReader.records(text)
        #expect(r.map(\.line) == [2, 3, 4, 7])
        #expect(r[0].fields == ["text": "I ordered, but \"nothing\"", "category": "card_arrival"])
        #expect(r[2].fields["text"] == "two\nlines")
    }

    @Test("CSV errors name the line", arguments: [
        ("text,label\na,b\nc\n", 3, "fields"),
        ("text,label\n\"open,b\n", 2, "never closed"),
        ("text,label\nab\"c,d\n", 2, "quote"),
        ("text,text\na,b\n", 1, "twice"),
        ("", 1, "empty"),
    ])
    func csvErrors(text: String, line: Int, fragment: String) {
        do {
            _ = try CSVReader.records(text)
            Issue.record("accepted")
        } catch {
            #expect(error.line == line)
            #expect(error.problem.contains(fragment), "\(error)")
        }
    }

    @Test("JSONL: one object a line, blank lines skipped, bad lines named")
    func jsonl() throws {
        let r = try JSONLReader.records("{\"text\":\"a\",\"label\":3}\n\n{\"text\":\"b\",\"label\":\"x\",\"extra\":null}\n")
        #expect(r.map(\.line) == [1, 3])
        #expect(r[0].fields["label"] == "3")
        do { _ = try JSONLReader.records("{\"text\":\"a\"}\n{oops}\n"); Issue.record("accepted") } catch { #expect(error.line == 2) }
        do { _ = try JSONLReader.records("[1]\n"); Issue.record("accepted") } catch { #expect(error.problem.contains("object")) }
        do { _ = try JSONLReader.records("{\"text\":[1]}\n"); Issue.record("accepted") } catch { #expect(error.problem.contains("text")) }
        // CRLF line ends (one Character in Swift: splitting on "\n" alone saw one line).
        let crlf = try JSONLReader.records("{\"text\":\"a\",\"label\":\"x\"}\r\n\r\n{\"text\":\"b\",\"label\":\"y\"}\r\n")
        #expect(crlf.map(\.line) == [1, 3])
        #expect(crlf.map { $0.fields["text"] } == ["a", "b"])
    }

    @Test("validation lists every problem with its line, and nothing passes when one fails")
    func validation() {
        let records = [
            RawRecord(line: 2, fields: ["text": "ok", "label": "a"]),
            RawRecord(line: 3, fields: ["text": "  ", "label": "a"]),
            RawRecord(line: 4, fields: ["text": "no label"]),
            RawRecord(line: 5, fields: ["text": "x", "label": "a", "split": "holdout"]),
        ]
        guard case .failure(let p) = DatasetImport.plan(records, options: ImportOptions(splitField: "split")) else { Issue.record(); return }
        #expect(p.problems.map(\.line) == [2, 3, 4, 5])
        #expect(p.problems.contains { $0.line == 2 && $0.problem.contains("split") })
        #expect(p.problems.contains { $0.line == 3 && $0.problem.contains("empty") })
        #expect(p.problems.contains { $0.line == 4 && $0.problem.contains("'label'") })
        #expect(p.problems.contains { $0.line == 5 && $0.problem.contains("holdout") })
    }

    @Test("duplicates are dropped and reported; the same text with two labels is kept and reported")
    func duplicates() throws {
        let records = [
            RawRecord(line: 2, fields: ["text": "a", "label": "x"]),
            RawRecord(line: 3, fields: ["text": "a", "label": "x"]),
            RawRecord(line: 4, fields: ["text": "a", "label": "y"]),
            RawRecord(line: 5, fields: ["text": "b", "label": " y "]),
        ]
        let plan = try DatasetImport.plan(records, options: ImportOptions()).get()
        #expect(plan.examples.count == 3)
        #expect(plan.duplicates.map(\.line) == [3])
        #expect(plan.duplicates.map(\.firstLine) == [2])
        #expect(plan.conflicts.map(\.line) == [4])
        #expect(plan.conflicts.first?.labels == ["x", "y"])
        #expect(plan.labels == ["x", "y"])
    }
}
