import JSON
import JSONRPC
import Reports

/// `eval/run`: a version (or two, side by side) measured on a labelled dataset.
public enum EvalRun: RPCRequest {
    public static let name = "eval/run"
    public enum Split: String, RPCEnum { case train, validation, test, all }
    public struct Params: Codable, Sendable {
        public var dataset: String
        /// Default: test if the dataset has one, else validation, else all of it.
        public var split: Split?
        /// Default: the active version.
        public var version: Int?
        /// A second version, measured on the same examples and compared.
        public var compare: Int?
        /// Word typo rates to measure accuracy under (default [0.1, 0.2]; [] for none).
        public var typoRates: [Double]?
        public var seed: Int?
        /// At most this many examples (the first ones).
        public var limit: Int?
        public var workDoneToken: RequestID?
        public init(dataset: String) { self.dataset = dataset }
    }
    public struct Result: Codable, Sendable {
        public var dataset: String
        public var split: String
        public var examples: Int
        /// One report per version: accuracy, macroF1, cost, misrouting cost, ECE, out of scope, typos.
        public var reports: [EvaluationReport]
        /// With `compare`: the second version against the first on the same examples.
        public var comparison: EvalComparison?
        public var seconds: Double
        public init(dataset: String, split: String, examples: Int, reports: [EvaluationReport], comparison: EvalComparison?, seconds: Double) {
            self.dataset = dataset; self.split = split; self.examples = examples; self.reports = reports; self.comparison = comparison; self.seconds = seconds
        }
    }
}

/// `eval/run` with `compare`: the second version against the first on the examples both know.
public struct EvalComparison: Codable, Sendable {
    public var first: Int
    public var second: Int
    public var examples: Int
    /// second − first, accuracy on those examples.
    public var accuracyDifference: Double
    /// The cost comparison (paired bootstrap bounds, McNemar), the second as the candidate.
    public var cost: GateComparison
    public init(first: Int, second: Int, examples: Int, accuracyDifference: Double, cost: GateComparison) {
        self.first = first; self.second = second; self.examples = examples; self.accuracyDifference = accuracyDifference; self.cost = cost
    }
}
