// Reports: records the daemon computes, stores with a version or a job, and shows on the wire
// as they are. One definition serves the domain modules (Scoring, Training), the stores and
// RobustdAPI (docs/architecture.md, "Reports").

/// What a fine-tune's data selection took (`DataSelection`), as its report and the job's
/// result show it.
public struct SelectionCounts: Sendable, Codable, Equatable {
    public var failures = 0
    public var failuresHeldOut = 0
    public var failuresForEarlyStopping = 0
    public var regionExamples = 0
    public var augmented = 0
    public var replay = 0
    /// Noisy copies of the replayed examples (`DataSelection.Options.replayCopies`).
    public var replayAugmented = 0
    public var earlyStopping = 0
    public var targetHeldOut = 0
    public var globalHeldOut = 0
    public init(failures: Int = 0, failuresHeldOut: Int = 0, failuresForEarlyStopping: Int = 0, regionExamples: Int = 0,
                augmented: Int = 0, replay: Int = 0, replayAugmented: Int = 0, earlyStopping: Int = 0, targetHeldOut: Int = 0,
                globalHeldOut: Int = 0) {
        self.failures = failures; self.failuresHeldOut = failuresHeldOut; self.failuresForEarlyStopping = failuresForEarlyStopping
        self.regionExamples = regionExamples; self.augmented = augmented; self.replay = replay; self.replayAugmented = replayAugmented
        self.earlyStopping = earlyStopping; self.targetHeldOut = targetHeldOut; self.globalHeldOut = globalHeldOut
    }
}
