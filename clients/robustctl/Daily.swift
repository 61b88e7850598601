import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import Scoring

/// A typed call whose failure ends the command: the daemon's error (exit 1), or no daemon (2).
func rpc<M: RPCRequest>(_ c: RPCClient, _ method: M.Type, _ params: M.Params, timeout: Double? = 600) throws -> M.Result {
    let r: Result<M.Result, RPCError>
    do { r = try c.call(method, params, timeout: timeout) } catch { fail("\(error)", code: 2) }
    switch r {
    case .success(let v): return v
    case .failure(let e):
        FileHandle.standardError.write(Data("error \(e.code): \(M.name): \(e.message)\n".utf8))
        throw ExitCode(1)
    }
}

func rpc<M: RPCRequest>(_ c: RPCClient, _ method: M.Type, timeout: Double? = 600) throws -> M.Result where M.Params == EmptyParams {
    try rpc(c, method, EmptyParams(), timeout: timeout)
}

func connect(_ c: Connection) -> RPCClient {
    do { return try RPCClient(path: c.socketPath) } catch {
        fail("cannot reach robustd at \(c.socketPath): \(error) (start it with: robustd --socket --model ~/.cache/robustd/models/all-MiniLM-L6-v2)", code: 2)
    }
}

struct ScoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "score", abstract: "Score texts (arguments, or one per line on stdin).")
    @Argument(help: "Texts; none: read lines from stdin.") var texts: [String] = []
    @Option(help: "Typo variants per text for the stability check.") var perturb: Int = 0
    @OptionGroup var connection: Connection
    func run() throws {
        let inputs = texts.isEmpty ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init) : texts
        let lines = inputs.filter { !$0.isEmpty }
        var params = Score.Params(inputs: lines.map { Score.Input(text: $0) })
        if perturb > 0 { params.perturb = Score.Perturb(n: perturb) }
        try connection.call(Score.self, params) { r in
            r.results.enumerated().map { i, s in
                String(format: "%-28@ %.2f  risk %-6@ %@%@", s.label as NSString, s.confidence, s.risk.level.rawValue as NSString,
                       (s.outOfScope.flagged ? "out of scope  " : "") as NSString, lines[i] as NSString)
            }.joined(separator: "\n")
        }
    }
}

struct FlagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "flag", abstract: "Only the risky ones among texts, with their reasons.")
    @Argument var texts: [String] = []
    @OptionGroup var connection: Connection
    func run() throws {
        let inputs = texts.isEmpty ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init) : texts
        var params = Score.Params(inputs: inputs.filter { !$0.isEmpty }.map { Score.Input(text: $0) })
        params.perturb = Score.Perturb(n: 4)
        try connection.call(RiskFlag.self, params) { r in
            "\(r.flagged.count) of \(r.scored) flagged\n" + r.flagged.map { x in
                String(format: "  %@ → %@ (%.2f): %@", x.text as NSString, x.score.label as NSString, x.score.confidence,
                       x.reasons.map(\.reason.rawValue).joined(separator: ", ") as NSString)
            }.joined(separator: "\n")
        }
    }
}

struct FeedbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "feedback", abstract: "Report a failure case (by input id or text).")
    @Option(help: "complaint, reinquiry, escalation, correction or confirmation.") var kind = "correction"
    @Option(help: "The id the input had in a score request.") var inputId: String?
    @Option(help: "The input's text.") var text: String?
    @Option(help: "The intent it should have been.") var correct: String?
    @Option(help: "Its business cost (default: the kind's configured cost).") var cost: Double?
    @OptionGroup var connection: Connection
    func run() throws {
        guard let k = FeedbackKind(rawValue: kind) else {
            fail("--kind must be one of: " + FeedbackKind.allCases.map(\.rawValue).joined(separator: ", "), code: 2)
        }
        let params = FeedbackReport.Params(inputId: inputId, text: text, kind: k, cost: cost, correctLabel: correct)
        try connection.call(FeedbackReport.self, params) { r in
            "recorded #\(r.id): \(r.kind.rawValue) cost \(r.cost), predicted \(r.predictedLabel)"
                + (r.correctLabel.map { ", meant \($0)" } ?? "") + (r.duplicate == true ? " (a duplicate; stored once)" : "")
        }
    }
}

