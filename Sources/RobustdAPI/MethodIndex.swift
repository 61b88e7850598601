import JSONRPC

/// Every method and notification type of the protocol, in one list: what the params fuzz
/// target decodes (docs/reliability.md) and what a test holds against schemas/openrpc.json, so
/// that a method added to one and not the other is caught.
public enum MethodIndex {
    public static let requests: [any RPCRequest.Type] = [
        Initialize.self, Shutdown.self, Discover.self,
        Ping.self, DaemonStatus.self, DaemonFleet.self, Stop.self, DebugSleep.self, DebugEcho.self,
        Score.self, RiskFlag.self, RiskRegions.self, Embed.self, Hover.self,
        FeedbackReport.self, FeedbackList.self,
        ModelFit.self, ModelInfo.self, ModelActivate.self, ModelVersions.self,
        FineTuneStart.self, FineTuneStatus.self, FineTuneList.self, FineTuneCancel.self,
        RolloutStart.self, RolloutStatus.self, RolloutList.self, RolloutAdvance.self, RolloutAbort.self,
        RolloutDisagreements.self, RolloutReview.self,
        MetricsGet.self, MetricsSubscribe.self, MetricsUnsubscribe.self, MetricsPrometheus.self, MetricsHistory.self,
        DatasetImportMethod.self, DatasetList.self, DatasetExamples.self,
        EvalRun.self,
    ]

    public static let notifications: [any RPCNotification.Type] = [
        Initialized.self, Exit.self, CancelRequest.self, Progress.self, LogMessage.self,
        DidOpenTextDocument.self, DidChangeTextDocument.self, DidCloseTextDocument.self, PublishDiagnostics.self,
        FineTuneEvent.self, RolloutEvent.self, MetricsUpdate.self,
    ]
}
