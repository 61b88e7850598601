import Scoring

/// The seeded generator of the fuzz-style tests: Scoring's SplitMix64.
public typealias SplitMix = SeededRandom
