import Foundation

/// One rollout: the stage machine and its sequential tests, on the evidence it is given.
/// It knows nothing of I/O or the encoder; the daemon's rollout service feeds it and stores it.
///
/// Tests (docs/rollout.md has the assumptions), each an always-valid ``BettingTest``:
/// - on reviewed disagreements (a label chosen without knowing which version is right):
///   x = ½ + (cost of the control's answer − cost of the candidate's) / (2 · largest cost);
/// - in canary, on failure reports about inputs where the arms disagree: x = 1 when the report
///   is about the control's answer. Were the candidate no better there, a report would come
///   from the control with probability at most m, the control's share of the disagreeing
///   inputs served so far (reports depend on an answer being wrong, not on who gave it).
///
/// `better` rejects "the candidate is not better where they disagree" on both kinds of
/// evidence (the promotion's test, its α the false-promotion rate); `worse` rejects "it is
/// not worse" (roll back); `futile` rejects "it is better by at least minEffect" on the
/// labels (roll back: not worth it); `notWorse` rejects "it is worse by minEffect or more" on
/// the labels (shadow → canary: safe enough to serve a share); `harm` rejects "its answers draw
/// no more failure reports per request than the control's", on every report in canary
/// (roll back).
public struct Rollout: Codable, Sendable, Equatable {
    public var id: Int
    public var candidate: Int
    public var control: Int
    public var settings: RolloutSettings
    public private(set) var stage: Stage
    public var createdAt: Double
    public private(set) var stageStartedAt: Double
    public private(set) var finishedAt: Double?
    /// The largest cost one answer can have (the scale of the shadow test's observations).
    public var maxCost: Double
    /// Requests the candidate scored unseen (shadow, and control-served ones in canary).
    public private(set) var shadowRequests = 0
    public private(set) var disagreements = 0
    public private(set) var labels = 0
    public private(set) var better: BettingTest
    public private(set) var worse: BettingTest
    public private(set) var futile: BettingTest
    public private(set) var harm: BettingTest
    public private(set) var notWorse: BettingTest
    public private(set) var arms: [Arm: ArmStats] = [.control: ArmStats(), .candidate: ArmStats()]
    public private(set) var timeline: [Transition] = []
    /// A decision the evidence reached that waits for an operator (autoPromote off).
    public private(set) var pending: String?

    public init(id: Int, candidate: Int, control: Int, settings: RolloutSettings, maxCost: Double, now: Double, gate: String) {
        self.id = id
        self.candidate = candidate
        self.control = control
        self.settings = settings
        self.maxCost = max(1e-9, maxCost)
        stage = .shadow
        createdAt = now
        stageStartedAt = now
        let a = settings.falsePromotionRate, b = settings.falseRollbackRate
        better = BettingTest(direction: .above, null: 0.5, alpha: a)
        worse = BettingTest(direction: .below, null: 0.5, alpha: b)
        futile = BettingTest(direction: .below, null: 0.5 + settings.minEffect / 2, alpha: b)
        harm = BettingTest(direction: .above, null: settings.canaryShare, alpha: b)
        notWorse = BettingTest(direction: .above, null: 0.5 - settings.minEffect / 2, alpha: a)
        timeline = [Transition(from: nil, to: .shadow, at: now, by: "evidence", reason: gate, evidence: evidence)]
    }

    // MARK: Evidence in

    /// The candidate scored requests unseen; `disagreeing` of their inputs got another intent.
    public mutating func recordShadow(requests: Int, disagreeing: Int) {
        guard !stage.isFinal else { return }
        shadowRequests += requests
        disagreements += disagreeing
    }

    /// A reviewed disagreement: the cost each version's answer would have had under the label.
    public mutating func recordLabel(controlCost: Double, candidateCost: Double) {
        guard !stage.isFinal else { return }
        labels += 1
        let x = 0.5 + (controlCost - candidateCost) / (2 * maxCost)
        better.observe(x)
        worse.observe(x)
        futile.observe(x)
        notWorse.observe(x)
    }

