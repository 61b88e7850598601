import Datasets
import Foundation
import JSON
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport
import Store

/// `dataset/import`, `dataset/list` and `dataset/examples`: labelled data in, validated off
/// the loop and stored in one transaction.
///
/// - Important: Used only on the loop thread.
final class DatasetService: DaemonService {
    private let store: StoreThread
    private let logger: Logger

    init(store: StoreThread, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    func register(on router: Router) {
        router.onDeferred(DatasetImportMethod.self) { [unowned self] params, ctx in
            let plan: (options: ImportOptions, source: String)
            do throws(RPCError) { plan = try Self.importOptions(params) } catch { ctx.reply(.failure(error)); return }
            // Read and validate off the loop, then store in one transaction on the store thread.
            ctx.compute { _ throws(RPCError) -> ImportPlanBox in
                let records = try Self.readRecords(params)
                switch DatasetImport.plan(records, options: plan.options) {
                case .success(let p): return ImportPlanBox(plan: p, read: records.count)
                case .failure(let problems): throw Self.invalidData(problems.problems)
                }
            } then: { [unowned self] (box: ImportPlanBox) in
                let name = params.name, replace = params.replace ?? false
                self.store.run({ store throws(StoreError) -> DatasetInfo in
                    try store.importDataset(name: name, plan: box.plan, source: plan.source, replace: replace)
                }, completion: { [logger] result in
                    switch result {
                    case .failure(let e): ctx.reply(.failure(e))
                    case .success(let info):
                        logger.info("dataset imported", metadata: ["name": "\(name)", "rows": "\(info.rows)", "labels": "\(info.labels)"])
                        let p = box.plan
                        ctx.reply(DatasetImportMethod.Result(
                            dataset: Self.summary(info), read: box.read, imported: p.examples.count,
                            duplicates: p.duplicates.count,
                            duplicateLines: p.duplicates.prefix(20).map { .init(line: $0.line, firstLine: $0.firstLine) },
                            conflicts: p.conflicts.count,
                            conflictLines: p.conflicts.prefix(20).map { .init(line: $0.line, firstLine: $0.firstLine, labels: $0.labels) }))
                    }
                })
            }
        }

        router.onDeferred(DatasetExamples.self) { [unowned self] p, ctx in
            var offset = p.offset ?? 0
            let limit = p.limit ?? 1000
            do throws(RPCError) {
                if let o = try PageCursor.decode(DatasetExamples.name, p.cursor, count: 1)?[0] {
                    guard o >= 0 else { throw PageCursor.invalid(p.cursor ?? "") }
                    offset = o
                }
            } catch { ctx.reply(.failure(error)); return }
            guard offset >= 0 else { ctx.reply(.failure(.invalidParams("'offset' must be ≥ 0", field: "offset", expected: "≥ 0", found: "\(offset)"))); return }
            guard (1...10_000).contains(limit) else {
                ctx.reply(.failure(.invalidParams("'limit' must be 1 to 10000", field: "limit", expected: "1…10000", found: "\(limit)")))
                return
            }
            let split = p.split.flatMap { Split(rawValue: $0.rawValue) }
            let name = p.name, start = offset
            self.store.run({ store throws(StoreError) -> DatasetExamples.Result in
                guard let info = try store.dataset(named: name) else { throw StoreError(.notFound, "no dataset named '\(name)' (dataset/list shows them)") }
                let all = try store.examples(dataset: info.id, split: split)
                let page = all.dropFirst(start).prefix(limit).map {
                    DatasetExamples.Example(text: $0.text, label: $0.label, split: DatasetExamples.SplitName(rawValue: $0.split.rawValue) ?? .train)
                }
                let end = start + page.count
                return DatasetExamples.Result(dataset: name, total: all.count, offset: start, examples: Array(page),
                                              nextCursor: end < all.count ? PageCursor.encode(DatasetExamples.name, [end]) : nil)
            }, completion: { ctx.reply($0) })
        }

        router.onDeferred(DatasetList.self) { [unowned self] _, ctx in
            self.store.run({ store throws(StoreError) -> DatasetList.Result in
                DatasetList.Result(datasets: try store.datasets().map(Self.summary))
            }, completion: { ctx.reply($0) })
        }
    }

    struct ImportPlanBox: Sendable {
        let plan: ImportPlan
        let read: Int
    }

    static func summary(_ d: DatasetInfo) -> DatasetSummary {
        DatasetSummary(name: d.name, rows: d.rows, labels: d.labels,
                       splits: ["train": d.train, "validation": d.validation, "test": d.test], source: d.source, createdAt: d.createdAt)
    }

    static let datasetNamePattern = "letters, digits, '.', '_' and '-', 1 to 64 characters"

    /// Checks the params that need no I/O and works out the options and the source description.
    static func importOptions(_ p: DatasetImportMethod.Params) throws(RPCError) -> (options: ImportOptions, source: String) {
        let okName = !p.name.isEmpty && p.name.count <= 64
            && p.name.unicodeScalars.allSatisfy { $0.properties.isAlphabetic && $0.isASCII || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0) }
        guard okName else { throw RPCError.invalidParams("'name' must be \(datasetNamePattern)", field: "name", expected: datasetNamePattern, found: "\"\(p.name)\"") }
        switch (p.path, p.records) {
        case (nil, nil), (.some, .some):
            throw RPCError.invalidParams("give exactly one of 'path' (a file) or 'records' (inline objects)", field: "path", expected: "path or records")
        default: break
        }
        var o = ImportOptions()
        if let f = p.textField { o.textField = f }
        if let f = p.labelField { o.labelField = f }
        o.splitField = p.splitField
        if let s = p.split {
            guard let split = Split(loose: s) else {
                throw RPCError.invalidParams("'split' must be train, validation or test", field: "split", expected: "one of: train, validation, test", found: "\"\(s)\"")
            }
            o.defaultSplit = split
        }
        return (o, p.path ?? "inline (\(p.records?.count ?? 0) records)")
    }

