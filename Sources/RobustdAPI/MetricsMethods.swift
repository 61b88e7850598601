import JSON
import JSONRPC

/// One intent's live figures (the top ones by expected cost).
public struct MetricsRegion: Codable, Sendable {
    public var intent: String
    public var requests: Double
    public var flaggedRate: Double
    public var failures: Double
    /// Expected cost per 1,000 of this intent's requests.
    public var expectedCostPer1000Requests: Double
    /// This intent's expected cost per 1,000 requests of all traffic.
    public var costShare: Double
    public init(intent: String, requests: Double, flaggedRate: Double, failures: Double, expectedCostPer1000Requests: Double, costShare: Double) {
        self.intent = intent; self.requests = requests; self.flaggedRate = flaggedRate; self.failures = failures
        self.expectedCostPer1000Requests = expectedCostPer1000Requests; self.costShare = costShare
    }
}

/// `metrics/get`: every live metric now.
public enum MetricsGet: RPCRequest {
    public static let name = "metrics/get"
    public struct Params: Codable, Sendable {
        /// Only metrics with these names or name prefixes ("requestRate" matches "requestRate.1m", …).
        public var metrics: [String]?
        /// How many intents in `regions` (default 10).
        public var top: Int?
        public init(metrics: [String]? = nil, top: Int? = nil) { self.metrics = metrics; self.top = top }
    }
    public struct Result: Codable, Sendable {
        public var at: Double
        public var version: Int?
        public var activatedAt: Double?
        /// name → value; windows are suffixes: .1m, .1h, .24h, .sinceActivation.
        public var values: [String: Double]
        /// The top intents by expected cost over the last hour.
        public var regions: [MetricsRegion]
        public init(at: Double, version: Int?, activatedAt: Double?, values: [String: Double], regions: [MetricsRegion]) {
            self.at = at; self.version = version; self.activatedAt = activatedAt; self.values = values; self.regions = regions
        }
    }
}

/// `metrics/subscribe`: `metrics/update` notifications every `intervalMs` (or only on change).
public enum MetricsSubscribe: RPCRequest {
    public static let name = "metrics/subscribe"
    public struct Params: Codable, Sendable {
        public var metrics: [String]?
        /// 100 to 60,000 (default 1,000).
        public var intervalMs: Int?
        /// Send an update only when a value changed.
        public var onChange: Bool?
        public init(metrics: [String]? = nil, intervalMs: Int? = nil, onChange: Bool? = nil) {
            self.metrics = metrics; self.intervalMs = intervalMs; self.onChange = onChange
        }
    }
    public struct Result: Codable, Sendable {
        public var subscription: Int
        public var intervalMs: Int
        /// The metric names matched now.
        public var metrics: [String]
        public init(subscription: Int, intervalMs: Int, metrics: [String]) { self.subscription = subscription; self.intervalMs = intervalMs; self.metrics = metrics }
    }
}

/// `metrics/unsubscribe`.
public enum MetricsUnsubscribe: RPCRequest {
    public static let name = "metrics/unsubscribe"
    public struct Params: Codable, Sendable {
        public var subscription: Int
        public init(subscription: Int) { self.subscription = subscription }
    }
    public struct Result: Codable, Sendable {
        public var unsubscribed: Bool
        public init(unsubscribed: Bool) { self.unsubscribed = unsubscribed }
    }
}

/// `metrics/update`: the daemon's notification to a subscriber.
public enum MetricsUpdate: RPCNotification {
    public static let name = "metrics/update"
    public struct Params: Codable, Sendable {
        public var subscription: Int
        public var at: Double
        public var values: [String: Double]
        /// Updates skipped since the last one sent because this client was not reading: the
        /// values here are the latest, never a backlog.
        public var coalesced: Int
        public init(subscription: Int, at: Double, values: [String: Double], coalesced: Int) {
            self.subscription = subscription; self.at = at; self.values = values; self.coalesced = coalesced
        }
    }
}

/// `metrics/prometheus`: the Prometheus text exposition (the same as GET /metrics).
public enum MetricsPrometheus: RPCRequest {
    public static let name = "metrics/prometheus"
    public typealias Params = EmptyParams
    public struct Result: Codable, Sendable {
        public var contentType: String
        public var text: String
        public init(contentType: String, text: String) { self.contentType = contentType; self.text = text }
    }
}

/// `metrics/history`: one metric's persisted snapshots (they survive restarts).
public enum MetricsHistory: RPCRequest {
    public static let name = "metrics/history"
    public struct Params: Codable, Sendable {
        /// A persisted name: the 1-minute window of each metric (e.g. expectedCostPer1000.1m) and the gauges.
        public var metric: String
        /// Seconds since 1970; default: a day ago.
        public var since: Double?
        public var until: Double?
        /// Average the snapshots into buckets of this many seconds (default: none).
        public var step: Double?
        public init(metric: String, since: Double? = nil, until: Double? = nil, step: Double? = nil) {
            self.metric = metric; self.since = since; self.until = until; self.step = step
        }
    }
    public struct Point: Codable, Sendable {
        public var at: Double
        public var value: Double
        public init(at: Double, value: Double) { self.at = at; self.value = value }
    }
    public struct Result: Codable, Sendable {
        public var metric: String
        public var step: Double?
        public var points: [Point]
        public init(metric: String, step: Double?, points: [Point]) { self.metric = metric; self.step = step; self.points = points }
    }
}