struct RegionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "regions", abstract: "The riskiest regions.")
    @Option(help: "hour, day or all.") var window = "all"
    @Option(help: "How many.") var limit = 10
    @OptionGroup var connection: Connection
    func run() throws {
        guard let w = RiskRegions.Window(rawValue: window) else { fail("--window must be hour, day or all", code: 2) }
        try connection.call(RiskRegions.self, RiskRegions.Params(window: w, limit: limit)) { r in
            let head = String(format: "traffic %d, failures %d, expected cost per 1,000 requests %.1f\n", r.traffic, r.failures, r.expectedCostPer1000)
            let rows = r.regions.map { g in
                String(format: "  %@ share %.3f  failure rate %.2f  cost/1000 %.2f", g.id.padding(toLength: 44, withPad: " ", startingAt: 0) as NSString,
                       g.trafficShare, g.failureRate, g.costPer1000)
            }
            return head + rows.joined(separator: "\n")
        }
    }
}

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "metrics", abstract: "Live metrics now (names or prefixes; all by default), or --prometheus.")
    @Argument var names: [String] = []
    @Flag(help: "The Prometheus text exposition.") var prometheus = false
    @OptionGroup var connection: Connection
    func run() throws {
        if prometheus { try connection.call(MetricsPrometheus.self, EmptyParams()) { $0.text }; return }
        try connection.call(MetricsGet.self, MetricsGet.Params(metrics: names.isEmpty ? nil : names)) { r in
            r.values.keys.sorted().map { k in String(format: "%@ %.6g", k.padding(toLength: 34, withPad: " ", startingAt: 0) as NSString, r.values[k] ?? 0) }
                .joined(separator: "\n")
        }
    }
}