    /// Reads the records from the file or the inline array. Runs on a compute thread.
    static func readRecords(_ p: DatasetImportMethod.Params) throws(RPCError) -> [RawRecord] {
        if let records = p.records {
            var out: [RawRecord] = []
            for (i, r) in records.enumerated() {
                do throws(ReadError) { out.append(try JSONLReader.record(r, line: i + 1)) } catch {
                    throw invalidData([ImportProblem(line: error.line, problem: error.problem)], recordsAreInline: true)
                }
            }
            return out
        }
        let path = p.path!
        guard path.hasPrefix("/") else {
            throw RPCError.invalidParams("'path' must be absolute (the daemon's working folder is not the client's)", field: "path", expected: "an absolute path", found: "\"\(path)\"")
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw RPCError.invalidParams("cannot read \(path): \(String(cString: strerror(errno)))", field: "path", expected: "a readable file", found: "\"\(path)\"")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw RPCError.invalidParams("\(path) is not a regular file", field: "path", expected: "a regular file", found: "\"\(path)\"")
        }
        guard Int(st.st_size) <= DatasetImportMethod.maxFileBytes else {
            throw RPCError.invalidParams("\(path) is \(st.st_size) bytes; at most \(DatasetImportMethod.maxFileBytes)", field: "path")
        }
        let format: DatasetImportMethod.Format
        if let f = p.format { format = f } else {
            let ext = (path as NSString).pathExtension.lowercased()
            switch ext {
            case "csv": format = .csv
            case "jsonl", "ndjson": format = .jsonl
            default:
                throw RPCError.invalidParams("cannot tell the format of '\(path)' from its extension; pass format: csv or jsonl", field: "format", expected: "csv or jsonl")
            }
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RPCError.invalidParams("cannot read \(path)", field: "path")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            throw invalidData([ImportProblem(line: 0, problem: "the file is not valid UTF-8")])
        }
        do throws(ReadError) {
            return format == .csv ? try CSVReader.records(text) : try JSONLReader.records(text)
        } catch {
            throw invalidData([ImportProblem(line: error.line, problem: error.problem)])
        }
    }

    static func invalidData(_ problems: [ImportProblem], recordsAreInline: Bool = false) -> RPCError {
        let unit = recordsAreInline ? "record" : "line"
        let first = problems.first.map { "\(unit) \($0.line): \($0.problem)" } ?? "no records"
        let more = problems.count > 1 ? " (and \(problems.count - 1) more problem\(problems.count == 2 ? "" : "s"))" : ""
        return RPCError(.invalidData, "Invalid data, nothing was imported: \(first)\(more)", data: [
            "problems": .array(problems.prefix(DatasetImport.maxListedProblems).map { ["line": .int(Int64($0.line)), "problem": .string($0.problem)] }),
            "count": .int(Int64(problems.count)),
        ])
    }
}
