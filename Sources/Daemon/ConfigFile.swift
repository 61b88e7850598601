import Encoder
import Foundation
import Rollout
import Scoring

/// The human-edited configuration (TOML): business costs, impact weights, risk thresholds,
/// an optional misrouting cost matrix, and the model path. docs/configuration.md documents
/// every key; schemas/config.schema.json describes the structure.
public struct ConfigFile: Sendable, Equatable {
    public var modelPath: String?
    /// `[model] precision`: "fp32" or "int8" (`--precision` overrides it; nil: fp32).
    public var precision: Precision?
    /// `[store] url`: a PostgreSQL URL for a fleet's shared store (nil: SQLite in the state folder).
    public var storeURL: String?
    /// `[store] replica`: this replica's name in the fleet (default: the host name).
    public var replica: String?
    /// `[store] lease_seconds`: how long a replica's heartbeat stays valid (default 15).
    public var leaseSeconds: Double?
    public var costs: [String: Double] = [:]
    public var impact: [String: Double] = [:]
    public var risk = RiskSettings()
    /// Cost when intent `from` is answered as `to`: misrouting[from][to].
    public var misrouting: [String: [String: Double]] = [:]
    public var finetune = FineTuneSettings()
    /// `[rollout]`: the staged rollout's tests, limits and guardrails (docs/rollout.md).
    public var rollout = RolloutSettings()

    /// `[finetune]`: the promotion gate.
    public struct FineTuneSettings: Sendable, Equatable {
        /// Put a version that passes its offline gate on a staged rollout at once (which
        /// promotes or rolls it back on live evidence); off: it waits as a candidate.
        public var autoPromote = true
        /// The gate: relative fall of the target regions' cost a candidate must reach.
        public var minTargetReduction = 0.2
        /// The allowance of the non-inferiority rule (reported beside the default screen): largest rise of the global cost, relative to the parent's.
        public var globalTolerance = 0.1
        /// The gate's confidence for the global check.
        public var confidence = 0.95
        public init() {}
    }
    /// The line that last set risk.medium or risk.high (for the error message).
    private var thresholdLine = 0

    public struct RiskSettings: Sendable, Equatable {
        public var thresholds = RiskThresholds()
        public var lowConfidence = 0.5
        public var smallMargin = 0.2
        public var nearFailureSimilarity = 0.9
    }

    public static let feedbackKinds = ["complaint", "reinquiry", "escalation", "correction", "confirmation"]

    /// A problem in the file, with its line.
    public struct Problem: Error, CustomStringConvertible, Equatable {
        public var line: Int
        public var message: String
        public var description: String { "line \(line): \(message)" }
    }

    public init() {}

