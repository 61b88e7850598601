import JSON
import JSONRPC

/// A dataset as `dataset/list` and `dataset/import` show it.
public struct DatasetSummary: Codable, Sendable {
    public var name: String
    public var rows: Int
    public var labels: Int
    public var splits: [String: Int]
    public var source: String
    public var createdAt: Double
    public init(name: String, rows: Int, labels: Int, splits: [String: Int], source: String, createdAt: Double) {
        self.name = name; self.rows = rows; self.labels = labels; self.splits = splits; self.source = source; self.createdAt = createdAt
    }
}

/// `dataset/import`: labelled data in, from a file or inline records, validated and stored
/// in one transaction.
public enum DatasetImportMethod: RPCRequest {
    public static let name = "dataset/import"

    public enum Format: String, RPCEnum { case csv, jsonl }

    public struct Params: Codable, Sendable {
        public var name: String
        /// An absolute path to a CSV or JSONL file readable by the daemon's user.
        public var path: String?
        /// Inline records: objects with the text and label fields.
        public var records: [JSONValue]?
        /// Default: from the file's extension (.csv, .jsonl/.ndjson).
        public var format: Format?
        public var textField: String?
        public var labelField: String?
        public var splitField: String?
        /// The split of rows without a split field (default train).
        public var split: String?
        public var replace: Bool?
        public init(name: String, path: String? = nil, records: [JSONValue]? = nil) {
            self.name = name; self.path = path; self.records = records
        }
    }

    public struct Result: Codable, Sendable {
        public struct Duplicate: Codable, Sendable {
            public var line: Int; public var firstLine: Int
            public init(line: Int, firstLine: Int) { self.line = line; self.firstLine = firstLine }
        }
        public struct Conflict: Codable, Sendable {
            public var line: Int; public var firstLine: Int; public var labels: [String]
            public init(line: Int, firstLine: Int, labels: [String]) { self.line = line; self.firstLine = firstLine; self.labels = labels }
        }
        public var dataset: DatasetSummary
        /// Records read (before duplicates were dropped).
        public var read: Int
        public var imported: Int
        public var duplicates: Int
        /// The first duplicates (dropped), by line.
        public var duplicateLines: [Duplicate]
        public var conflicts: Int
        /// The first texts that carry more than one label (kept).
        public var conflictLines: [Conflict]
        public init(dataset: DatasetSummary, read: Int, imported: Int, duplicates: Int, duplicateLines: [Duplicate],
                    conflicts: Int, conflictLines: [Conflict]) {
            self.dataset = dataset; self.read = read; self.imported = imported; self.duplicates = duplicates
            self.duplicateLines = duplicateLines; self.conflicts = conflicts; self.conflictLines = conflictLines
        }
    }

    /// Largest file read.
    public static let maxFileBytes = 1 << 30
}

/// `dataset/list`: every stored dataset.
public enum DatasetList: RPCRequest {
    public static let name = "dataset/list"
    public typealias Params = EmptyParams
    public struct Result: Codable, Sendable {
        public var datasets: [DatasetSummary]
        public init(datasets: [DatasetSummary]) { self.datasets = datasets }
    }
}

extension RPCErrorCode {
    /// The data is not valid (a file's rows, a dataset's content); `data.problems` lists them by line.
    public static let invalidData = RPCErrorCode(-32030)
    /// The name is taken (a dataset exists; pass replace).
    public static let conflict = RPCErrorCode(-32031)
    /// The store could not read or write.
    public static let storeFailure = RPCErrorCode(-32040)
    /// The store (PostgreSQL, in a fleet) cannot be reached: retry later; scoring goes on.
    public static let storeUnavailable = RPCErrorCode(-32041)
}

/// `dataset/examples`: a page of a dataset's examples, in import order.
public enum DatasetExamples: RPCRequest {
    public static let name = "dataset/examples"
    public struct Params: Codable, Sendable {
        public var name: String
        /// All splits when absent.
        public var split: SplitName?
        public var offset: Int?
        /// 1 to 10,000 (default 1,000).
        public var limit: Int?
        /// The `nextCursor` of the previous page (instead of `offset`).
        public var cursor: String?
        public init(name: String, split: SplitName? = nil, offset: Int? = nil, limit: Int? = nil, cursor: String? = nil) {
            self.name = name; self.split = split; self.offset = offset; self.limit = limit; self.cursor = cursor
        }
    }
    public enum SplitName: String, RPCEnum { case train, validation, test }
    public struct Example: Codable, Sendable {
        public var text: String
        public var label: String
        public var split: SplitName
        public init(text: String, label: String, split: SplitName) { self.text = text; self.label = label; self.split = split }
    }
    public struct Result: Codable, Sendable {
        public var dataset: String
        public var total: Int
        public var offset: Int
        public var examples: [Example]
        /// Present while more examples remain.
        public var nextCursor: String?
        public init(dataset: String, total: Int, offset: Int, examples: [Example], nextCursor: String? = nil) {
            self.dataset = dataset; self.total = total; self.offset = offset; self.examples = examples; self.nextCursor = nextCursor
        }
    }
}
