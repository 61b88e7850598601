import JSON
import JSONRPC

/// `risk/regions`: regions ranked by risk.
public enum RiskRegions: RPCRequest {
    public static let name = "risk/regions"
    public enum Window: String, RPCEnum { case hour, day, all }
    public enum Kind: String, RPCEnum { case intent, cluster }
    public struct Params: Codable, Sendable {
        public var window: Window?
        public var limit: Int?
        /// Only regions of this kind.
        public var kind: Kind?
        public init(window: Window? = nil, limit: Int? = nil, kind: Kind? = nil) { self.window = window; self.limit = limit; self.kind = kind }
    }
    /// One ranked region (docs/risk-model.md gives the formulas).
    public struct Region: Codable, Sendable, Equatable {
        /// `intent:<intent>` or `cluster:<n>`.
        public var id: String
        public var kind: Kind
        /// The intent (for a cluster, its most frequent predicted intent).
        public var label: String
        /// The intents a cluster spans.
        public var labels: [String]
        public var traffic: Int
        public var failures: Int
        public var trafficShare: Double
        public var rawFailureRate: Double
        /// Smoothed (a Beta prior centred on the overall rate).
        public var failureRate: Double
        public var impact: Double
        /// trafficShare × failureRate × impact: expected cost per scored request from this region.
        public var risk: Double
        public var costPer1000: Double
        public var examples: [String]
        public init(id: String, kind: Kind, label: String, labels: [String], traffic: Int, failures: Int, trafficShare: Double,
                    rawFailureRate: Double, failureRate: Double, impact: Double, risk: Double, costPer1000: Double, examples: [String]) {
            self.id = id; self.kind = kind; self.label = label; self.labels = labels; self.traffic = traffic; self.failures = failures
            self.trafficShare = trafficShare; self.rawFailureRate = rawFailureRate; self.failureRate = failureRate
            self.impact = impact; self.risk = risk; self.costPer1000 = costPer1000; self.examples = examples
        }
    }
    public struct Result: Codable, Sendable {
        public var window: Window
        public var traffic: Int
        public var failures: Int
        /// Σ risk × 1000 over the intent regions (which partition the failures).
        public var expectedCostPer1000: Double
        public var regions: [Region]
        public init(window: Window, traffic: Int, failures: Int, expectedCostPer1000: Double, regions: [Region]) {
            self.window = window; self.traffic = traffic; self.failures = failures
            self.expectedCostPer1000 = expectedCostPer1000; self.regions = regions
        }
    }
}
