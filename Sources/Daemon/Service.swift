import JSONRPC
import RobustdAPI
import RPCTransport

/// One capability of the daemon: it owns its state, registers its methods, and is told
/// when the daemon stops.
///
/// A service gets what it needs at construction (the active model, the risk policy, the
/// store, the compute pool, other services it calls); it never reaches through a shared
/// object. Every method it registers runs on the loop thread (the router asserts it).
protocol DaemonService: AnyObject {
    /// Registers the service's methods.
    func register(on router: Router)
    /// The daemon began to stop: start no new work.
    func stopping()
    /// The daemon is closing (requests are answered, connections closed): stop timers,
    /// flush what is pending. Called in the reverse order of composition.
    func close()
    /// A connection went away: forget what the service held for it.
    func connectionClosed(_ connection: Connection)
    /// The service's gauges for metrics/get and Prometheus (name → value).
    func gauges(into values: inout [String: Double])
}

extension DaemonService {
    func stopping() {}
    func close() {}
    func connectionClosed(_ connection: Connection) {}
    func gauges(into values: inout [String: Double]) {}
}

/// Errors more than one service answers with.
enum DaemonError {
    static let noModel = RPCError(.noModel, "No model loaded: start robustd with --model PATH (scripts/fetch-model fetches the reference model)")
    static let noVersion = RPCError(.noVersion, "No active version: fit one with model/fit {dataset} (or activate one)")
    static func stillLoading(seconds: Double) -> RPCError {
        RPCError(.noVersion, "The active version is still loading after \(Int(seconds)) s; try again shortly (the log says why it is slow)")
    }
}
