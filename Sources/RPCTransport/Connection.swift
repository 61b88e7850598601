import EventLoop
import JSON
import JSONRPC
import Logging
import RobustdAPI

/// One client: a stdio session or a socket connection.
///
/// Owns its stream, its frame decoder, its session state and its requests in flight.
/// Replies use the framing the client spoke.
///
/// - Important: Used only on the loop thread.
public final class Connection {
    public enum Kind: String, Sendable { case stdio, socket }
    /// Where an LSP-style session is in its life (socket connections start initialized).
    public enum Session: Sendable { case uninitialized, initialized, shutDown }
    enum Outcome { case served, failed, cancelled }

    public let id: Int
    public let kind: Kind
    public unowned let transport: Transport
    let input: ByteStream
    let output: ByteStream
    private var decoder: FrameDecoder
    public var session: Session
    /// Requests in flight. Not retained: the handler's work keeps its context alive, so a
    /// handler that lets go of it without replying is caught (the context answers -32603).
    /// Not a weak reference either, which costs a side-table allocation per request: an entry
    /// is removed before its context can be freed (on its reply, or first thing in its
    /// `deinit`), so every entry refers to a live context.
    private var inFlight: [RequestID: InFlight] = [:]
    private struct InFlight { unowned(unsafe) let context: RequestContext }
    public private(set) var isClosed = false
    /// Set once the peer stopped sending (EOF): close after the last reply is written.
    private var inputEnded = false
    private var framing: FramingStyle { decoder.style ?? .contentLength }
    var logger: Logger { transport.logger }
    /// Pid of the peer (socket), for logs.
    public let peerPid: Int32?
    /// Runs while a socket client's message is half received (`partialMessageTimeoutMs`).
    private var partialTimer: EventLoop.Timer?

    init(id: Int, kind: Kind, input: ByteStream, output: ByteStream, transport: Transport, peerPid: Int32? = nil) {
        self.id = id
        self.kind = kind
        self.input = input
        self.output = output
        self.transport = transport
        self.peerPid = peerPid
        self.decoder = FrameDecoder(style: nil, maxMessageBytes: transport.limits.maxMessageBytes)
        // Socket clients get an implicit initialize, so that a one-line shell call works.
        self.session = kind == .socket ? .initialized : .uninitialized
        output.onWriteFailure { [weak self] error in
            guard let self else { return }
            self.logger.info("write failed; closing", metadata: ["conn": "\(self.id)", "error": "\(error)"])
            self.close(reason: "write failed")
        }
    }

    public var inFlightCount: Int { inFlight.count }
    public var queuedOutputBytes: Int { output.queuedBytes }

    func start() throws(UVError) {
        try input.startReading { [weak self] event in
            // A strong reference for the whole callback: handling an event may close and
            // release this connection.
            guard let self else { return }
            switch event {
            case .data(let bytes): self.received(bytes)
            case .eof:
                self.inputEnded = true
                self.logger.debug("peer closed its end", metadata: ["conn": "\(self.id)"])
                self.transport.inputEnded(self)
                self.closeIfIdle()
            case .error(let e):
                self.logger.debug("read failed; closing", metadata: ["conn": "\(self.id)", "error": "\(e)"])
                self.close(reason: "read failed")
            }
        }
    }

    // MARK: Input

    private func received(_ bytes: UnsafeRawBufferPointer) {
        transport.loop.preconditionOnLoop()
        decoder.feed(bytes)
        while !isClosed, let frame = decoder.next() {
            switch frame {
            case .message(let body):
                handlePayload(Payload.parse(body))
            case .oversized(let size, let limit):
                logger.warning("oversized message skipped", metadata: ["conn": "\(id)", "bytes": "\(size)", "limit": "\(limit)"])
                send(.response(id: nil, result: .failure(.invalidRequest(
                    "message of \(size) bytes exceeds the limit of \(limit) bytes",
                    data: ["size": .int(Int64(size)), "limit": .int(Int64(limit))]))))
            case .badHeader(let why):
                logger.warning("bad header block skipped", metadata: ["conn": "\(id)", "reason": "\(why)"])
                send(.response(id: nil, result: .failure(.parseError("bad header: \(why)"))))
            }
        }
        watchPartialMessage()
    }

