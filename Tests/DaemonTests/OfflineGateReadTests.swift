import Testing
@testable import Daemon

/// rollout/start reads the offline gate's verdict from the candidate's stored report; reports
/// written by earlier releases lack fields added since and must still gate.
@Suite("The offline gate's verdict in a stored report")
struct OfflineGateReadTests {
    @Test("a passed or failed verdict is read from a report without today's other fields; a fit's report has none")
    func verdicts() {
        // An earlier release's fine-tune report: a gate with only its verdict, no selection, no autoPromote.
        let passed = RolloutService.offlineGate(#"{"training":{"method":"lora"},"gate":{"passed":true,"reasons":[]}}"#)
        #expect(passed.passed && passed.summary == "passed")
        let failed = RolloutService.offlineGate(#"{"gate":{"passed":false,"reasons":["target cost rose","typos"]}}"#)
        #expect(!failed.passed && failed.summary == "failed: target cost rose; typos")
        #expect(RolloutService.offlineGate(#"{"gate":{"passed":false}}"#).summary == "failed")
        let fit = RolloutService.offlineGate(#"{"lambda":0.01,"validationAccuracy":0.9}"#)
        #expect(!fit.passed && fit.summary.contains("no offline gate report"))
        #expect(!RolloutService.offlineGate("not json").passed)
    }
}
