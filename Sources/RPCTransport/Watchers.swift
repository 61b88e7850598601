import JSONRPC
import Logging

/// The connections that asked to hear about one thing (a fine-tune job, a rollout). A
/// notification is encoded once and its bytes written to each connection still open; a
/// closed connection leaves the set the first time it is passed over.
///
/// - Important: Used only on the loop thread, like the connections it holds.
public struct Watchers {
    private var connections: [Int: Connection] = [:]

    public init() {}

    public var isEmpty: Bool { connections.isEmpty }
    public var count: Int { connections.count }

    /// Adds a connection (once: adding it again changes nothing).
    public mutating func add(_ connection: Connection) { connections[connection.id] = connection }

    public mutating func remove(_ connection: Connection) { connections[connection.id] = nil }

    /// Sends the notification to every open watcher.
    public mutating func notify<N: RPCNotification>(_ type: N.Type, _ params: N.Params) {
        connections = connections.filter { !$0.value.isClosed }
        guard let any = connections.first?.value else { return }
        var body: [UInt8] = []
        body.reserveCapacity(256)
        do { try Message.encodeNotification(method: N.name, params: params, into: &body) } catch {
            any.logger.error("a notification could not be encoded", metadata: ["method": "\(N.name)", "error": "\(error)"])
            return
        }
        for c in connections.values { c.send(encodedNotification: body) }
    }
}
