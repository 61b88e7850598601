import EventLoop
import Glibc
import JSON
import JSONRPC
import RobustdAPI

/// One request in flight: where its answer goes, and its cancellation token.
///
/// Every request gets exactly one reply. `reply` after the first (a late result of cancelled
/// work, say) is ignored; a context dropped without a reply answers -32603 and is logged.
///
/// - Important: Used only on the loop thread.
public final class RequestContext {
    public let id: RequestID
    public let method: String
    /// Made the first time it is asked for: most requests (ping, status, score) never are.
    public private(set) lazy var token = CancellationToken()
    public let connection: Connection
    let batch: BatchReply?
    let batchSlot: Int
    let startedNs: UInt64
    public private(set) var hasReplied = false

    init(id: RequestID, method: String, connection: Connection, batch: BatchReply?, batchSlot: Int) {
        self.id = id
        self.method = method
        self.connection = connection
        self.batch = batch
        self.batchSlot = batchSlot
        self.startedNs = DispatchTimeNanos.now()
    }

    deinit {
        guard !hasReplied else { return }
        hasReplied = true
        // First of all, the connection lets go of this context (it holds it unretained).
        let known = connection.forget(id)
        connection.transport.logger.error("request dropped without a reply", metadata: ["method": "\(method)", "id": "\(id)"])
        let msg = Message.response(id: id, result: .failure(.internalError("the handler for \(method) did not reply"))).bytes
        if let batch { batch.fill(batchSlot, msg) } else { connection.sendEncoded(msg) }
        if known { connection.counted(.failed) }
    }

    public var transport: Transport { connection.transport }
    public var loop: Loop { connection.transport.loop }
    public var isCancelled: Bool { token.isCancelled }

    /// Sends the answer (once).
    public func reply(_ result: Result<JSONValue, RPCError>) {
        switch result {
        case .success(let v): reply(v)
        case .failure(let e): fail(e)
        }
    }

    /// Answers with an error (once).
    private func fail(_ e: RPCError) {
        connection.transport.loop.preconditionOnLoop()
        guard !hasReplied else { return }
        finish(Message.response(id: id, result: .failure(e)).bytes, outcome: e.code == .requestCancelled ? .cancelled : .failed)
    }

    private func finish(_ bytes: consuming [UInt8], outcome: Connection.Outcome) {
        hasReplied = true
        if let batch { batch.fill(batchSlot, bytes) } else { connection.sendEncoded(bytes) }
        connection.requestFinished(id: id, outcome: outcome)
    }

    /// Sends a typed result or an error (once).
    public func reply<T: Encodable>(_ result: Result<T, RPCError>) {
        switch result {
        case .success(let v): reply(v)
        case .failure(let e): fail(e)
        }
    }

    /// Sends the result (once), encoded straight into the reply's bytes.
    public func reply<T: Encodable>(_ value: T) {
        connection.transport.loop.preconditionOnLoop()
        guard !hasReplied else { return }
        var out: [UInt8] = []
        // Room for most results and the frame's newline, so the bytes are written as they are.
        out.reserveCapacity(1024)
        do {
            try Message.encodeResponse(id: id, result: value, into: &out)
        } catch {
            fail(.internalError("could not encode \(T.self): \(error)"))
            return
        }
        finish(out, outcome: .served)
    }

    /// The connection went away: stop the work, send nothing.
    func abandon() {
        token.cancel()
        hasReplied = true
    }

    /// Cancels the work and answers -32800 now.
    func cancel() {
        token.cancel()
        reply(.failure(.cancelled))
    }

    /// Runs `work` on the compute pool and answers with its result, unless cancelled first.
    public func compute<T: Encodable & Sendable>(_ work: @escaping @Sendable (CancellationToken) throws(RPCError) -> T) {
        transport.compute.submit(token: token, work: { token -> Result<T, RPCError> in
            do throws(RPCError) { return .success(try work(token)) } catch { return .failure(error) }
        }, completion: { [self] result in
            switch result {
            case nil: reply(.failure(.cancelled))
            case .success(let v)?: reply(v)
            case .failure(let e)?: reply(.failure(e))
            }
        })
    }

    /// Runs `work` on the compute pool, then `then` on the loop with its value; an error or a
    /// cancellation is answered here, so `then` runs only on success (and must reply).
    public func compute<T: Sendable>(_ work: @escaping @Sendable (CancellationToken) throws(RPCError) -> T,
                                     then: @escaping (T) -> Void) {
        transport.compute.submit(token: token, work: { token -> Result<T, RPCError> in
            do throws(RPCError) { return .success(try work(token)) } catch { return .failure(error) }
        }, completion: { [self] result in
            switch result {
            case nil: reply(.failure(.cancelled))
            case .success(let v)?: if !hasReplied { then(v) }
            case .failure(let e)?: reply(.failure(e))
            }
        })
    }

    /// A reporter for work-done progress under the client's token, if it gave one.
    public func progress(token: RequestID?) -> WorkDoneProgress? {
        token.map { WorkDoneProgress(token: $0, connection: connection) }
    }
}

/// Sends `$/progress` begin / report / end for one token.
///
/// - Important: Used only on the loop thread.
public final class WorkDoneProgress {
    public let token: RequestID
    let connection: Connection
    private var ended = false

    init(token: RequestID, connection: Connection) {
        self.token = token
        self.connection = connection
    }

    public func begin(title: String, message: String? = nil, cancellable: Bool = true) {
        send(.init(kind: .begin, title: title, message: message, percentage: 0, cancellable: cancellable))
    }

    public func report(message: String? = nil, percentage: Int? = nil) {
        send(.init(kind: .report, message: message, percentage: percentage.map { min(100, max(0, $0)) }))
    }

    public func end(message: String? = nil) {
        guard !ended else { return }
        ended = true
        send(.init(kind: .end, message: message))
    }

    private func send(_ value: Progress.Value) {
        connection.notify(Progress.self, Progress.Params(token: token, value: value))
    }
}

/// Collects the answers of one batch and sends them together, as JSON-RPC asks.
final class BatchReply {
    private var slots: [[UInt8]?]
    private var remaining: Int
    let connection: Connection

    init(count: Int, connection: Connection) {
        slots = Array(repeating: nil, count: count)
        remaining = count
        self.connection = connection
    }

    /// Marks a slot that gets no answer (a notification).
    func skip(_ slot: Int) { finishOne() }

    /// An answer, already encoded.
    func fill(_ slot: Int, _ message: [UInt8]) {
        slots[slot] = message
        finishOne()
    }

    func fill(_ slot: Int, _ message: Message) { fill(slot, message.bytes) }

    private func finishOne() {
        remaining -= 1
        guard remaining == 0 else { return }
        let answers = slots.compactMap { $0 }
        if !answers.isEmpty { connection.sendBatch(answers) }
    }
}

public enum DispatchTimeNanos {
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