    /// In canary: `count` inputs `arm` served were ones the other version answers differently.
    public mutating func recordDisagreementsServed(arm: Arm, count: Int) {
        guard stage == .canary, count > 0 else { return }
        arms[arm]!.disagreementsServed += count
    }

    /// A request one arm answered in canary.
    public mutating func recordServed(arm: Arm, inputs: Int, latencyMs: Double, outOfScope: Int, flagged: Int, expectedCost: Double) {
        guard stage == .canary else { return }
        var a = arms[arm]!
        a.requests += 1
        a.inputs += inputs
        a.outOfScope += outOfScope
        a.flagged += flagged
        a.expectedCost += expectedCost
        // A ring of the latest latencies.
        if a.latencies.count < ArmStats.latencyWindow { a.latencies.append(latencyMs) }
        else { a.latencies[(a.requests - 1) % ArmStats.latencyWindow] = latencyMs }
        arms[arm] = a
    }

    /// Requests another replica's arm answered in canary (a fleet's pooled evidence; no
    /// latencies: the latency guardrail is judged on the driving replica's own requests).
    public mutating func recordServed(arm: Arm, requests: Int, inputs: Int, outOfScope: Int, flagged: Int, expectedCost: Double, errors: Int) {
        guard stage == .canary, requests >= 0, inputs >= 0, errors >= 0 else { return }
        var a = arms[arm]!
        a.requests += requests
        a.inputs += inputs
        a.outOfScope += outOfScope
        a.flagged += flagged
        a.expectedCost += expectedCost
        a.errors += errors
        arms[arm] = a
    }

    /// A request an arm failed to answer (an internal error, not a client's bad input).
    public mutating func recordError(arm: Arm) {
        guard stage == .canary else { return }
        arms[arm]!.errors += 1
    }

    /// A failure report about an answer `arm` served during canary; `onDisagreement`: the
    /// other version answers that input differently.
    public mutating func recordFailureReport(arm: Arm, cost: Double, onDisagreement: Bool = false) {
        guard stage == .canary else { return }
        arms[arm]!.failureReports += 1
        arms[arm]!.reportedCost += cost
        let nc = Double(arms[.candidate]!.requests), n = nc + Double(arms[.control]!.requests)
        // The candidate's share of the requests the reports can be about.
        let s = n > 0 ? min(0.999, max(0.001, nc / n)) : settings.canaryShare
        harm.observe(arm == .candidate ? 1 : 0, null: s)
        let dc = Double(arms[.candidate]!.disagreementsServed), dk = Double(arms[.control]!.disagreementsServed)
        if onDisagreement && dc > 0 && dk > 0 {
            arms[arm]!.disagreementReports += 1
            // The control's share of the disagreeing inputs served.
            let m = min(0.999, max(0.001, dk / (dk + dc)))
            let x: Double = arm == .control ? 1 : 0
            better.observe(x, null: m)
            worse.observe(x, null: m)
        }
    }

    // MARK: Decisions

    /// Applies what the evidence decides now, if anything, and returns the transition.
    public mutating func decide(now: Double) -> Transition? {
        switch stage {
        case .shadow: return decideShadow(now: now)
        case .canary: return decideCanary(now: now)
        case .promoted, .rolledBack: return nil
        }
    }

    private mutating func decideShadow(now: Double) -> Transition? {
        let l = settings.shadow
        if worse.rejected {
            return move(to: .rolledBack, at: now, by: "evidence", reason: String(
                format: "worse than version %d where they disagree: mean cost change %+.3f of the largest cost over %d reviewed disagreements (%@)",
                control, -effectEstimate, labels, Self.reached(worse)))
        }
        if futile.rejected && !better.rejected {
            return move(to: .rolledBack, at: now, by: "evidence", reason: String(
                format: "not better than version %d by the smallest effect worth having (%.2f): estimated %.3f over %d reviewed disagreements (e-value %.1f)",
                control, settings.minEffect, effectEstimate, labels, futile.eValue))
        }
        if (notWorse.rejected || better.rejected) && labels >= l.minLabels && shadowRequests >= l.minRequests {
            let test = notWorse.rejected ? String(format: "%@ that it is not worse by %.2f", Self.reached(notWorse), settings.minEffect)
                : Self.reached(better) + " that it is better"
            let reason = String(format: "not worse than version %d where they disagree: %+.3f of the largest cost saved per disagreement over %d reviewed (%@); safe to serve %.0f%% of the traffic",
                                control, effectEstimate, labels, test, 100 * settings.canaryShare)
            return advance(to: .canary, at: now, reason: reason)
        }
        if labels >= l.maxLabels || shadowRequests >= l.maxRequests || now - stageStartedAt >= l.maxSeconds {
            return move(to: .rolledBack, at: now, by: "limit", reason: String(
                format: "inconclusive: the shadow's limit was reached (%d requests, %d reviewed disagreements, %.0f s) without enough evidence either way",
                shadowRequests, labels, now - stageStartedAt))
        }
        return nil
    }