    public static func load(path: String) throws -> ConfigFile {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw Problem(line: 0, message: "cannot read \(path)")
        }
        return try parse(text)
    }

    /// Parses the TOML subset the configuration uses: `[table]` and `[table.sub]` headers,
    /// `key = value` with bare or quoted keys, numbers, strings, booleans, `#` comments.
    public static func parse(_ text: String) throws(Problem) -> ConfigFile {
        var c = ConfigFile()
        var table: [String] = []
        // TOML lines end at LF or CRLF (one Character in Swift, so both are named).
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let line = i + 1
            let s = stripComment(String(raw)).trimmingCharacters(in: .whitespaces)
            if s.isEmpty { continue }
            if s.hasPrefix("[") {
                guard s.hasSuffix("]"), !s.hasPrefix("[[") else { throw Problem(line: line, message: "a table header looks like [name]") }
                table = try splitKey(String(s.dropFirst().dropLast()), line: line)
                guard let top = table.first, ["model", "store", "costs", "impact", "risk", "misrouting", "finetune", "rollout"].contains(top) else {
                    throw Problem(line: line, message: "unknown table [\(table.joined(separator: "."))]; known: model, store, costs, impact, risk, misrouting, finetune, rollout")
                }
                if top == "misrouting" ? table.count > 2 : table.count > 1 {
                    throw Problem(line: line, message: "[\(table.joined(separator: "."))] nests too deep")
                }
                continue
            }
            guard let eq = findEquals(s) else { throw Problem(line: line, message: "expected key = value") }
            let keyPath = try splitKey(String(s[..<eq]).trimmingCharacters(in: .whitespaces), line: line)
            let value = try parseValue(String(s[s.index(after: eq)...]).trimmingCharacters(in: .whitespaces), line: line)
            let full = table + keyPath
            try c.set(full, value, line: line)
        }
        let problems = c.rollout.problems()
        guard problems.isEmpty else { throw Problem(line: 0, message: "[rollout]: " + problems.joined(separator: "; ")) }
        // Checked once the whole file is read, so the order of the two keys does not matter.
        if c.risk.thresholds.high < c.risk.thresholds.medium {
            throw Problem(line: c.thresholdLine, message: "risk.high (\(c.risk.thresholds.high)) must not be below risk.medium (\(c.risk.thresholds.medium))")
        }
        return c
    }

    enum Value { case number(Double), string(String), bool(Bool) }

    private mutating func set(_ path: [String], _ v: Value, line: Int) throws(Problem) {
        func number() throws(Problem) -> Double {
            guard case .number(let d) = v else { throw Problem(line: line, message: "\(path.joined(separator: ".")) must be a number") }
            guard d.isFinite else { throw Problem(line: line, message: "\(path.joined(separator: ".")) must be a finite number, not \(d)") }
            return d
        }
        func nonNegative() throws(Problem) -> Double {
            let d = try number()
            guard d >= 0 else { throw Problem(line: line, message: "\(path.joined(separator: ".")) must be ≥ 0, got \(d)") }
            return d
        }
        func unit() throws(Problem) -> Double {
            let d = try number()
            guard d >= 0 && d <= 1 else { throw Problem(line: line, message: "\(path.joined(separator: ".")) must be between 0 and 1, got \(d)") }
            return d
        }
        switch (path.first, path.count) {
        case ("model", 2) where path[1] == "path":
            guard case .string(let p) = v else { throw Problem(line: line, message: "model.path must be a string") }
            modelPath = (p as NSString).expandingTildeInPath
        case ("model", 2) where path[1] == "precision":
            guard case .string(let p) = v, let value = Precision(rawValue: p) else {
                throw Problem(line: line, message: "model.precision must be " + Precision.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or "))
            }
            precision = value
        case ("model", 2):
            throw Problem(line: line, message: "unknown key model.\(path[1]); known: path, precision")
        case ("store", 2) where path[1] == "url":
            guard case .string(let u) = v else { throw Problem(line: line, message: "store.url must be a string") }
            guard Configuration.isStoreURL(u) else {
                throw Problem(line: line, message: "store.url must be a PostgreSQL URL (postgresql://…); leave it out for the embedded SQLite store")
            }
            storeURL = u
        case ("store", 2) where path[1] == "replica":
            guard case .string(let r) = v else { throw Problem(line: line, message: "store.replica must be a string") }
            guard Configuration.isReplicaName(r) else { throw Problem(line: line, message: Configuration.replicaNameRule) }
            replica = r
        case ("store", 2) where path[1] == "lease_seconds":
            let d = try number()
            guard d >= 2 && d <= 3600 else { throw Problem(line: line, message: "store.lease_seconds must be between 2 and 3600 (the heartbeat is every 2 s), got \(d)") }
            leaseSeconds = d
        case ("store", 2):
            throw Problem(line: line, message: "unknown key store.\(path[1]); known: url, replica, lease_seconds")
        case ("costs", 2):
            guard Self.feedbackKinds.contains(path[1]) else {
                throw Problem(line: line, message: "costs.\(path[1]) is not a feedback kind; kinds: \(Self.feedbackKinds.joined(separator: ", "))")
            }
            costs[path[1]] = try nonNegative()
        case ("impact", 2):
            impact[path[1]] = try nonNegative()
        case ("risk", 2):
            switch path[1] {
            case "medium": risk.thresholds.medium = try nonNegative()
            case "high": risk.thresholds.high = try nonNegative()
            case "unstable_flip_rate": risk.thresholds.unstableFlipRate = try unit()
            case "low_confidence": risk.lowConfidence = try unit()
            case "small_margin": risk.smallMargin = try unit()
            case "near_failure_similarity": risk.nearFailureSimilarity = try unit()
            default:
                throw Problem(line: line, message: "unknown key risk.\(path[1]); known: medium, high, unstable_flip_rate, low_confidence, small_margin, near_failure_similarity")
            }
        case ("finetune", 2):
            switch path[1] {
            case "auto_promote":
                guard case .bool(let b) = v else { throw Problem(line: line, message: "finetune.auto_promote must be true or false") }
                finetune.autoPromote = b
            case "min_target_reduction": finetune.minTargetReduction = try unit()
            case "global_tolerance": finetune.globalTolerance = try unit()
            case "confidence":
                let d = try unit()
                guard d >= 0.5 && d < 1 else { throw Problem(line: line, message: "finetune.confidence must be in [0.5, 1), got \(d)") }
                finetune.confidence = d
            default:
                throw Problem(line: line, message: "unknown key finetune.\(path[1]); known: auto_promote, min_target_reduction, global_tolerance, confidence")
            }
        case ("rollout", 2):
            func open() throws(Problem) -> Double {
                let d = try unit()
                guard d > 0 && d < 1 else { throw Problem(line: line, message: "rollout.\(path[1]) must be strictly between 0 and 1, got \(d)") }
                return d
            }
            func count() throws(Problem) -> Int {
                let d = try nonNegative()
                guard d == d.rounded(), d <= 1e12 else { throw Problem(line: line, message: "rollout.\(path[1]) must be a whole number, got \(d)") }
                return Int(d)
            }
            switch path[1] {
            case "auto_promote":
                guard case .bool(let b) = v else { throw Problem(line: line, message: "rollout.auto_promote must be true or false") }
                rollout.autoPromote = b
            case "false_promotion_rate": rollout.falsePromotionRate = try open()
            case "false_rollback_rate": rollout.falseRollbackRate = try open()
            case "min_effect":
                let d = try unit()
                guard d > 0 else { throw Problem(line: line, message: "rollout.min_effect must be in (0, 1], got \(d)") }
                rollout.minEffect = d
            case "canary_share": rollout.canaryShare = try open()
            case "review_share":
                let d = try unit()
                guard d > 0 else { throw Problem(line: line, message: "rollout.review_share must be in (0, 1], got \(d)") }
                rollout.reviewShare = d
            case "shadow_min_requests": rollout.shadow.minRequests = try count()
            case "shadow_max_requests": rollout.shadow.maxRequests = try count()
            case "shadow_min_labels": rollout.shadow.minLabels = try count()
            case "shadow_max_labels": rollout.shadow.maxLabels = try count()
            case "shadow_max_hours": rollout.shadow.maxSeconds = 3600 * (try nonNegative())
            case "canary_min_requests": rollout.canary.minRequests = try count()
            case "canary_max_requests": rollout.canary.maxRequests = try count()
            case "canary_max_hours": rollout.canary.maxSeconds = 3600 * (try nonNegative())
            case "latency_p99_ratio": rollout.guardrails.latencyP99Ratio = try nonNegative()
            case "out_of_scope_increase": rollout.guardrails.outOfScopeIncrease = try unit()
            case "error_rate": rollout.guardrails.errorRate = try unit()
            case "guardrail_min_requests": rollout.guardrails.minRequests = try count()
            default:
                throw Problem(line: line, message: "unknown key rollout.\(path[1]); known: auto_promote, false_promotion_rate, false_rollback_rate, min_effect, canary_share, review_share, shadow_min_requests, shadow_max_requests, shadow_min_labels, shadow_max_labels, shadow_max_hours, canary_min_requests, canary_max_requests, canary_max_hours, latency_p99_ratio, out_of_scope_increase, error_rate, guardrail_min_requests")
            }
        case ("misrouting", 3):
            misrouting[path[1], default: [:]][path[2]] = try nonNegative()
        default:
            throw Problem(line: line, message: "unknown key \(path.joined(separator: "."))")
        }
        if path == ["risk", "medium"] || path == ["risk", "high"] { thresholdLine = line }
    }

    private static func stripComment(_ s: String) -> String {
        var inString = false
        var out = ""
        for ch in s {
            if ch == "\"" { inString.toggle() }
            if ch == "#" && !inString { break }
            out.append(ch)
        }
        return out
    }

    private static func findEquals(_ s: String) -> String.Index? {
        var inString = false
        for i in s.indices {
            if s[i] == "\"" { inString.toggle() }
            if s[i] == "=" && !inString { return i }
        }
        return nil
    }

    /// `a.b`, `"a b".c`: dotted keys with optional quotes.
    private static func splitKey(_ s: String, line: Int) throws(Problem) -> [String] {
        var parts: [String] = [], cur = "", inString = false, quoted = false
        for ch in s {
            if ch == "\"" { inString.toggle(); quoted = true; continue }
            if ch == "." && !inString { parts.append(cur); cur = ""; quoted = false; continue }
            if !inString && (ch == " " || ch == "\t") { continue }
            if !inString && !(ch.isLetter || ch.isNumber || ch == "_" || ch == "-") {
                throw Problem(line: line, message: "'\(ch)' in a bare key; quote the key")
            }
            cur.append(ch)
        }
        if inString { throw Problem(line: line, message: "unterminated quoted key") }
        parts.append(cur)
        if parts.contains(where: { $0.isEmpty }) && !quoted { throw Problem(line: line, message: "empty key") }
        return parts
    }

    private static func parseValue(_ s: String, line: Int) throws(Problem) -> Value {
        if s.hasPrefix("\"") {
            guard s.count >= 2, s.hasSuffix("\"") else { throw Problem(line: line, message: "unterminated string") }
            return .string(String(s.dropFirst().dropLast()))
        }
        if s == "true" { return .bool(true) }
        if s == "false" { return .bool(false) }
        let cleaned = s.replacingOccurrences(of: "_", with: "")
        if ["nan", "+nan", "-nan", "inf", "+inf", "-inf"].contains(cleaned.lowercased()) {
            throw Problem(line: line, message: "\(s) is not a usable number (NaN and infinity are refused)")
        }
        guard let d = Double(cleaned) else { throw Problem(line: line, message: "cannot read the value '\(s)'") }
        return .number(d)
    }
}
