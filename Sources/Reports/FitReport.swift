// Reports: records the daemon computes, stores with a version or a job, and shows on the wire
// as they are. One definition serves the domain modules (Scoring, Training), the stores and
// RobustdAPI (docs/architecture.md, "Reports").

/// How `model/fit` made a version (`HeadFitting` in Scoring computes it; stored as the version's report).
public struct FitReport: Sendable, Codable {
    public var lambda: Double
    public var lambdasTried: [Double]
    public var validationAccuracyByLambda: [Double]
    public var trainAccuracy: Double
    public var validationAccuracy: Double
    public var temperature: Double
    public var eceBefore: Double
    public var eceAfter: Double
    public var oosThreshold: Float
    public var oosTargetRecall: Double
    public var iterations: Int
    public var converged: Bool
    /// The head was refitted on train and validation together at the chosen λ (the
    /// accuracies above are the held-out ones, before the refit).
    public var refitted: Bool?
    public var refitExamples: Int?
    /// Words in the spelling normaliser's vocabulary (nil: no normaliser).
    public var normaliserWords: Int?
    /// The folds of the cross-validation that chose λ over the data the head was fitted on
    /// (train, or train and validation with a refit), and its mean held-out accuracy per λ of
    /// `lambdasTried` (nil: λ is the validation slice's choice).
    public var crossValidationFolds: Int?
    public var crossValidationAccuracyByLambda: [Double]?
    public init(lambda: Double, lambdasTried: [Double], validationAccuracyByLambda: [Double], trainAccuracy: Double,
                validationAccuracy: Double, temperature: Double, eceBefore: Double, eceAfter: Double,
                oosThreshold: Float, oosTargetRecall: Double, iterations: Int, converged: Bool, refitted: Bool? = nil,
                refitExamples: Int? = nil, normaliserWords: Int? = nil, crossValidationFolds: Int? = nil,
                crossValidationAccuracyByLambda: [Double]? = nil) {
        self.lambda = lambda; self.lambdasTried = lambdasTried
        self.validationAccuracyByLambda = validationAccuracyByLambda; self.trainAccuracy = trainAccuracy
        self.validationAccuracy = validationAccuracy; self.temperature = temperature; self.eceBefore = eceBefore
        self.eceAfter = eceAfter; self.oosThreshold = oosThreshold; self.oosTargetRecall = oosTargetRecall
        self.iterations = iterations; self.converged = converged; self.refitted = refitted
        self.refitExamples = refitExamples; self.normaliserWords = normaliserWords
        self.crossValidationFolds = crossValidationFolds; self.crossValidationAccuracyByLambda = crossValidationAccuracyByLambda
    }
}