    private mutating func decideCanary(now: Double) -> Transition? {
        let l = settings.canary, g = settings.guardrails
        let c = arms[.candidate]!, k = arms[.control]!
        if c.requests >= g.minRequests && k.requests >= g.minRequests {
            // The p99s sort a window: looked at every 16th candidate request.
            if c.requests % 16 == 0, k.latencyP99 > 0 && c.latencyP99 > g.latencyP99Ratio * k.latencyP99 {
                return move(to: .rolledBack, at: now, by: "guardrail", reason: String(
                    format: "latency: the candidate's p99 %.1f ms is %.2f× the control's %.1f ms (limit %.2f×)",
                    c.latencyP99, c.latencyP99 / k.latencyP99, k.latencyP99, g.latencyP99Ratio))
            }
            if c.outOfScopeRate - k.outOfScopeRate > g.outOfScopeIncrease {
                return move(to: .rolledBack, at: now, by: "guardrail", reason: String(
                    format: "out of scope: the candidate flags %.1f%% of inputs against the control's %.1f%% (limit +%.1f points)",
                    100 * c.outOfScopeRate, 100 * k.outOfScopeRate, 100 * g.outOfScopeIncrease))
            }
        }
        if c.requests + c.errors >= g.minRequests && c.errorRate > g.errorRate {
            return move(to: .rolledBack, at: now, by: "guardrail", reason: String(
                format: "errors: %.2f%% of the candidate's requests failed (limit %.2f%%)", 100 * c.errorRate, 100 * g.errorRate))
        }
        if harm.rejected {
            return move(to: .rolledBack, at: now, by: "evidence", reason: String(
                format: "more failure reports: %d about the candidate's %d answers, %d about the control's %d (%@)",
                c.failureReports, c.requests, k.failureReports, k.requests, Self.reached(harm)))
        }
        if worse.rejected {
            return move(to: .rolledBack, at: now, by: "evidence", reason: String(
                format: "worse than version %d where they disagree (%d reviewed, %d failure reports on disagreeing inputs; %@)",
                control, labels, c.disagreementReports + k.disagreementReports, Self.reached(worse)))
        }
        if futile.rejected && !better.rejected {
            return move(to: .rolledBack, at: now, by: "evidence", reason: String(
                format: "not better than version %d by the smallest effect worth having (%.2f): estimated %.3f over %d reviewed disagreements (e-value %.1f)",
                control, settings.minEffect, effectEstimate, labels, futile.eValue))
        }
        if better.rejected && c.requests >= l.minRequests {
            return advance(to: .promoted, at: now, reason: String(
                format: "better than version %d where they disagree: %d reviewed (%+.3f of the largest cost saved per disagreement) and %d failure reports on disagreeing inputs (%d about the control's answers, %d about the candidate's), %@; failure reports per request %.4f against %.4f over %d candidate requests",
                control, labels, effectEstimate, c.disagreementReports + k.disagreementReports, k.disagreementReports, c.disagreementReports,
                Self.reached(better), c.failureReportRate, k.failureReportRate, c.requests))
        }
        if c.requests >= l.maxRequests || labels >= l.maxLabels || now - stageStartedAt >= l.maxSeconds {
            return move(to: .rolledBack, at: now, by: "limit", reason: String(
                format: "inconclusive: the canary's limit was reached (%d candidate requests, %d reviewed, %.0f s) without evidence that the candidate is better (e-value %.1f of %.0f)",
                c.requests, labels, now - stageStartedAt, better.eValue, 1 / better.alpha))
        }
        return nil
    }

