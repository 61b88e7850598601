import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Rollout

/// `robustctl rollout …`: follow and steer the staged rollout of a candidate.
struct RolloutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout", abstract: "Follow and steer the staged rollout of a candidate (shadow → canary → promoted, or rolled back).",
        discussion: """
        Reviewing disagreements (robustctl rollout review) gives the most informative labels there are: each one says which \
        version is right exactly where the candidate and the active version differ, and the shadow's test counts only these.
        """,
        subcommands: [Start.self, Status.self, Watch.self, Review.self, Advance.self, Abort.self, List.self])

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Put a candidate version on a rollout against the active version.")
        @Argument var candidate: Int
        @Flag(help: "Roll it out even though it failed (or lacks) its offline gate.") var force = false
        @Option(help: "Share of the traffic the candidate answers in canary.") var canaryShare: Double?
        @Flag(help: "Wait for rollout/advance before each promotion (rollbacks stay automatic).") var manual = false
        @OptionGroup var connection: Connection
        func run() throws {
            var settings: [String: JSONValue] = [:]
            if let canaryShare { settings["canaryShare"] = .double(canaryShare) }
            if manual { settings["autoPromote"] = false }
            try connection.call(RolloutStart.self, RolloutStart.Params(candidate: candidate, settings: settings.isEmpty ? nil : .object(settings),
                                                                      force: force ? true : nil)) { rolloutLines($0) }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The running rollout: stage, evidence, progress toward each decision, per-arm figures, timeline.")
        @Option(help: "A rollout id (default: the current one).") var id: Int?
        @OptionGroup var connection: Connection
        func run() throws { try connection.call(RolloutStatus.self, RolloutStatus.Params(rollout: id)) { rolloutLines($0) } }
    }

    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A live view of the running rollout until it is promoted or rolled back.")
        @Option(help: "Seconds between updates.") var every = 1.0
        @OptionGroup var connection: Connection
        func run() throws {
            let c: RPCClient
            do { c = try RPCClient(path: connection.socketPath) } catch { fail("\(error)", code: 2) }
            var last = ""
            while true {
                let r: Result<RolloutView, RPCError>
                do { r = try c.call(RolloutStatus.self, RolloutStatus.Params()) } catch { fail("\(error)", code: 2) }
                guard case .success(let v) = r else {
                    if case .failure(let e) = r { FileHandle.standardError.write(Data("error \(e.code): \(e.message)\n".utf8)) }
                    throw ExitCode(1)
                }
                let text = rolloutLines(v)
                if text != last && !connection.json { print(text + "\n"); last = text }
                if v.stage.isFinal {
                    if connection.json { print(String(decoding: (try? JSONBytesEncoder().bytes(v)) ?? [], as: UTF8.self)) }
                    return
                }
                usleep(UInt32(max(0.1, every) * 1_000_000))
            }
        }
    }

    struct Review: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the disagreements waiting for a review (most at stake first), or label one: review ID LABEL.",
            discussion: "A review says which intent is right; give it without regard to which version answered. These labels are the shadow test's evidence.")
        @Argument var disagreement: Int?
        @Argument var label: String?
        @Option(help: "How many to list.") var limit = 20
        @OptionGroup var connection: Connection
        func run() throws {
            if let disagreement {
                guard let label else { throw ValidationError("give the right intent: robustctl rollout review \(disagreement) LABEL") }
                try connection.call(RolloutReview.self, RolloutReview.Params(disagreement: disagreement, label: label)) { r in
                    let d = r.disagreement
                    let who = label == d.candidate.label ? "the candidate was right" : label == d.control.label ? "the active version was right" : "neither was right"
                    return "disagreement \(d.id) reviewed as \(label): \(who)\n" + rolloutLines(r.rollout)
                }
                return
            }
            try connection.call(RolloutDisagreements.self, RolloutDisagreements.Params(reviewed: false, requested: true, limit: limit)) { r in
                guard !r.disagreements.isEmpty else { return "rollout \(r.rollout): the test asks for no review now (rollout/disagreements lists every disagreement)" }
                var lines = ["rollout \(r.rollout): disagreements the test asks a review for, most at stake first (robustctl rollout review ID LABEL):"]
                for d in r.disagreements {
                    lines.append(String(format: "  %6d  at stake %6.2f  seen %3d  counts %2d×  active: %@ (%.2f)  candidate: %@ (%.2f)",
                                        d.id, d.expectedCost, d.seen, d.requested, d.control.label as NSString, d.control.confidence,
                                        d.candidate.label as NSString, d.candidate.confidence))
                    lines.append("          \"\(d.text.prefix(100))\"" + (d.label.map { "  (a report says \($0); not counted)" } ?? ""))
                }
                return lines.joined(separator: "\n")
            }
        }
    }

    struct Advance: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Move the running rollout one stage on (shadow → canary → promoted), whatever the evidence says.")
        @Option(help: "Why (kept in the timeline).") var reason: String?
        @OptionGroup var connection: Connection
        func run() throws { try connection.call(RolloutAdvance.self, RolloutAdvance.Params(reason: reason)) { rolloutLines($0) } }
    }

    struct Abort: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Roll the running rollout back now; the active version stays.")
        @Option(help: "Why (kept in the timeline).") var reason: String?
        @OptionGroup var connection: Connection
        func run() throws { try connection.call(RolloutAbort.self, RolloutAbort.Params(reason: reason)) { rolloutLines($0) } }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every rollout, newest first.")
        @OptionGroup var connection: Connection
        func run() throws {
            try connection.call(RolloutList.self, EmptyParams()) { r in
                r.rollouts.isEmpty ? "no rollouts" : r.rollouts.map { v in
                    let last = v.timeline.last
                    return "rollout \(v.id): version \(v.candidate) against \(v.control), \(v.stage.rawValue)" + (last.map { " (\($0.by): \($0.reason))" } ?? "")
                }.joined(separator: "\n")
            }
        }
    }
}

