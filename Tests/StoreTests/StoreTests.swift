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

@Suite("SQLite store")
struct SQLiteStoreTests {
    func plan(_ n: Int, labels: Int = 3, split: Split = .train) -> ImportPlan {
        let records = (0..<n).map { RawRecord(line: $0 + 2, fields: ["text": "text \($0)", "label": "l\($0 % labels)"]) }
        return try! DatasetImport.plan(records, options: ImportOptions(defaultSplit: split)).get()
    }

    @Test("import, list and read back; a name in use is a conflict unless replaced", arguments: [":memory:", "file"])
    func importAndList(kind: String) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = try SQLiteStore(path: kind == "file" ? dir.appendingPathComponent("db.sqlite").path : ":memory:")
        let info = try store.importDataset(name: "b77", plan: plan(10), source: "test", replace: false)
        #expect(info.rows == 10 && info.labels == 3 && info.train == 10)
        #expect(try store.datasets().map(\.name) == ["b77"])
        let back = try store.examples(dataset: info.id, split: .train)
        #expect(back.count == 10)
        #expect(back[0] == Example(text: "text 0", label: "l0", split: .train, line: 2))
        #expect(throws: StoreError.self) { try store.importDataset(name: "b77", plan: plan(4), source: "t", replace: false) }
        #expect(try store.dataset(named: "b77")?.rows == 10)
        let replaced = try store.importDataset(name: "b77", plan: plan(4), source: "t", replace: true)
        #expect(replaced.rows == 4)
        #expect(try store.examples(dataset: replaced.id, split: nil).count == 4)
        if kind == "file" { #expect(try store.db.pragma("journal_mode") == "wal") }
    }

    @Test("a restart restores everything; the schema version is recorded")
    func restart() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("db.sqlite").path
        do {
            let store = try SQLiteStore(path: path)
            _ = try store.importDataset(name: "a", plan: plan(5), source: "s", replace: false)
        }
        let again = try SQLiteStore(path: path)
        #expect(try again.dataset(named: "a")?.rows == 5)
        #expect(try again.db.pragma("user_version") == "\(SQLiteStore.schemaVersion)")
    }

    @Test("a database from a newer robustd is refused, not altered")
    func newerSchema() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("db.sqlite").path
        do { let s = try SQLiteStore(path: path); try s.db.exec("PRAGMA user_version = 99") }
        #expect(throws: StoreError.self) { try SQLiteStore(path: path) }
    }
}

@Suite("Versions in the store")
struct VersionStoreTests {
    @Test("a version left 'writing' by a crash becomes 'failed' at the next open and cannot be activated")
    func crashDuringWrite() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("store-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("db.sqlite").path
        do {
            let s = try SQLiteStore(path: path)
            let a = try s.createVersion(parent: nil, method: "fit", dataset: "d")
            try s.finishVersion(id: a, status: .ready, report: "{}", activate: true)
            _ = try s.createVersion(parent: a, method: "lora", dataset: "d")  // the daemon dies here
        }
        let s = try SQLiteStore(path: path)
        let versions = try s.versions()
        #expect(versions.map(\.status) == [.ready, .failed])
        #expect(try s.activeVersion() == 1)
        #expect(throws: StoreError.self) { try s.setActive(2) }
        #expect(try s.activeVersion() == 1)
    }
}
