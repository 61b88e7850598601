import EventLoop
import Logging
import RPCTransport

/// The graceful stop: no new connections or requests; requests in flight get up to the
/// grace period to finish; queued replies are flushed (bounded by 2 s for clients that never
/// read); then the services close and the loop ends.
///
/// - Important: Used only on the loop thread.
final class GracefulStop {
    private let loop: Loop
    private let transport: Transport
    private let graceMs: UInt64
    private let logger: Logger
    private(set) var isStopping = false
    private(set) var exitCode: Int32 = 0
    private var finishing = false
    private var closed = false
    private var timer: EventLoop.Timer?
    /// Runs when the stop begins (close listeners, tell services to start nothing new).
    var onBegin: () -> Void = {}
    /// Runs once every connection is closed (close the services and their timers).
    var onQuiesced: () -> Void = {}

    init(loop: Loop, transport: Transport, graceMs: UInt64, logger: Logger) {
        self.loop = loop
        self.transport = transport
        self.graceMs = graceMs
        self.logger = logger
    }

    /// Begins stopping (once; later calls are ignored).
    func begin(exitCode code: Int32) {
        loop.preconditionOnLoop()
        guard !isStopping else { return }
        isStopping = true
        transport.isStopping = true
        exitCode = code
        onBegin()
        let inFlight = transport.counters.inFlight
        if inFlight == 0 { finish(); return }
        logger.info("waiting for requests in flight", metadata: ["inFlight": "\(inFlight)", "graceMs": "\(graceMs)"])
        let t = try? EventLoop.Timer(loop: loop)
        t?.start(timeoutMs: graceMs) { [unowned self] in
            self.logger.warning("grace period over; cancelling requests in flight", metadata: ["inFlight": "\(self.transport.counters.inFlight)"])
            self.finish()
        }
        timer = t
    }

    /// The transport has no request in flight any more.
    func becameIdle() {
        if isStopping { finish() }
    }

    /// A connection closed.
    func connectionClosed() {
        if isStopping && transport.connections.isEmpty { quiesce() }
    }

    private func finish() {
        guard !finishing else { return }
        finishing = true
        timer?.close()
        timer = nil
        transport.closeAll(reason: "daemon stopping")
        if transport.connections.isEmpty { quiesce(); return }
        // A client that never reads must not hold the daemon up: force the end.
        let force = try? EventLoop.Timer(loop: loop)
        force?.start(timeoutMs: 2000) { [unowned self] in self.transport.closeAll(reason: "flush timed out", flush: false) }
        timer = force
    }

    private func quiesce() {
        guard !closed else { return }
        closed = true
        timer?.close()
        timer = nil
        onQuiesced()
    }
}