func bar(_ x: Double) -> String {
    let n = Int((min(1, max(0, x)) * 10).rounded())
    return String(repeating: "█", count: n) + String(repeating: "░", count: 10 - n) + String(format: " %3.0f%%", 100 * x)
}

/// The human view of a rollout: where it is, how far each decision is, the arms, the timeline.
func rolloutLines(_ v: RolloutView) -> String {
    let e = v.evidence, p = v.progress
    var lines = [String(format: "rollout %d: version %d against version %d — %@ (%.0f s in this stage)%@", v.id, v.candidate, v.control,
                        v.stage.rawValue as NSString, p.stageSeconds, (v.candidateLoaded || v.stage.isFinal ? "" : "; the candidate is loading") as NSString)]
    lines.append(String(format: "  shadow: %d inputs scored unseen by the other version, %d disagreements, %d reviewed occurrences counted (min %d)%@", e.shadowRequests, e.disagreements,
                        e.labels, v.settings.shadow.minLabels,
                        (e.effect.map { String(format: "; %+.3f of the largest cost saved per disagreement", $0) } ?? "") as NSString))
    if !v.stage.isFinal {
        lines.append("  toward promotion: " + (v.stage == .shadow ? "not worse (to canary) \(bar(p.notWorse))   " : "") + "better \(bar(p.better))")
        lines.append("  toward rollback:  worse \(bar(p.worse))   not worth it \(bar(p.futile))" + (v.stage == .canary ? "   harm \(bar(p.harm))" : ""))
        lines.append(String(format: "  %@: %d of at least %d requests (at most %d)", v.stage.rawValue as NSString, p.requests, p.minRequests, p.maxRequests))
    }
    if v.stage == .canary || (v.arms["candidate"]?.requests ?? 0) > 0 {
        for name in ["control", "candidate"] {
            guard let a = v.arms[name] else { continue }
            lines.append(String(format: "  %-9@ v%-3d %6d requests  %4d failure reports (%.4f per request, cost/1000 %.1f)  expected cost/1000 %.1f  out of scope %.1f%%  flagged %.1f%%  p99 %.1f ms",
                                name as NSString, a.version, a.requests, a.failureReports, a.failureReportsPerRequest, a.reportedCostPer1000, a.expectedCostPer1000,
                                100 * a.outOfScopeRate, 100 * a.flaggedRate, a.latencyP99Ms))
        }
    }
    if let pending = v.pending { lines.append("  waiting for an operator (robustctl rollout advance): \(pending)") }
    lines.append("  timeline:")
    let f = DateFormatter()
    f.dateFormat = "HH:mm:ss"
    for t in v.timeline {
        lines.append("    \(f.string(from: Date(timeIntervalSince1970: t.at)))  \(t.to.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) by \(t.by): \(t.reason)")
    }
    return lines.joined(separator: "\n")
}