/// Replays a stored dataset as production traffic: seeded order, typos on a share of it,
/// corrections for a share of the errors (idempotent: the same seed reports nothing twice).
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replay a dataset as production traffic, with typos and feedback on a seeded share of the errors.")
    @Option(help: "The dataset (dataset/list).") var dataset: String
    @Option(help: "train, validation or test (default: all).") var split: String?
    @Option(help: "At most this many examples.") var limit: Int?
    @Option(help: "Share of inputs given word typos.") var typoRate = 0.3
    @Option(help: "Word typo rate inside those inputs.") var wordTypoRate = 0.1
    @Option(help: "Share of the errors reported as corrections.") var feedbackRate = 0.5
    @Option(help: "The seed: the same seed replays the same inputs and reports the same errors.") var seed: UInt64 = 7
    @Option(help: "Inputs per score request.") var batch = 50
    @Option(help: "While a rollout runs, a simulated reviewer answers this share of the reviews its test asks for, with the dataset's labels (rollout/review).")
    var reviewRate = 0.0
    @Flag(help: "Replay the dataset again (new typos, new order) until the running rollout is promoted or rolled back.")
    var untilRolloutEnds = false
    @Option(help: "With --until-rollout-ends: at most this many passes over the dataset.") var maxPasses = 20
    @OptionGroup var connection: Connection

    /// Input ids of a pass: the first pass keeps the ids earlier versions used.
    func idPrefix(_ pass: Int) -> String { pass == 0 ? "replay-\(seed)-" : "replay-\(seed)-p\(pass)-" }

    func run() throws {
        guard (0...1).contains(typoRate), (0...1).contains(feedbackRate), (0...1).contains(wordTypoRate), (0...1).contains(reviewRate), batch >= 1, maxPasses >= 1 else {
            throw ValidationError("rates must be between 0 and 1, --batch at least 1")
        }
        var splitName: DatasetExamples.SplitName? = nil
        if let split {
            guard let v = DatasetExamples.SplitName(rawValue: split) else { throw ValidationError("--split must be train, validation or test") }
            splitName = v
        }
        let c = connect(connection)
        var rows: [(String, String)] = []
        var offset = 0
        while true {
            let page = try rpc(c, DatasetExamples.self, .init(name: dataset, split: splitName, offset: offset, limit: 10_000))
            rows += page.examples.map { ($0.text, $0.label) }
            offset += page.examples.count
            if page.examples.isEmpty || offset >= page.total { break }
        }
        var rng = SeededRandom(seed: seed)
        rows.shuffle(using: &rng)
        if let limit { rows = Array(rows.prefix(limit)) }
        let base = rows
        var scored = 0, wrong = 0, reported = 0, duplicates = 0, typoed = 0, reviewed = 0, passes = 0
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        let started = Date()
        var truthByText: [String: String] = [:]
        var seenDisagreements = Set<Int>()
        var reviewRng = SeededRandom(seed: seed &+ 0x5EED)
        var rolloutEnded = false
        /// The reviewer: every new disagreement of the running rollout gets one seeded coin.
        func review() throws {
            guard reviewRate > 0, case .success(let status) = try c.call(RolloutStatus.self, .init()),
                  status.stage == .shadow || status.stage == .canary else { return }
            // The reviews the test asks for (each gets one coin).
            let page = try rpc(c, RolloutDisagreements.self, .init(reviewed: false, requested: true, limit: 1000))
            for d in page.disagreements {
                guard seenDisagreements.insert(d.id).inserted else { continue }
                guard reviewRng.unit() < reviewRate, let truth = truthByText[d.text] else { continue }
                if case .success = try c.call(RolloutReview.self, .init(disagreement: d.id, label: truth)) { reviewed += 1 }
            }
        }
        func rolloutOver() throws -> Bool {
            guard case .success(let status) = try c.call(RolloutStatus.self, .init()) else { return true }
            return status.stage.isFinal
        }
        repeat {
        if passes > 0 {
            rows = base
            rows.shuffle(using: &rng)
        }
        let passSeed = seed &+ UInt64(passes) &* 1_000_003
        for start in stride(from: 0, to: rows.count, by: batch) {
            let chunk = rows[start..<min(start + batch, rows.count)]
            var inputs: [Score.Input] = []
            for (k, (text, _)) in chunk.enumerated() {
                let i = start + k
                var t = text
                if rng.unit() < typoRate { t = Typos.perturb(text, rate: wordTypoRate, seed: passSeed &* 31 &+ UInt64(i)); typoed += 1 }
                for b in t.utf8 { digest = (digest ^ UInt64(b)) &* 0x100_0000_01b3 }
                truthByText[t] = chunk[chunk.startIndex + k].1
                inputs.append(Score.Input(id: idPrefix(passes) + "\(i)", text: t))
            }
            let r = try rpc(c, Score.self, Score.Params(inputs: inputs, routingKey: idPrefix(passes) + "\(start)"))
            for (k, s) in r.results.enumerated() {
                scored += 1
                let truth = chunk[chunk.startIndex + k].1
                guard s.label != truth else { continue }
                wrong += 1
                guard rng.unit() < feedbackRate else { continue }
                let id = idPrefix(passes) + "\(start + k)"
                let f = try rpc(c, FeedbackReport.self, FeedbackReport.Params(inputId: id, kind: .correction, correctLabel: truth, idempotencyKey: id))
                if f.duplicate == true { duplicates += 1 } else { reported += 1 }
            }
            // The reviewer and the end check look every 100 inputs or so.
            let checkpoint = (start + chunk.count) / 100 != start / 100
            if reviewRate > 0 && checkpoint { try review() }
            if untilRolloutEnds && checkpoint, try rolloutOver() { rolloutEnded = true; break }
        }
        try review()
        passes += 1
        if untilRolloutEnds && !rolloutEnded { rolloutEnded = try rolloutOver() }
        if untilRolloutEnds && !connection.json, case .success(let st) = try c.call(RolloutStatus.self, .init()) {
            FileHandle.standardError.write(Data("  pass \(passes): \(scored) inputs so far, \(reviewed) disagreements reviewed; rollout \(st.id) \(st.stage.rawValue)\n".utf8))
        }
        } while untilRolloutEnds && !rolloutEnded && passes < maxPasses
        let summary: JSONValue = [
            "dataset": .string(dataset), "seed": .int(Int64(seed)), "scored": .int(Int64(scored)), "withTypos": .int(Int64(typoed)),
            "wrong": .int(Int64(wrong)), "accuracy": .double(scored == 0 ? 0 : Double(scored - wrong) / Double(scored)),
            "reported": .int(Int64(reported)), "alreadyReported": .int(Int64(duplicates)), "inputsDigest": .string(String(digest, radix: 16)),
            "reviewed": .int(Int64(reviewed)), "passes": .int(Int64(passes)),
            "seconds": .double(Date().timeIntervalSince(started)),
        ]
        if connection.json { print(JSONWriter.string(summary)); return }
        print(String(format: "replayed %d inputs of '%@' (seed %llu, %d with typos): %d wrong (accuracy %.1f%%); %d corrections reported%@%@; %.1f s",
                     scored, dataset as NSString, seed, typoed, wrong, 100 * (summary["accuracy"]?.doubleValue ?? 0), reported,
                     (duplicates > 0 ? ", \(duplicates) already reported" : "") as NSString,
                     (reviewRate > 0 ? ", \(reviewed) disagreements reviewed" : "") as NSString, summary["seconds"]?.doubleValue ?? 0))
    }
}
