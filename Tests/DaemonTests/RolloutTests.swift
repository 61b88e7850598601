import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Staged rollout: shadow, reviews, canary, promotion, rollback, restarts")
struct RolloutDaemonTests {
    /// Texts over the tiny model's vocabulary, varied enough for two heads to disagree on some.
    static let texts: [String] = (0..<80).map { i in
        let words = ["my", "card", "is", "late", "the", "?", "a", "b", "c"]
        return (0..<(3 + i % 4)).map { k in words[(i * 7 + k * (i % 5 + 1)) % words.count] }.joined(separator: " ")
    }

    /// The prepared daemon plus version 2: a head fitted with heavy regularisation (another
    /// version over the same intents that disagrees with version 1 on some inputs), not active.
    static func withCandidate(state: TempDir, model: TempFolder) throws -> (DaemonProcess, RPCClient) {
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        let v2 = try c.call(ModelFit.self, .init(dataset: "tiny", lambdas: [30], activate: false), timeout: 60).get()
        #expect(v2.version == 2 && !v2.active)
        return (d, c)
    }

    static let settings: JSONValue = ["shadow": ["minRequests": 5, "minLabels": 2], "canary": ["minRequests": 5],
                                      "canaryShare": 0.5, "autoPromote": false, "reviewShare": 1]

    static func waitFor(_ c: RPCClient, timeout: Double = 20, _ done: (RolloutView) -> Bool) throws -> RolloutView {
        let deadline = Date().addingTimeInterval(timeout)
        var last = try c.call(RolloutStatus.self, .init()).get()
        while Date() < deadline {
            if done(last) { return last }
            usleep(50_000)
            last = try c.call(RolloutStatus.self, .init()).get()
        }
        Issue.record("rollout/status did not reach the expected state in \(timeout) s: stage \(last.stage.rawValue)")
        return last
    }

    /// Starts a rollout of `candidate` (forced past the offline gate) with these settings.
    static func start(_ c: RPCClient, _ candidate: Int = 2, settings: JSONValue? = nil, force: Bool? = true) throws -> Result<RolloutView, RPCError> {
        try c.call(RolloutStart.self, .init(candidate: candidate, settings: settings, force: force))
    }

    static func score(_ c: RPCClient, _ texts: [String], routingKey: String? = nil) throws -> Score.Result {
        try c.call(Score.self, .init(inputs: texts.map { Score.Input(text: $0) }, routingKey: routingKey)).get()
    }

