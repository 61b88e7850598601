import JSON
import JSONRPC

/// `risk/regions`: regions ranked by risk.
public enum RiskRegions: RPCRequest {
    public static let name = "risk/regions"
    public enum Window: String, RPCEnum { case hour, day, all }
    public enum Kind: String, RPCEnum { case intent, cluster }
    /// What the ranking orders by: reported and expected failures (`risk`), or how easily the
    /// active version's predictions flip under typos (`fragilityRisk`).
    public enum Order: String, RPCEnum { case failures, fragility }
    public struct Params: Codable, Sendable {
        public var window: Window?
        public var limit: Int?
        /// Only regions of this kind.
        public var kind: Kind?
        /// Default failures.
        public var by: Order?
        public init(window: Window? = nil, limit: Int? = nil, kind: Kind? = nil, by: Order? = nil) {
            self.window = window; self.limit = limit; self.kind = kind; self.by = by
        }
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
        /// Intent regions, when the active version's fragility is known: the share of typo
        /// variants of its held-out examples whose prediction flips.
        public var fragility: Double?
        /// Smoothed traffic share × fragility × impact: the cost per request of the noisy inputs
        /// this intent is about to get wrong, reported or not.
        public var fragilityRisk: Double?
        public init(id: String, kind: Kind, label: String, labels: [String], traffic: Int, failures: Int, trafficShare: Double,
                    rawFailureRate: Double, failureRate: Double, impact: Double, risk: Double, costPer1000: Double, examples: [String],
                    fragility: Double? = nil, fragilityRisk: Double? = nil) {
            self.fragility = fragility; self.fragilityRisk = fragilityRisk
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
