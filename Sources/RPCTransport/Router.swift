import JSON
import JSONRPC
import Logging

/// The method registry: one entry per method name, derived from the method types.
///
/// Each registration decodes the params into the method's `Params` type (a mismatch
/// answers -32602 naming the field), calls the handler, and encodes its `Result`.
/// Nothing downstream switches on method strings.
///
/// - Important: Used only on the loop thread.
public final class Router {
    /// When a method may run in a session's life.
    public struct Gate: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Allowed before `initialize` on stdio.
        public static let beforeInitialize = Gate(rawValue: 1)
        /// Allowed after `shutdown`.
        public static let afterShutdown = Gate(rawValue: 2)
        /// Allowed while the daemon is stopping.
        public static let whileStopping = Gate(rawValue: 4)
    }

    struct RequestEntry {
        let gate: Gate
        let handle: (JSONValue?, RequestContext) -> Void
    }

    struct NotificationEntry {
        let gate: Gate
        let handle: (JSONValue?, Connection) -> Void
    }

    private(set) var requests: [String: RequestEntry] = [:]
    private(set) var notifications: [String: NotificationEntry] = [:]

    public init() {}

    /// Every registered method name (requests and notifications), sorted.
    public var methodNames: [String] { (Array(requests.keys) + Array(notifications.keys)).sorted() }

    /// Registers a handler that answers at once, on the loop thread.
    public func on<M: RPCRequest>(_ method: M.Type, gate: Gate = [],
                                  _ body: @escaping (M.Params, RequestContext) throws(RPCError) -> M.Result) {
        onDeferred(method, gate: gate) { params, ctx in
            do throws(RPCError) {
                ctx.reply(try body(params, ctx))
            } catch {
                ctx.reply(Result<JSONValue, RPCError>.failure(error))
            }
        }
    }

    /// Registers a handler that answers later, through `ctx.reply` (once).
    public func onDeferred<M: RPCRequest>(_ method: M.Type, gate: Gate = [],
                                          _ body: @escaping (M.Params, RequestContext) -> Void) {
        precondition(requests[M.name] == nil && notifications[M.name] == nil, "\(M.name) registered twice")
        // Methods without params, called without them (ping, status): nothing to decode.
        let none = EmptyParams() as? M.Params
        requests[M.name] = RequestEntry(gate: gate) { raw, ctx in
            ctx.loop.preconditionOnLoop()
            let params: M.Params
            do throws(RPCError) {
                if raw == nil, let none { params = none } else {
                    params = try (raw ?? .object([:])).decodeParams(M.Params.self)
                }
            } catch {
                ctx.reply(.failure(error))
                return
            }
            body(params, ctx)
        }
    }

    /// Registers a notification handler. Notifications whose params do not decode are dropped
    /// (there is no one to answer) and logged.
    public func onNotification<N: RPCNotification>(_ notification: N.Type, gate: Gate = [],
                                       _ body: @escaping (N.Params, Connection) -> Void) {
        precondition(requests[N.name] == nil && notifications[N.name] == nil, "\(N.name) registered twice")
        notifications[N.name] = NotificationEntry(gate: gate) { raw, conn in
            do throws(RPCError) {
                body(try (raw ?? .object([:])).decodeParams(N.Params.self), conn)
            } catch {
                conn.transport.logger.warning("dropped notification with bad params",
                                           metadata: ["method": "\(N.name)", "error": "\(error.message)", "conn": "\(conn.id)"])
            }
        }
    }
}
