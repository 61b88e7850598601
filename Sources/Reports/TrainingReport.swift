// Reports: records the daemon computes, stores with a version or a job, and shows on the wire
// as they are. One definition serves the domain modules (Scoring, Training), the stores and
// RobustdAPI (docs/architecture.md, "Reports").

/// How a local fine-tune trained its candidate (`LocalFineTune` in Training computes it).
public struct TrainingReport: Sendable, Codable {
    public var method: String
    public var layers: Int
    public var rank: Int?
    public var epochs: Int
    public var steps: Int
    public var plannedSteps: Int
    /// done, early-stopping, max-steps, max-seconds or cancelled.
    public var stoppedBy: String
    public var bestStep: Int?
    /// The early-stopping score (minus the weighted mean cost) of the parent and of the parameters kept.
    public var earlyStoppingInitialScore: Double?
    public var earlyStoppingBestScore: Double?
    public var trainExamples: Int
    public var earlyStoppingExamples: Int
    public var targetHeldOutExamples: Int
    public var globalHeldOutExamples: Int
    public var firstLoss: Double?
    public var lastLoss: Double?
    public var cacheSeconds: Double
    public var trainSeconds: Double
    public var seconds: Double
    /// FLOPs of training: caching the frozen layers' output for the training and
    /// early-stopping examples, the steps, and the early-stopping evaluations.
    public var trainingFlops: Double
    /// All FLOPs spent, the gate's measurements and the calibration's refits included.
    public var flops: Double
    /// Estimated FLOPs of fine-tuning every layer on all the dataset's data for the same epochs.
    public var fullFineTuneFlops: Double
    public var temperature: Double
    public var trainableParameters: Int
    /// Adversarial typos added, and the FLOPs their search cost (counted in trainingFlops).
    public var adversarialExamples: Int?
    public var adversarialFlops: Double?
    /// λ of the consistency term, when it was on.
    public var consistency: Double?
    /// ε of embedding-space adversarial training, when it was on.
    public var adversarialEpsilon: Double?
    public init(method: String, layers: Int, rank: Int? = nil, epochs: Int, steps: Int, plannedSteps: Int,
                stoppedBy: String, bestStep: Int? = nil, earlyStoppingInitialScore: Double? = nil,
                earlyStoppingBestScore: Double? = nil, trainExamples: Int, earlyStoppingExamples: Int,
                targetHeldOutExamples: Int, globalHeldOutExamples: Int, firstLoss: Double? = nil,
                lastLoss: Double? = nil, cacheSeconds: Double, trainSeconds: Double, seconds: Double,
                trainingFlops: Double, flops: Double, fullFineTuneFlops: Double, temperature: Double,
                trainableParameters: Int, adversarialExamples: Int? = nil, adversarialFlops: Double? = nil,
                consistency: Double? = nil, adversarialEpsilon: Double? = nil) {
        self.method = method; self.layers = layers; self.rank = rank; self.epochs = epochs; self.steps = steps
        self.plannedSteps = plannedSteps; self.stoppedBy = stoppedBy; self.bestStep = bestStep
        self.earlyStoppingInitialScore = earlyStoppingInitialScore
        self.earlyStoppingBestScore = earlyStoppingBestScore; self.trainExamples = trainExamples
        self.earlyStoppingExamples = earlyStoppingExamples; self.targetHeldOutExamples = targetHeldOutExamples
        self.globalHeldOutExamples = globalHeldOutExamples; self.firstLoss = firstLoss; self.lastLoss = lastLoss
        self.cacheSeconds = cacheSeconds; self.trainSeconds = trainSeconds; self.seconds = seconds
        self.trainingFlops = trainingFlops; self.flops = flops; self.fullFineTuneFlops = fullFineTuneFlops
        self.temperature = temperature; self.trainableParameters = trainableParameters
        self.adversarialExamples = adversarialExamples; self.adversarialFlops = adversarialFlops
        self.consistency = consistency; self.adversarialEpsilon = adversarialEpsilon
    }
}
