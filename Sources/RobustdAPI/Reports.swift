import Foundation
import JSON
import Reports

/// A fine-tune's outcome, as its job's `result` and its version's `report` show it: how it
/// trained, on what data, the offline gate's verdict, and what became of the candidate.
public struct FineTuneReport: Codable, Sendable {
    public var training: TrainingReport
    public var selection: SelectionCounts
    public var gate: GateReport
    /// The regions and intents it targeted.
    public var regions: [String]
    public var intents: [String]
    public var job: Int
    /// The candidate version it wrote.
    public var version: Int?
    /// Always false: a job never makes its candidate active (its rollout decides, see `rollout`);
    /// kept for clients that read it.
    public var promoted: Bool
    /// A candidate that passed its gate went on a staged rollout.
    public var autoPromote: Bool
    /// That rollout, or why it did not start.
    public var rollout: Int?
    public var rolloutError: String?
    public init(training: TrainingReport, selection: SelectionCounts, gate: GateReport, regions: [String], intents: [String],
                job: Int, version: Int? = nil, promoted: Bool = false, autoPromote: Bool, rollout: Int? = nil,
                rolloutError: String? = nil) {
        self.training = training; self.selection = selection; self.gate = gate; self.regions = regions; self.intents = intents
        self.job = job; self.version = version; self.promoted = promoted; self.autoPromote = autoPromote; self.rollout = rollout
        self.rolloutError = rolloutError
    }
}

/// How a version was made: `model/fit`'s report or a fine-tune's. On the wire it is the report
/// itself (no wrapper); a stored report in a shape this build does not read (written by another
/// robustd release) is shown as stored.
public enum VersionReport: Codable, Sendable {
    case fit(FitReport)
    case fineTune(FineTuneReport)
    case unrecognised(JSONValue)

    private enum Probe: String, CodingKey { case training, lambda }

    public init(from decoder: any Decoder) throws {
        let probe = try? decoder.container(keyedBy: Probe.self)
        if probe?.contains(.training) == true, let r = try? FineTuneReport(from: decoder) {
            self = .fineTune(r)
        } else if probe?.contains(.lambda) == true, let r = try? FitReport(from: decoder) {
            self = .fit(r)
        } else {
            self = .unrecognised(try JSONValue(from: decoder))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .fit(let r): try r.encode(to: encoder)
        case .fineTune(let r): try r.encode(to: encoder)
        case .unrecognised(let v): try v.encode(to: encoder)
        }
    }

    public var fit: FitReport? { if case .fit(let r) = self { r } else { nil } }
    public var fineTune: FineTuneReport? { if case .fineTune(let r) = self { r } else { nil } }
}

/// Which regions a fine-tune targets: `"auto"` (the top regions of risk/regions), `"all"`
/// (every intent of the active version), or region ids from risk/regions.
public enum RegionSelection: Codable, Sendable, Equatable {
    case auto
    case all
    case ids([String])

    public init(from decoder: any Decoder) throws {
        let v = try JSONValue(from: decoder)
        switch v {
        case .string("auto"): self = .auto
        case .string("all"): self = .all
        case .array(let a) where !a.isEmpty && a.allSatisfy({ $0.stringValue != nil }): self = .ids(a.compactMap(\.stringValue))
        default:
            throw JSONDecodingError(path: JSONDecodingError.render(decoder.codingPath),
                                    expected: "\"auto\", \"all\" or an array of region ids from risk/regions ([\"intent:…\", \"cluster:…\"])",
                                    found: v.foundDescription)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .auto: try c.encode("auto")
        case .all: try c.encode("all")
        case .ids(let ids): try c.encode(ids)
        }
    }
}

/// A time on the wire: seconds since 1970, or an ISO 8601 time (`2026-11-29T10:00:00Z`, with or
/// without fractional seconds). Written as seconds.
public struct Timestamp: Codable, Sendable, Equatable {
    public var secondsSince1970: Double
    public init(secondsSince1970: Double) { self.secondsSince1970 = secondsSince1970 }

    public init(from decoder: any Decoder) throws {
        let v = try JSONValue(from: decoder)
        if let d = v.doubleValue, d.isFinite, d >= 0 { self.secondsSince1970 = d; return }
        if let s = v.stringValue, let d = Self.parseISO8601(s) { self.secondsSince1970 = d; return }
        throw JSONDecodingError(path: JSONDecodingError.render(decoder.codingPath),
                                expected: "seconds since 1970 or an ISO 8601 time such as \"2026-11-29T10:00:00Z\"",
                                found: v.foundDescription)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(secondsSince1970)
    }

    public static func parseISO8601(_ s: String) -> Double? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: s) { return d.timeIntervalSince1970 }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: s)?.timeIntervalSince1970
    }
}