    /// A decided test's evidence for a transition's reason: the e-value it reached (a test that
    /// has decided stays decided, and a stage may wait on other conditions, such as a minimum of
    /// requests, while its wealth moves on), and the one now when that differs.
    public static func reached(_ t: BettingTest) -> String {
        let peak = exp(min(700, t.maxLogWealth)), now = t.eValue
        let s = String(format: "e-value reached %.1f ≥ %.0f", peak, 1 / t.alpha)
        return abs(peak - now) < 0.05 ? s : s + String(format: ", %.1f now", now)
    }

    /// A forward move: made at once with autoPromote, else left pending for an operator.
    private mutating func advance(to next: Stage, at now: Double, by: String = "evidence", reason: String) -> Transition? {
        guard settings.autoPromote else {
            if pending == nil { pending = reason }
            return nil
        }
        return move(to: next, at: now, by: by, reason: reason)
    }

    @discardableResult
    private mutating func move(to next: Stage, at now: Double, by: String, reason: String) -> Transition {
        let t = Transition(from: stage, to: next, at: now, by: by, reason: reason, evidence: evidence)
        stage = next
        stageStartedAt = now
        pending = nil
        if next.isFinal { finishedAt = now }
        timeline.append(t)
        return t
    }

    /// An operator moves the rollout one stage on (shadow → canary → promoted).
    public mutating func advanceByOperator(now: Double, reason: String?) throws(RolloutError) -> Transition {
        switch stage {
        case .shadow: return move(to: .canary, at: now, by: "operator", reason: reason ?? "advanced by an operator")
        case .canary: return move(to: .promoted, at: now, by: "operator", reason: reason ?? "promoted by an operator")
        case .promoted, .rolledBack: throw RolloutError.finished(id: id, stage: stage)
        }
    }

    /// An operator (or a fault, such as a candidate that cannot be loaded) ends the rollout.
    public mutating func abort(now: Double, by: String = "operator", reason: String?) throws(RolloutError) -> Transition {
        guard !stage.isFinal else { throw RolloutError.finished(id: id, stage: stage) }
        return move(to: .rolledBack, at: now, by: by, reason: reason ?? "aborted by an operator")
    }

    // MARK: Reading

    /// The mean cost saved per reviewed disagreement, as a share of the largest cost.
    public var effectEstimate: Double { labels == 0 ? 0 : 2 * (better.mean - 0.5) }

    public var evidence: Evidence {
        Evidence(shadowRequests: shadowRequests, disagreements: disagreements, labels: labels,
                 effect: labels == 0 ? nil : effectEstimate, betterEValue: better.eValue, worseEValue: worse.eValue,
                 futileEValue: futile.eValue,
                 canaryRequests: Dictionary(uniqueKeysWithValues: arms.map { ($0.key.rawValue, $0.value.requests) }),
                 failureReports: Dictionary(uniqueKeysWithValues: arms.map { ($0.key.rawValue, $0.value.failureReports) }),
                 harmEValue: harm.eValue, notWorseEValue: notWorse.eValue,
                 disagreementReports: Dictionary(uniqueKeysWithValues: arms.map { ($0.key.rawValue, $0.value.disagreementReports) }))
    }

    /// The arm that answers a request whose routing hash is `hash` (canary only; control otherwise).
    public func arm(forHash hash: UInt64) -> Arm {
        guard stage == .canary else { return .control }
        return Double(hash % 1_000_000) < settings.canaryShare * 1_000_000 ? .candidate : .control
    }

    public func stats(_ arm: Arm) -> ArmStats { arms[arm]! }
}

public enum RolloutError: Error, Equatable, CustomStringConvertible {
    case finished(id: Int, stage: Stage)

    public var description: String {
        switch self {
        case .finished(let id, let stage): "rollout \(id) is over (\(stage.rawValue)); start a new one for another candidate"
        }
    }
}
