import Foundation

/// An always-valid one-sided test of the mean of observations in [0, 1], by betting.
///
/// The null hypothesis is "the mean is at most `null`" (``Direction/above``: the alternative
/// is a larger mean) or "at least `null`" (``Direction/below``). A gambler starts with 1 and
/// stakes a fraction of their wealth on each observation at fair odds under the null; under
/// the null their wealth is a nonnegative supermartingale, so by Ville's inequality it ever
/// reaches 1/α with probability at most α. The test can therefore be looked at after every
/// observation, and stopped whenever, without inflating its error rate (Shafer and Vovk,
/// *Game-Theoretic Foundations for Probability and Finance*; Waudby-Smith and Ramdas,
/// "Estimating means of bounded random variables by betting", JRSS-B 2024).
///
/// Wealth here is the average of `grid` gamblers (4 by default), each betting a fixed fraction
/// f_k ∈ (0, ½] of the most the bet allows: the average of e-processes is an e-process, and
/// the mixture grows nearly as fast as the best fixed fraction in hindsight (a cost of
/// log(grid) in wealth), with no tuning and nothing estimated from the data.
///
/// The null may change from one observation to the next (`observe(_:null:)`): the bet stays
/// fair as long as each observation's conditional mean, given the past, is at most (or at
/// least) the null given with it.
public struct BettingTest: Codable, Sendable, Equatable {
    public enum Direction: String, Codable, Sendable {
        /// Alternative: the mean is larger than the null.
        case above
        /// Alternative: the mean is smaller than the null.
        case below
    }

    public var direction: Direction
    /// The default null for `observe(_:)`.
    public var null: Double
    /// The error rate: the test rejects when the wealth reaches 1/alpha.
    public var alpha: Double
    /// log wealth of each gambler of the mixture.
    public var logWealths: [Double]
    public var fractions: [Double]
    public private(set) var count = 0
    public private(set) var sum = 0.0
    /// True once the wealth has reached 1/alpha (it stays true: the test has decided).
    public private(set) var rejected = false
    /// The observation at which it rejected.
    public private(set) var rejectedAt: Int?
    /// The largest log wealth reached so far.
    public private(set) var maxLogWealth = 0.0

    public init(direction: Direction, null: Double, alpha: Double, grid: Int = 4) {
        self.direction = direction
        self.null = null
        self.alpha = alpha
        // Geometric grid from ½ down by factors of 2^(2/3): from bold to cautious bets (½, 0.31, 0.20, 0.125 with
        // 4). Fewer gamblers cost less wealth (log 4) and suit effects worth acting on; robustd-bench rollout compared 4 to 8.
        fractions = (0..<max(1, grid)).map { 0.5 * pow(2, -Double($0) / 1.5) }
        logWealths = Array(repeating: 0, count: fractions.count)
    }

    public mutating func observe(_ x: Double) { observe(x, null: null) }

    /// Adds one observation `x` (clipped into [0, 1]) whose conditional mean under the null
    /// is at most (above) or at least (below) `m`.
    public mutating func observe(_ x0: Double, null m0: Double) {
        let x = min(1, max(0, x0.isFinite ? x0 : 0))
        let m = min(1 - 1e-9, max(1e-9, m0))
        // The payoff per unit staked, scaled so that its worst case is −1.
        let payoff = direction == .above ? (x - m) / m : (m - x) / (1 - m)
        for k in fractions.indices { logWealths[k] += log1p(fractions[k] * payoff) }
        count += 1
        sum += x
        maxLogWealth = max(maxLogWealth, logWealth)
        if !rejected && logWealth >= log(1 / alpha) {
            rejected = true
            rejectedAt = count
        }
    }

    /// log of the mixture's wealth: the log e-value.
    public var logWealth: Double {
        let top = logWealths.max() ?? 0
        return top + log(logWealths.reduce(0) { $0 + exp($1 - top) } / Double(max(1, logWealths.count)))
    }

    /// The e-value so far (the mixture's wealth).
    public var eValue: Double { exp(min(700, logWealth)) }

    /// The always-valid p-value: 1 / the largest wealth reached (at most 1).
    public var pValue: Double { min(1, exp(-min(700, maxLogWealth))) }

    /// How far the evidence is on its way to a decision: log wealth over log(1/α), in [0, 1].
    public var progress: Double { rejected ? 1 : min(1, max(0, logWealth / log(1 / alpha))) }

    public var mean: Double { count == 0 ? .nan : sum / Double(count) }
}