    /// A socket client that began a message has `partialMessageTimeoutMs` to finish it; the
    /// clock restarts with each message completed, and stops when nothing is half received.
    private func watchPartialMessage() {
        guard kind == .socket, !isClosed else { return }
        guard decoder.bufferedBytes > 0 else {
            partialTimer?.close()
            partialTimer = nil
            return
        }
        guard partialTimer == nil, let t = try? EventLoop.Timer(loop: transport.loop) else { return }
        partialTimer = t
        let ms = transport.limits.partialMessageTimeoutMs
        t.start(timeoutMs: ms) { [weak self] in
            guard let self, !self.isClosed else { return }
            self.logger.warning("a message was begun and not finished in time; closing", metadata: [
                "conn": "\(self.id)", "bufferedBytes": "\(self.decoder.bufferedBytes)", "timeoutMs": "\(ms)"])
            self.transport.timedOut()
            self.close(reason: "partial message timed out", flush: false)
        }
    }

    private func handlePayload(_ payload: Payload) {
        switch payload {
        case .single(let item):
            handle(item, batch: nil, slot: 0)
        case .batch(let items):
            guard items.count <= transport.limits.maxBatchSize else {
                send(.response(id: nil, result: .failure(.invalidRequest(
                    "a batch of \(items.count) exceeds the limit of \(transport.limits.maxBatchSize)"))))
                return
            }
            let batch = BatchReply(count: items.count, connection: self)
            for (slot, item) in items.enumerated() { handle(item, batch: batch, slot: slot) }
        }
    }

    private func handle(_ item: Result<Message, Message.Invalid>, batch: BatchReply?, slot: Int) {
        func answer(_ id: RequestID?, _ error: RPCError) {
            transport.answeredAtOnce()
            let msg = Message.response(id: id, result: .failure(error))
            if let batch { batch.fill(slot, msg) } else { send(msg) }
        }
        switch item {
        case .failure(let invalid):
            answer(invalid.id, invalid.error)
        case .success(.notification(let method, let params)):
            batch?.skip(slot)
            handleNotification(method, params)
        case .success(.response(let id, _)):
            batch?.skip(slot)
            logger.debug("ignored a response (the daemon sends no requests)", metadata: ["conn": "\(self.id)", "id": "\(id.map { "\($0)" } ?? "null")"])
        case .success(.request(let id, let method, let params)):
            guard let entry = transport.router.requests[method] else {
                answer(id, .methodNotFound(method)); return
            }
            if let refusal = gateRefusal(entry.gate) { answer(id, refusal); return }
            guard inFlight[id] == nil else {
                answer(id, .invalidRequest("id \(id) is already in use by a request in flight")); return
            }
            let limit = transport.limits.maxInFlightPerConnection
            guard inFlight.count < limit else {
                answer(id, RPCError(.busy, "Busy: \(inFlight.count) requests in flight on this connection (limit \(limit))",
                                    data: ["limit": .int(Int64(limit))]))
                return
            }
            let ctx = RequestContext(id: id, method: method, connection: self, batch: batch, batchSlot: slot)
            inFlight[id] = InFlight(context: ctx)
            transport.requestStarted()
            entry.handle(params, ctx)
        }
    }

    private func gateRefusal(_ gate: Router.Gate) -> RPCError? {
        if transport.isStopping && !gate.contains(.whileStopping) {
            return RPCError(.shuttingDown, "Shutting down: the daemon is stopping and takes no new requests")
        }
        switch session {
        case .uninitialized where !gate.contains(.beforeInitialize): return .notInitialized
        case .shutDown where !gate.contains(.afterShutdown):
            return RPCError(.invalidRequest, "Invalid request: this session is shut down; only 'exit' is accepted")
        default: return nil
        }
    }

