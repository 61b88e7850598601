import Daemon
import Testing

@Suite("Configuration file parsing")
struct ConfigFileTests {
    @Test("tables, quoted keys, comments, misrouting; defaults stay where nothing is said")
    func parse() throws {
        let c = try ConfigFile.parse("""
            # business costs
            [costs]
            complaint = 12.5   # per report
            escalation = 1_000

            [impact]
            "lost_or_stolen_card" = 5
            card_arrival = 2

            [risk]
            high = 0.6

            [misrouting.lost_or_stolen_card]
            card_arrival = 40
            [model]
            path = "/models/x # not a comment"
            precision = "int8"
            """)
        #expect(c.costs == ["complaint": 12.5, "escalation": 1000])
        #expect(c.impact == ["lost_or_stolen_card": 5, "card_arrival": 2])
        #expect(c.risk.thresholds.high == 0.6)
        #expect(c.risk.thresholds.medium == 0.15)
        #expect(c.misrouting["lost_or_stolen_card"]?["card_arrival"] == 40)
        #expect(c.modelPath == "/models/x # not a comment")
        #expect(c.precision == .int8)
        #expect(try ConfigFile.parse("").precision == nil)
    }

    @Test("[model]: precision is fp32 or int8; other values and unknown keys are named with their line")
    func model() {
        for (text, fragment) in [("[model]\nprecision = \"fp16\"\n", "model.precision must be"), ("[model]\nprecision = 8\n", "model.precision must be"),
                                 ("[model]\nname = \"x\"\n", "unknown key model.name; known: path, precision")] {
            do {
                _ = try ConfigFile.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == 2 && error.message.contains(fragment), "\(error)")
            }
        }
    }

    @Test("[store]: a PostgreSQL URL, the replica's name, the lease; anything else is named")
    func store() throws {
        let c = try ConfigFile.parse("[store]\nurl = \"postgresql://robustd@db/robustd\"\nreplica = \"assistant-1\"\nlease_seconds = 20\n")
        #expect(c.storeURL == "postgresql://robustd@db/robustd" && c.replica == "assistant-1" && c.leaseSeconds == 20)
        #expect(try ConfigFile.parse("").storeURL == nil)
        for (text, fragment) in [("[store]\nurl = \"mysql://x\"\n", "PostgreSQL URL"), ("[store]\nreplica = \"a b\"\n", "replica name"),
                                 ("[store]\nlease_seconds = 1\n", "between 2 and 3600"), ("[store]\nhost = \"x\"\n", "unknown key store.host")] {
            do {
                _ = try ConfigFile.parse(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.line == 2 && error.message.contains(fragment), "\(error)")
            }
        }
    }

    @Test("[finetune]: the gate's settings, with defaults")
    func finetune() throws {
        #expect(ConfigFile().finetune == ConfigFile.FineTuneSettings())
        let c = try ConfigFile.parse("[finetune]\nauto_promote = false\nmin_target_reduction = 0.3\nglobal_tolerance = 0.05\nconfidence = 0.9\n")
        #expect(!c.finetune.autoPromote)
        #expect(c.finetune.minTargetReduction == 0.3 && c.finetune.globalTolerance == 0.05 && c.finetune.confidence == 0.9)
    }

    @Test("every problem names its line", arguments: [
        ("[costs]\nshouting = 3\n", 2, "feedback kind"),
        ("[impact]\nx = -1\n", 2, "≥ 0"),
        ("[impact]\nx = nan\n", 2, "NaN"),
        ("[risk]\nmedium = 0.5\nhigh = 0.2\n", 3, "below"),
        ("[colors]\n", 1, "unknown table"),
        ("[risk]\nlow_confidence = 2\n", 2, "between 0 and 1"),
        ("[impact]\nx = \"big\"\n", 2, "number"),
        ("[impact]\nno equals here\n", 2, "key = value"),
        ("[finetune]\nauto_promote = 1\n", 2, "true or false"),
        ("[finetune]\nconfidence = 0.3\n", 2, "[0.5, 1)"),
        ("[finetune]\nwhatever = 1\n", 2, "known: auto_promote"),
    ])
    func problems(text: String, line: Int, fragment: String) {
        do {
            _ = try ConfigFile.parse(text)
            Issue.record("accepted")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.message.contains(fragment), "\(error)")
        }
    }

    @Test("[rollout]: the rollout's tests, limits and guardrails; bad values and unknown keys are named")
    func rollout() throws {
        let c = try ConfigFile.parse("""
            [rollout]
            false_promotion_rate = 0.01
            canary_share = 0.5
            shadow_min_labels = 30
            canary_max_hours = 2
            latency_p99_ratio = 1.5
            auto_promote = false
            """)
        #expect(c.rollout.falsePromotionRate == 0.01 && c.rollout.canaryShare == 0.5)
        #expect(c.rollout.shadow.minLabels == 30 && c.rollout.canary.maxSeconds == 7200)
        #expect(c.rollout.guardrails.latencyP99Ratio == 1.5 && !c.rollout.autoPromote)
        #expect(c.rollout.falseRollbackRate == 0.05, "defaults stay where nothing is said")
        for (text, needle) in [("canary_share = 1", "strictly between 0 and 1"), ("shadow_min_labels = 2.5", "whole number"),
                               ("complaint_margin = 0.2", "unknown key rollout.complaint_margin"),
                               ("shadow_min_labels = 900", "minLabels ≤ maxLabels")] {
            #expect {
                try ConfigFile.parse("[rollout]\n" + text)
            } throws: { e in
                String(describing: e).contains(needle)
            }
        }
    }

    @Test("a file with CRLF line ends reads as with LF, and its problems name the right line")
    func crlf() throws {
        let c = try ConfigFile.parse("[costs]\r\ncomplaint = 12.5\r\n\r\n[risk]\r\nhigh = 0.6\r\n")
        #expect(c.costs["complaint"] == 12.5)
        #expect(c.risk.thresholds.high == 0.6)
        #expect {
            try ConfigFile.parse("[costs]\r\ncomplaint = 1\r\nbogus = 2\r\n")
        } throws: { e in
            (e as? ConfigFile.Problem)?.line == 3
        }
    }
}