    @Test("the shadow's coins are reproducible: the same traffic through two daemons samples the same occurrences, about reviewShare of them")
    func reproducibleSampling() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        var requested: [[String: Int]] = []
        var seen = 0
        for _ in 0..<2 {
            let state = TempDir()
            let (d, c) = try Self.withCandidate(state: state, model: model)
            let settings: JSONValue = ["shadow": ["minRequests": 100_000, "minLabels": 500], "autoPromote": false, "reviewShare": 0.5]
            _ = try Self.start(c, settings: settings).get()
            for _ in 0..<3 {
                for t in Self.texts { _ = try Self.score(c, [t]) }
            }
            _ = try Self.waitFor(c) { $0.evidence.shadowRequests >= 3 * Self.texts.count }
            // The disagreements are stored at most a second after they are found.
            var rows: [Disagreement] = []
            for _ in 0..<60 {
                rows = try c.call(RolloutDisagreements.self, .init(limit: 1000)).get().disagreements
                if rows.reduce(0, { $0 + $1.seen }) >= (try c.call(RolloutStatus.self, .init()).get().evidence.disagreements) { break }
                usleep(100_000)
            }
            var byText: [String: Int] = [:]
            for r in rows { byText[r.text] = r.requested }
            seen = rows.reduce(0) { $0 + $1.seen }
            requested.append(byText)
            #expect(d.terminate() == 0)
        }
        #expect(requested[0] == requested[1], "the same traffic sampled other occurrences")
        let sampled = requested[0].values.reduce(0, +)
        #expect(seen > 20, "too few disagreements to judge: \(seen)")
        #expect(Double(sampled) > 0.25 * Double(seen) && Double(sampled) < 0.75 * Double(seen), "\(sampled) of \(seen) sampled at reviewShare 0.5")
    }

    @Test("shadow collects disagreements off the reply's path; reviews count; canary routes sticky shares; reports land on the arm that answered; operator promotion")
    func wholeRollout() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var (d, c) = try Self.withCandidate(state: state, model: model)
        var events: [JSONValue] = []
        c.onNotification = { m, p in if m == "rollout/event", let p { events.append(p) } }

        // A fitted version has no offline gate report: refused without force, and nothing starts.
        let refused = try Self.start(c, force: nil)
        guard case .failure(let e) = refused else { Issue.record("started without a gate"); return }
        #expect(e.code == .invalidParams && e.message.contains("offline gate"))
        #expect(try c.call(RolloutStatus.self, .init()).isFailure)
        // Bad settings are named.
        let bad = try Self.start(c, settings: ["canaryShare": 1.5])
        #expect(bad.error?.message.contains("canaryShare") == true)
        #expect(try Self.start(c, 1).error?.code == .invalidParams)

        let started = try Self.start(c, settings: Self.settings).get()
        #expect(started.stage == .shadow && started.control == 1 && started.candidate == 2)
        #expect(try Self.start(c).error?.code == .conflict)
        _ = try c.call(RolloutStatus.self, .init(watch: true)).get()

        // Shadow: every answer comes from version 1; the candidate scores the same inputs unseen.
        for chunk in stride(from: 0, to: Self.texts.count, by: 8) {
            #expect(try Self.score(c, Array(Self.texts[chunk..<min(chunk + 8, Self.texts.count)])).version == 1)
        }
        let seen = try Self.waitFor(c) { $0.evidence.shadowRequests >= Self.texts.count }
        #expect(seen.evidence.disagreements > 0, "the two heads should disagree on some of \(Self.texts.count) inputs")
        let items = try c.call(RolloutDisagreements.self, .init(reviewed: false, requested: true, limit: 100)).get().disagreements
        #expect(!items.isEmpty)
        let costs = items.map(\.expectedCost)
        #expect(costs == costs.sorted(by: >), "listed by what is at stake")
        guard items.count >= 2 else { return }
        for x in items { #expect(x.control.label != x.candidate.label) }

        // Reviews: an unknown intent is refused and changes nothing; a review counts once.
        let first = items[0]
        let unknown = try c.call(RolloutReview.self, .init(disagreement: first.id, label: "no_such_intent"))
        #expect(unknown.error?.code == .invalidParams)
        #expect(try c.call(RolloutStatus.self, .init()).get().evidence.labels == 0)
        for x in items.prefix(2) {
            let r = try c.call(RolloutReview.self, .init(disagreement: x.id, label: x.candidate.label)).get()
            #expect(r.disagreement.labelSource == "review")
        }
        #expect(try c.call(RolloutReview.self, .init(disagreement: first.id, label: first.control.label)).error?.code == .conflict)
        let reviewed = try c.call(RolloutStatus.self, .init()).get()
        #expect(reviewed.evidence.labels == 2)
        #expect((reviewed.evidence.effect ?? 0) > 0, "both reviews side with the candidate")
        #expect(try c.call(RolloutDisagreements.self, .init(reviewed: true)).get().disagreements.count == 2)
        // A sampled occurrence of an input already reviewed counts at once: the test weighs inputs as the traffic does.
        _ = try Self.score(c, [first.text])
        let again = try Self.waitFor(c) { $0.evidence.labels == 3 }
        #expect(again.evidence.labels == 3)
        let row = try c.call(RolloutDisagreements.self, .init(reviewed: true)).get().disagreements.first { $0.id == first.id }
        #expect(row?.counted == 2 && row?.seen == 2, "counted \(row?.counted ?? -1), seen \(row?.seen ?? -1)")

        // robustctl: the live view and the review queue.
        let sock = ["--socket", d.socketPath]
        let (s1, status, e1) = try run(Binaries.robustctl, ["rollout", "status"] + sock)
        #expect(s1 == 0, "\(e1)")
        #expect(status.contains("rollout 1: version 2 against version 1 — shadow") && status.contains("3 reviewed occurrences counted"), "\(status)")
        let (s2, queue, _) = try run(Binaries.robustctl, ["rollout", "review", "--limit", "3"] + sock)
        #expect(s2 == 0 && queue.contains("the test asks a review for"), "\(queue)")
        let (s3, _, e3) = try run(Binaries.robustctl, ["rollout", "review", "\(items[2].id)", "no_such_intent"] + sock)
        #expect(s3 == 1 && e3.contains("not an intent"), "\(e3)")
        #expect(try Self.start(c, settings: ["shadow": ["minLabelz": 3]]).error?.message.contains("minLabelz") == true)

        // Canary, by an operator: half the routing keys get version 2, each always the same one.
        let canary = try c.call(RolloutAdvance.self, .init(reason: "the reviews look right")).get()
        #expect(canary.stage == .canary)
        var versionByKey: [String: Int] = [:]
        var candidateInput: String?
        for k in 0..<40 {
            let key = "user-\(k)"
            let r = try c.call(Score.self, .init(inputs: [.init(id: "k\(k)", text: Self.texts[k])], routingKey: key)).get()
            versionByKey[key] = r.version
            if r.version == 2 && candidateInput == nil { candidateInput = "k\(k)" }
            #expect(try Self.score(c, [Self.texts[k + 1]], routingKey: key).version == r.version, "sticky per routing key")
        }
        let byCandidate = versionByKey.values.filter { $0 == 2 }.count
        #expect(byCandidate > 5 && byCandidate < 35, "about half of 40 keys: \(byCandidate)")
        // A complaint about an answer the candidate served is the candidate arm's.
        if let input = candidateInput {
            #expect(try c.call(FeedbackReport.self, .init(inputId: input, kind: .complaint)).get().version == 2)
        }
        let live = try Self.waitFor(c) { ($0.arms["candidate"]?.requests ?? 0) > 0 }
        let candidateArm = try #require(live.arms["candidate"])
        #expect(candidateArm.failureReports == (candidateInput == nil ? 0 : 1))
        #expect((live.arms["control"]?.requests ?? 0) > 0)
        #expect(candidateArm.version == 2)
        // The complaint's business cost (costs.complaint, 10 by default) per 1,000 of the candidate's requests.
        if candidateInput != nil {
            #expect(abs(candidateArm.reportedCostPer1000 - 10_000 / Double(candidateArm.requests)) < 1e-6)
        }

        // Per-arm figures in metrics/get and in Prometheus, with an arm label.
        #expect((try c.call(MetricsGet.self, .init()).get().values["rollout.arm.candidate.requests"] ?? 0) > 0)
        let text = try c.call(MetricsPrometheus.self).get().text
        #expect(text.contains("robustd_rollout_stage{rollout=\"1\"} 2"), "\(text.suffix(2000))")
        #expect(text.contains("robustd_rollout_requests_total{rollout=\"1\",arm=\"candidate\"}"))
        #expect(text.contains("robustd_rollout_failure_reports_total{rollout=\"1\",arm=\"control\"}"))
        if let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            let (status, out, err) = try run(URL(fileURLWithPath: promtool), ["check", "metrics"], stdin: text)
            #expect(status == 0, "promtool: \(out) \(err)")
        }

        // The watcher heard of the transition, with its evidence.
        let heard = events.first { $0["kind"] == "transition" && $0["stage"] == "canary" }
        #expect(heard?["transition"]?["by"] == "operator" && heard?["evidence"]?["labels"] == 3, "\(events)")

        // kill -9 in canary: the rollout resumes in canary, with its evidence.
        usleep(1_500_000)  // the state is stored at least every second
        kill(d.pid, SIGKILL)
        _ = d.wait()
        d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        c = try d.client()
        let resumed = try Self.waitFor(c) { $0.candidateLoaded }
        #expect(resumed.stage == .canary)
        #expect(resumed.evidence.labels >= 3)
        #expect(resumed.arms["candidate"]?.requests == candidateArm.requests)
        #expect(try Self.score(c, ["my card"], routingKey: versionByKey.first { $0.value == 2 }!.key).version == 2)

        // Promotion by an operator makes version 2 active; the rollout is then over.
        let promoted = try c.call(RolloutAdvance.self, .init()).get()
        #expect(promoted.stage == .promoted)
        #expect(promoted.timeline.map(\.to) == [.shadow, .canary, .promoted])
        #expect(try c.call(ModelVersions.self, .init()).get().active == 2)
        #expect(try Self.score(c, ["my card"]).version == 2)
        #expect(try c.call(RolloutAdvance.self, .init()).error?.code == .conflict)
        #expect(try c.call(RolloutAbort.self, .init()).error?.code == .conflict)
        let all = try c.call(RolloutList.self).get().rollouts
        #expect(all.count == 1 && all.first?.stage == .promoted)
        // robustctl rollout watch ends when the rollout is over (here at once), --json with the final view.
        let (ws, wo, we) = try run(Binaries.robustctl, ["rollout", "watch", "--json", "--socket", d.socketPath])
        #expect(ws == 0, "\(we)")
        #expect((try? JSONParser.parse(wo.trimmingCharacters(in: .whitespacesAndNewlines)))?["stage"] == "promoted", "\(wo)")
        let (ls, lo, _) = try run(Binaries.robustctl, ["rollout", "list", "--socket", d.socketPath])
        #expect(ls == 0 && lo.contains("rollout 1: version 2 against 1, promoted (operator"), "\(lo)")
        // The report's rollout timeline, each stage with its numbers.
        let out = state.path + "/report.html"
        let (rs, _, re) = try run(Binaries.robustctl, ["report", "--out", out, "--socket", d.socketPath])
        #expect(rs == 0, "\(re)")
        let html = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(html.contains("<h2>Rollouts</h2>") && html.contains("version 2 against version 1"))
        #expect(html.contains("the reviews look right") && html.contains("3 reviewed occurrences counted"), "the canary's reason and evidence")
    }

    @Test("a fine-tuned candidate's offline gate decides whether rollout/start needs force")
    func gateOfAFineTune() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        let job = try c.call(FineTuneStart.self, .init(regions: .all, method: .head, epochs: 2, autoPromote: false)).get()
        let done = try FineTuneTests.waitForJob(c, job.id)
        let version = try #require(done.version)
        let gate = try #require(done.result?.gate)
        let started = try c.call(RolloutStart.self, .init(candidate: version))
        if gate.passed {
            #expect(try started.get().stage == .shadow)
        } else {
            #expect(started.error?.message.contains("did not pass its offline gate: failed: ") == true, "\(String(describing: started.error))")
            #expect(gate.reasons.allSatisfy { started.error?.message.contains($0) == true })
            #expect(try c.call(RolloutStart.self, .init(candidate: version, force: true)).get().stage == .shadow)
        }
        // The timeline's first entry says what the offline gate decided.
        let first = try c.call(RolloutStatus.self, .init()).get().timeline.first?.reason ?? ""
        #expect(first.hasPrefix("offline gate: ") && !first.contains("no offline gate report"), "\(first)")
    }

    @Test("abort rolls back at once; a hand activation during a rollout ends it; a candidate damaged across a restart rolls back as a fault")
    func rollbacks() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        var (d, c) = try Self.withCandidate(state: state, model: model)
        _ = try Self.start(c, settings: Self.settings).get()
        let aborted = try c.call(RolloutAbort.self, .init(reason: "changed my mind")).get()
        #expect(aborted.stage == .rolledBack)
        #expect(aborted.timeline.last?.by == "operator")
        #expect(aborted.timeline.last?.reason == "changed my mind")
        #expect(try c.call(ModelVersions.self, .init()).get().active == 1)

        // A second rollout, then version 2 activated by hand: the rollout's control is gone.
        let second = try Self.start(c, settings: Self.settings).get()
        #expect(second.id == 2)
        _ = try c.call(ModelActivate.self, .init(version: 2)).get()
        let ended = try Self.waitFor(c) { $0.stage == .rolledBack }
        #expect(ended.timeline.last?.by == "fault")
        _ = try c.call(ModelActivate.self, .init(version: 1)).get()

        // A third, in shadow; kill -9; the candidate's files damaged; the restart rolls it back.
        _ = try Self.start(c, settings: Self.settings).get()
        kill(d.pid, SIGKILL)
        _ = d.wait()
        let folder = state.path + "/versions/2"
        for f in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where f.hasSuffix(".safetensors") {
            try Data("damaged".utf8).write(to: URL(fileURLWithPath: folder + "/" + f))
        }
        d = try DaemonProcess(extraArgs: ["--model", model.path, "--state-dir", state.path])
        c = try d.client()
        let faulted = try Self.waitFor(c) { $0.stage == .rolledBack }
        #expect(faulted.id == 3)
        #expect(faulted.timeline.last?.by == "fault")
        #expect(faulted.timeline.last?.reason.contains("cannot be loaded") == true)
        #expect(try Self.score(c, ["my card"]).version == 1)
        // Starting a rollout of the damaged candidate is refused with the loader's error; nothing starts.
        let damaged = try Self.start(c)
        #expect(damaged.error?.code == .invalidData && damaged.error?.message.contains("cannot be loaded") == true, "\(String(describing: damaged.error))")
        #expect(try c.call(RolloutStatus.self, .init()).get().id == 3, "the last rollout is still the current one")
    }
}

extension Result where Failure == RPCError {
    var isFailure: Bool { if case .failure = self { return true } else { return false } }
    var error: RPCError? { if case .failure(let e) = self { return e } else { return nil } }
}