    private func handleNotification(_ method: String, _ params: JSONValue?) {
        guard let entry = transport.router.notifications[method] else {
            // LSP: notifications starting with "$/" may be ignored; others are logged.
            if !method.hasPrefix("$/") {
                logger.info("unknown notification ignored", metadata: ["conn": "\(id)", "method": "\(method)"])
            }
            return
        }
        if session == .uninitialized && !entry.gate.contains(.beforeInitialize) { return }
        entry.handle(params, self)
    }

    // MARK: Requests

    public func cancel(id: RequestID) {
        inFlight[id]?.context.cancel()
    }

    func requestFinished(id: RequestID, outcome: Outcome) {
        guard forget(id) else { return }
        counted(outcome)
    }

    /// Removes a request's entry; false if it had none (answered, or its connection closed).
    func forget(_ id: RequestID) -> Bool { inFlight.removeValue(forKey: id) != nil }

    /// Counts a request whose entry `forget` removed.
    func counted(_ outcome: Outcome) {
        transport.requestFinished(outcome)
        closeIfIdle()
    }

    // MARK: Output

    /// Sends one message in this connection's framing.
    public func send(_ message: Message) {
        guard !isClosed else { return }
        var body: [UInt8] = []
        body.reserveCapacity(128)
        message.encode(into: &body)
        write(body)
    }

    /// Sends one message already encoded.
    func sendEncoded(_ body: consuming [UInt8]) {
        guard !isClosed else { return }
        write(body)
    }

    func sendBatch(_ messages: [[UInt8]]) {
        guard !isClosed else { return }
        var body: [UInt8] = [UInt8(ascii: "[")]
        for (i, m) in messages.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            body.append(contentsOf: m)
        }
        body.append(UInt8(ascii: "]"))
        write(body)
    }

    /// Sends a notification, its params encoded straight into the bytes.
    public func notify<N: RPCNotification>(_ type: N.Type, _ params: N.Params) {
        guard !isClosed else { return }
        var body: [UInt8] = []
        body.reserveCapacity(128)
        do { try Message.encodeNotification(method: N.name, params: params, into: &body) } catch {
            logger.error("a notification could not be encoded", metadata: ["method": "\(N.name)", "error": "\(error)"])
            return
        }
        write(body)
    }

    /// Sends a notification already encoded (by `Watchers`, once for all its connections).
    func send(encodedNotification body: [UInt8]) {
        guard !isClosed else { return }
        write(body)
    }

    private func write(_ body: consuming [UInt8]) {
        if framing == .ndjson {
            // The body is ours: the newline goes on its end, no second buffer.
            var line = body
            line.append(0x0a)
            output.write(line)
        } else {
            output.write(framing.frame(body))
        }
        if output.queuedBytes > transport.limits.maxQueuedOutputBytes {
            logger.warning("client is not reading its replies; disconnecting",
                           metadata: ["conn": "\(id)", "queuedBytes": "\(output.queuedBytes)", "limit": "\(transport.limits.maxQueuedOutputBytes)"])
            transport.dropped(self)
            close(reason: "output queue over limit", flush: false)
        }
    }

    // MARK: Closing

    private func closeIfIdle() {
        if inputEnded && inFlight.isEmpty { close(reason: "peer closed") }
    }

    /// Closes the connection. In-flight work is cancelled and its replies dropped.
    /// With `flush`, queued replies are written first.
    public func close(reason: String, flush: Bool = true) {
        guard !isClosed else { return }
        isClosed = true
        partialTimer?.close()
        partialTimer = nil
        let pending = inFlight.values
        inFlight.removeAll()
        for entry in pending {
            entry.context.abandon()
            transport.requestFinished(.cancelled)
        }
        input.stopReading()
        let finish = { [transport, input, output] in
            input.close(nil)
            if output !== input { output.close(nil) }
            transport.closed(self)
        }
        if flush { output.whenDrained(finish) } else { finish() }
        logger.debug("connection closed", metadata: ["conn": "\(id)", "reason": "\(reason)"])
    }
}
