/// Which part of a dataset an example belongs to.
public enum Split: String, Sendable, CaseIterable, Codable {
    case train, validation, test

    /// Accepts the usual spellings: `val`, `valid`, `dev` mean validation.
    public init?(loose: String) {
        switch loose.lowercased() {
        case "train", "training": self = .train
        case "validation", "val", "valid", "dev": self = .validation
        case "test", "testing": self = .test
        default: return nil
        }
    }
}

/// One labelled example, validated.
public struct Example: Sendable, Equatable {
    public var text: String
    public var label: String
    public var split: Split
    /// Line (or record number, for inline records) it came from.
    public var line: Int
    public init(text: String, label: String, split: Split, line: Int) {
        self.text = text
        self.label = label
        self.split = split
        self.line = line
    }
}

/// What to read from each record.
public struct ImportOptions: Sendable {
    public var textField = "text"
    public var labelField = "label"
    /// A column naming each row's split; nil: every row gets `defaultSplit`.
    public var splitField: String? = nil
    public var defaultSplit = Split.train
    public static let maxTextLength = 20_000
    public static let maxLabelLength = 128
    public init(textField: String = "text", labelField: String = "label", splitField: String? = nil, defaultSplit: Split = .train) {
        self.textField = textField
        self.labelField = labelField
        self.splitField = splitField
        self.defaultSplit = defaultSplit
    }
}

/// One thing wrong with one record.
public struct ImportProblem: Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var problem: String
    public var description: String { "line \(line): \(problem)" }
    public init(line: Int, problem: String) {
        self.line = line
        self.problem = problem
    }
}

/// Every problem found (an import stores nothing when there is one).
public struct ImportProblems: Error, Sendable, Equatable {
    public var problems: [ImportProblem]
}

/// The validated content of an import, and what was noticed on the way.
public struct ImportPlan: Sendable {
    public var examples: [Example]
    /// A record repeating an earlier one (same text, label and split): `line` was dropped.
    public var duplicates: [(line: Int, firstLine: Int)]
    /// The same text with different labels: both kept, reported for a person to look at.
    public var conflicts: [(line: Int, firstLine: Int, labels: [String])]
    public var labels: [String] { Array(Set(examples.map(\.label))).sorted() }

    public func count(_ split: Split) -> Int { examples.reduce(0) { $0 + ($1.split == split ? 1 : 0) } }
}

/// Validation of raw records: every problem with its line, or a plan to store in one transaction.
public enum DatasetImport {
    /// Problems past this many are counted but not listed.
    public static let maxListedProblems = 20

    public static func plan(_ records: [RawRecord], options o: ImportOptions) -> Result<ImportPlan, ImportProblems> {
        var problems: [ImportProblem] = []
        var examples: [Example] = []
        examples.reserveCapacity(records.count)
        if records.isEmpty { return .failure(ImportProblems(problems: [ImportProblem(line: 0, problem: "no records")])) }
        for r in records {
            func problem(_ p: String) { problems.append(ImportProblem(line: r.line, problem: p)) }
            guard let text = r.fields[o.textField] else {
                problem("no '\(o.textField)' field (the text field; set textField to use another)"); continue
            }
            guard let rawLabel = r.fields[o.labelField] else {
                problem("no '\(o.labelField)' field (the label field; set labelField to use another)"); continue
            }
            if text.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) { problem("the text is empty"); continue }
            if text.count > ImportOptions.maxTextLength { problem("the text has \(text.count) characters; at most \(ImportOptions.maxTextLength)"); continue }
            let label = rawLabel.trimmingCharacters(in: " \t\r\n")
            if label.isEmpty { problem("the label is empty"); continue }
            if label.count > ImportOptions.maxLabelLength { problem("the label has \(label.count) characters; at most \(ImportOptions.maxLabelLength)"); continue }
            if label.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                problem("the label contains control characters"); continue
            }
            var split = o.defaultSplit
            if let sf = o.splitField {
                guard let sv = r.fields[sf], !sv.isEmpty else { problem("no '\(sf)' field (the split field)"); continue }
                guard let s = Split(loose: sv) else { problem("split '\(sv)' is not one of: train, validation, test"); continue }
                split = s
            }
            examples.append(Example(text: text, label: label, split: split, line: r.line))
        }
        if !problems.isEmpty { return .failure(ImportProblems(problems: problems)) }

        struct Key: Hashable { let text: String; let label: String; let split: Split }
        var firstSeen: [Key: Int] = [:]
        var textLabels: [String: (line: Int, labels: Set<String>)] = [:]
        var kept: [Example] = []
        var duplicates: [(line: Int, firstLine: Int)] = []
        var conflicts: [(line: Int, firstLine: Int, labels: [String])] = []
        for e in examples {
            let key = Key(text: e.text, label: e.label, split: e.split)
            if let first = firstSeen[key] { duplicates.append((e.line, first)); continue }
            firstSeen[key] = e.line
            if var seen = textLabels[e.text] {
                if !seen.labels.contains(e.label) {
                    seen.labels.insert(e.label)
                    conflicts.append((e.line, seen.line, seen.labels.sorted()))
                    textLabels[e.text] = seen
                }
            } else {
                textLabels[e.text] = (e.line, [e.label])
            }
            kept.append(e)
        }
        return .success(ImportPlan(examples: kept, duplicates: duplicates, conflicts: conflicts))
    }
}
