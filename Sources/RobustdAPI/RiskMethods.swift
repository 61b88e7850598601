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
    }
    public struct Result: Codable, Sendable {
        public var window: String
        public var traffic: Int
        public var failures: Int
        /// Σ risk × 1000 over the intent regions (which partition the failures).
        public var expectedCostPer1000: Double
        public var regions: [JSONValue]
        public init(window: String, traffic: Int, failures: Int, expectedCostPer1000: Double, regions: [JSONValue]) {
            self.window = window; self.traffic = traffic; self.failures = failures
            self.expectedCostPer1000 = expectedCostPer1000; self.regions = regions
        }
    }
}
