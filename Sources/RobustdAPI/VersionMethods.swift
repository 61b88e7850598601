import JSON
import JSONRPC

/// How the encoder's layer products run (`robustd --precision`, and per version).
public enum ModelPrecision: String, RPCEnum { case fp32, int8 }

/// `model/fit`: the first version (or a new one) from a labelled dataset: head, calibration,
/// out-of-scope statistics.
public enum ModelFit: RPCRequest {
    public static let name = "model/fit"
    public struct Params: Codable, Sendable {
        public var dataset: String
        /// L2 strengths to try; the one with the best validation accuracy wins.
        public var lambdas: [Double]?
        /// Share of train held out for validation when the dataset has no validation split.
        public var validationFraction: Double?
        public var seed: Int?
        /// In-scope recall the out-of-scope threshold keeps on validation (default 0.95).
        public var oosRecall: Double?
        /// Make the new version active (default: only if no version is active).
        public var activate: Bool?
        /// Refit the head and the out-of-scope statistics on train and validation together; the
        /// temperature and the threshold stay the validation slice's (default false: a refitted
        /// version has seen the validation split, which every later fine-tune's early stopping
        /// and gate use as held-out data).
        public var refit: Bool?
        /// λ by k-fold cross-validation over the data the head is fitted on (train, or train
        /// and validation with `refit`); 1: the λ with the best validation accuracy. Default 5
        /// with `refit`, 1 without.
        public var folds: Int?
        /// Build the spelling normaliser from the dataset's words (default true).
        public var normalise: Bool?
        /// The encoder's layer products for this version: its head is fitted on vectors
        /// computed so, and it is served so (default: the daemon's `--precision`). Its
        /// fine-tuned descendants keep it.
        public var precision: ModelPrecision?
        public var workDoneToken: RequestID?
        public init(dataset: String, lambdas: [Double]? = nil, seed: Int? = nil, activate: Bool? = nil, precision: ModelPrecision? = nil) {
            self.dataset = dataset; self.lambdas = lambdas; self.seed = seed; self.activate = activate; self.precision = precision
        }
    }
    public struct Result: Codable, Sendable {
        public var version: Int
        public var active: Bool
        public var labels: Int
        public var trainExamples: Int
        public var validationExamples: Int
        public var lambda: Double
        public var trainAccuracy: Double
        public var validationAccuracy: Double
        public var temperature: Double
        public var eceBefore: Double
        public var eceAfter: Double
        public var oosThreshold: Double
        /// The head was refitted on train and validation together.
        public var refitted: Bool
        /// Words in the spelling normaliser's vocabulary (absent: no normaliser).
        public var normaliserWords: Int?
        /// The encoder's layer products the version was fitted with and is served with.
        public var precision: ModelPrecision
        public var seconds: Double
        public init(version: Int, active: Bool, labels: Int, trainExamples: Int, validationExamples: Int, lambda: Double,
                    trainAccuracy: Double, validationAccuracy: Double, temperature: Double, eceBefore: Double, eceAfter: Double,
                    oosThreshold: Double, refitted: Bool = false, normaliserWords: Int? = nil, precision: ModelPrecision = .fp32,
                    seconds: Double) {
            self.refitted = refitted; self.normaliserWords = normaliserWords; self.precision = precision
            self.version = version; self.active = active; self.labels = labels; self.trainExamples = trainExamples
            self.validationExamples = validationExamples; self.lambda = lambda; self.trainAccuracy = trainAccuracy
            self.validationAccuracy = validationAccuracy; self.temperature = temperature; self.eceBefore = eceBefore
            self.eceAfter = eceAfter; self.oosThreshold = oosThreshold; self.seconds = seconds
        }
    }
}

/// `model/versions`: every version with its lineage, status and report.
public enum ModelVersions: RPCRequest {
    public static let name = "model/versions"
    public struct Params: Codable, Sendable {
        /// 1 to 1000 (default all, up to 1000), oldest first.
        public var limit: Int?
        /// The `nextCursor` of the previous page.
        public var cursor: String?
        public init(limit: Int? = nil, cursor: String? = nil) { self.limit = limit; self.cursor = cursor }
    }
    /// Where a version is in its life.
    public enum Status: String, RPCEnum { case active, ready, candidate, rejected, failed, writing }
    public struct Result: Codable, Sendable {
        public struct Version: Codable, Sendable {
            public var id: Int
            public var parent: Int?
            public var createdAt: Double
            public var method: String
            public var dataset: String?
            public var status: Status
            /// How it was made: model/fit's report, or a fine-tune's (training, selection, gate).
            public var report: VersionReport
            public init(id: Int, parent: Int?, createdAt: Double, method: String, dataset: String?, status: Status, report: VersionReport) {
                self.id = id; self.parent = parent; self.createdAt = createdAt; self.method = method; self.dataset = dataset
                self.status = status; self.report = report
            }
        }
        public var active: Int?
        public var versions: [Version]
        /// Present while newer versions remain.
        public var nextCursor: String?
        public init(active: Int?, versions: [Version], nextCursor: String? = nil) {
            self.active = active; self.versions = versions; self.nextCursor = nextCursor
        }
    }
}
