import JSON
import JSONRPC

/// What kind of feedback a report is.
public enum FeedbackKind: String, RPCEnum {
    case complaint, reinquiry, escalation, correction, confirmation
}

/// `feedback/report`: a failure case (or a confirmation), committed before the answer.
public enum FeedbackReport: RPCRequest {
    public static let name = "feedback/report"
    public struct Params: Codable, Sendable {
        /// The `id` the input had in a `score` request (recent inputs are remembered), or…
        public var inputId: String?
        /// …the input's text.
        public var text: String?
        public var kind: FeedbackKind
        /// Business cost of this case; default: the configured cost of its kind.
        public var cost: Double?
        /// The intent it should have been (a label of the active version).
        public var correctLabel: String?
        /// When it happened: seconds since 1970 or an ISO 8601 time; default now.
        public var at: Timestamp?
        /// A retried report with the same key is not counted twice.
        public var idempotencyKey: String?
        /// The version that answered (the `version` of the score result), when the report gives
        /// neither `inputId` nor a text scored under a canary's routing; default: the active one.
        public var version: Int?
        public init(inputId: String? = nil, text: String? = nil, kind: FeedbackKind, cost: Double? = nil, correctLabel: String? = nil,
                    at: Timestamp? = nil, idempotencyKey: String? = nil) {
            self.inputId = inputId; self.text = text; self.kind = kind; self.cost = cost; self.correctLabel = correctLabel
            self.at = at; self.idempotencyKey = idempotencyKey
        }
    }
    public typealias Result = FeedbackEntry
}

/// A recorded report.
public struct FeedbackEntry: Codable, Sendable {
    public var id: Int
    public var kind: FeedbackKind
    public var cost: Double
    public var text: String
    public var inputId: String?
    public var predictedLabel: String
    public var correctLabel: String?
    public var version: Int
    public var at: Double
    public var recordedAt: Double
    /// True when the idempotency key had been seen: this is the first report, not stored again.
    public var duplicate: Bool?
    /// The key the client gave, if any (stored once per key, fleet-wide).
    public var idempotencyKey: String?
    public init(id: Int, kind: FeedbackKind, cost: Double, text: String, inputId: String?, predictedLabel: String, correctLabel: String?,
                version: Int, at: Double, recordedAt: Double, duplicate: Bool?, idempotencyKey: String? = nil) {
        self.id = id; self.kind = kind; self.cost = cost; self.text = text; self.inputId = inputId; self.predictedLabel = predictedLabel
        self.correctLabel = correctLabel; self.version = version; self.at = at; self.recordedAt = recordedAt; self.duplicate = duplicate
        self.idempotencyKey = idempotencyKey
    }
}

/// `feedback/list`: recorded reports, newest first, filtered.
public enum FeedbackList: RPCRequest {
    public static let name = "feedback/list"
    public struct Params: Codable, Sendable {
        public var kind: FeedbackKind?
        /// Predicted or corrected intent.
        public var label: String?
        public var version: Int?
        public var since: Double?
        public var until: Double?
        /// 1…1000, default 100.
        public var limit: Int?
        /// The `nextCursor` of the previous page.
        public var cursor: String?
        public init(kind: FeedbackKind? = nil, label: String? = nil, version: Int? = nil, since: Double? = nil, until: Double? = nil,
                    limit: Int? = nil, cursor: String? = nil) {
            self.kind = kind; self.label = label; self.version = version; self.since = since; self.until = until
            self.limit = limit; self.cursor = cursor
        }
    }
    public struct Result: Codable, Sendable {
        public var feedback: [FeedbackEntry]
        /// Present while older reports remain: pass it as `cursor` for the next page.
        public var nextCursor: String?
        public init(feedback: [FeedbackEntry], nextCursor: String? = nil) { self.feedback = feedback; self.nextCursor = nextCursor }
    }
}
