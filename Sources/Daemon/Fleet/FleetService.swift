import EventLoop
import Foundation
import JSONRPC
import Logging
import RobustdAPI
import RPCTransport
import Store
import Synchronization

/// This replica's place in a fleet (docs/fleet.md): its heartbeat in the shared store, the
/// sweep that interrupts the jobs of replicas whose lease expired, the fleet-wide swap of the
/// active version (announced by NOTIFY; caught up from the pointer after a missed one), and
/// `daemon/fleet`. With the embedded SQLite store it knows one replica and does nothing else.
///
/// - Important: Used only on the loop thread (the listener's thread only posts to the loop).
final class FleetService: DaemonService {
    private let config: Configuration
    private let model: ActiveModel
    private let store: StoreThread
    private let repository: VersionRepository
    private let loop: Loop
    private let logger: Logger
    private let startedAt = Date().timeIntervalSince1970
    private var heartbeatTimer: EventLoop.Timer?
    private var listener: FleetListener?
    /// A swap being loaded, and one asked for meanwhile (the latest wins).
    private var loading: Int?
    private var wanted: Int?
    /// Swaps done because another replica moved the pointer.
    private(set) var swaps = 0
    private var alive = 1
    /// Whether the store shares state with other replicas (PostgreSQL).
    var isShared: Bool { store.backend == "postgresql" }
    /// Called when the fleet's rollout may have changed (a notification, every heartbeat).
    var onRolloutChange: (() -> Void)?
    static let heartbeatMs: UInt64 = 2000

    init(config: Configuration, model: ActiveModel, store: StoreThread, repository: VersionRepository, loop: Loop,
         logger: Logger) {
        self.config = config
        self.model = model
        self.store = store
        self.repository = repository
        self.loop = loop
        self.logger = logger
        guard isShared, let url = config.storeURL else { return }
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        t?.start(timeoutMs: Self.heartbeatMs, repeatMs: Self.heartbeatMs) { [unowned self] in self.beat() }
        heartbeatTimer = t
        let me = LoopBound(self, loop: loop)
        listener = FleetListener(url: url, loop: loop) { event in me.value.heard(event) }
        listener?.start()
    }

    func register(on router: Router) {
        router.onDeferred(DaemonFleet.self) { [unowned self] _, ctx in self.fleet(ctx) }
    }

    func gauges(into values: inout [String: Double]) {
        values["store.up"] = store.healthy ? 1 : 0
        values["fleet.replicasAlive"] = Double(alive)
        values["fleet.swaps"] = Double(swaps)
    }

    func stopping() {
        heartbeatTimer?.close()
        heartbeatTimer = nil
        listener?.stop()
        listener = nil
    }

    var status: StoreStatus {
        StoreStatus(backend: isShared ? .postgresql : .sqlite, location: store.location, replica: config.replica, healthy: store.healthy,
                    unhealthySince: store.unhealthySince, lastError: store.healthy ? nil : store.lastError)
    }

    // MARK: Heartbeat, sweep, catch-up

    private func beat() {
        let info = ReplicaInfo(name: config.replica, host: ProcessInfo.processInfo.hostName, pid: Int(getpid()), startedAt: startedAt,
                               seenAt: Date().timeIntervalSince1970, activeVersion: model.version?.id, robustdVersion: RobustdVersion.current)
        store.run({ store throws(StoreError) -> (interrupted: [Int], active: Int?, alive: Int) in
            try store.heartbeat(info)
            let interrupted = try store.interruptOrphanedJobs(now: info.seenAt)
            let lease = (store as? PostgresStore)?.leaseSeconds ?? 15
            let alive = try store.replicas().filter { $0.seenAt >= info.seenAt - lease }.count
            return (interrupted, try store.activeVersion(), alive)
        }, completion: { [weak self] r in
            guard let self, case .success(let s) = r else { return }
            self.alive = s.alive
            if !s.interrupted.isEmpty {
                self.logger.warning("jobs of a replica whose lease expired marked interrupted", metadata: ["jobs": "\(s.interrupted)"])
            }
            // The safety net under NOTIFY: a pointer that moved while this replica missed it.
            if let id = s.active { self.follow(id, reason: "heartbeat") }
            self.onRolloutChange?()
        })
    }

    private func heard(_ event: FleetListener.Event) {
        switch event {
        case .active(let id): follow(id, reason: "notification")
        case .connected:
            logger.info("listening for fleet changes", metadata: ["store": "\(store.location)"])
            // Whatever was announced while not listening: read the pointer.
            store.run({ store throws(StoreError) -> Int? in try store.activeVersion() }, completion: { [weak self] r in
                if case .success(let id?) = r { self?.follow(id, reason: "reconnected") }
            })
        case .lost(let message):
            logger.warning("lost the fleet's notification channel; reconnecting", metadata: ["error": "\(message)"])
        case .rollout: onRolloutChange?()
        case .other: break
        }
    }

    /// Serves `id` if it is not served already: loads its files (from the shared store if this
    /// replica has no copy) and swaps; requests in flight finish on the version they began with.
    private func follow(_ id: Int, reason: String) {
        guard model.encoder != nil, !model.isLoading else { return }
        if model.version?.id == id && loading == nil { return }
        if loading != nil { wanted = id; return }
        if model.version?.id == id { return }
        loading = id
        let started = Date()
        repository.load(id) { [weak self] r in
            guard let self else { return }
            self.loading = nil
            switch r {
            case .success(let loaded):
                let previous = self.model.version?.id
                self.model.activate(loaded.version, layers: loaded.layers)
                self.swaps += 1
                self.logger.info("version activated by the fleet", metadata: [
                    "version": "\(id)", "previous": "\(previous.map(String.init) ?? "-")", "reason": "\(reason)",
                    "seconds": "\(String(format: "%.3f", Date().timeIntervalSince(started)))",
                ])
            case .failure(let e):
                self.logger.error("the fleet's active version cannot be loaded here; still serving the previous one",
                                  metadata: ["version": "\(id)", "error": "\(e.message)"])
            }
            if let next = self.wanted {
                self.wanted = nil
                self.follow(next, reason: reason)
            }
        }
    }

    // MARK: daemon/fleet

    private func fleet(_ ctx: RequestContext) {
        let me = config.replica, lease = config.leaseSeconds
        let status = self.status
        let local = DaemonFleet.Replica(name: me, host: ProcessInfo.processInfo.hostName, pid: Int(getpid()), startedAt: startedAt,
                                        seenAt: Date().timeIntervalSince1970, alive: true, activeVersion: model.version?.id,
                                        robustdVersion: RobustdVersion.current, this: true)
        store.run({ store throws(StoreError) -> ([ReplicaInfo], Int?) in (try store.replicas(), try store.activeVersion()) },
                  completion: { r in
            ctx.reply(r.map { (list, active) in
                let now = Date().timeIntervalSince1970
                var replicas = list.map { x in
                    x.name == me ? local
                        : DaemonFleet.Replica(name: x.name, host: x.host, pid: x.pid, startedAt: x.startedAt, seenAt: x.seenAt,
                                              alive: x.seenAt >= now - lease, activeVersion: x.activeVersion, robustdVersion: x.robustdVersion,
                                              this: false)
                }
                if !replicas.contains(where: \.this) { replicas.append(local) }
                return DaemonFleet.Result(store: status, activeVersion: active, leaseSeconds: lease,
                                          replicas: replicas.sorted { $0.name < $1.name })
            })
        })
    }
}

/// A thread with its own PostgreSQL connection that LISTENs for the fleet's announcements and
/// posts them to the loop; reconnects with backoff, and says when it is (re)connected so the
/// service can catch up from the pointer.
final class FleetListener: @unchecked Sendable {
    enum Event: Sendable {
        case active(Int)
        case rollout
        case connected
        case lost(String)
        case other
    }

    private let url: String
    private let loop: Loop
    private let deliver: @Sendable (Event) -> Void
    private let stopped = Atomic<Bool>(false)
    private let done = DispatchSemaphore(value: 0)
    private var started = false

    init(url: String, loop: Loop, deliver: @escaping @Sendable (Event) -> Void) {
        self.url = url
        self.loop = loop
        self.deliver = deliver
    }

    func start() {
        started = true
        let t = Thread { [self] in self.run(); self.done.signal() }
        t.name = "robustd-fleet-listener"
        t.start()
    }

    /// Stops the thread (within its 250 ms poll) and waits for it.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        if started { done.wait() }
        started = false
    }

    private func post(_ e: Event) {
        let deliver = self.deliver
        loop.post { deliver(e) }
    }

    private func run() {
        var conn: PostgresConnection?
        var backoff = 0.1
        var reportedLoss = false
        while !stopped.load(ordering: .relaxed) {
            if conn == nil {
                do throws(StoreError) {
                    let c = try PostgresConnection(url: url, applicationName: "robustd-listener")
                    try c.query("LISTEN \(PostgresStore.activeChannel)")
                    try c.query("LISTEN \(PostgresStore.rolloutChannel)")
                    conn = c
                    backoff = 0.1
                    reportedLoss = false
                    post(.connected)
                } catch {
                    if !reportedLoss { post(.lost(error.message)); reportedLoss = true }
                    Thread.sleep(forTimeInterval: backoff)
                    backoff = min(backoff * 2, 5)
                    continue
                }
            }
            guard let c = conn else { continue }
            var p = pollfd(fd: c.socket, events: Int16(POLLIN), revents: 0)
            let n = poll(&p, 1, 250)
            guard n > 0 else { continue }
            do throws(StoreError) {
                for note in try c.notifications() {
                    if note.channel == PostgresStore.activeChannel, let id = Int(note.payload) { post(.active(id)) }
                    else if note.channel == PostgresStore.rolloutChannel { post(.rollout) } else { post(.other) }
                }
            } catch {
                c.close()
                conn = nil
                post(.lost(error.message))
                reportedLoss = true
            }
        }
        conn?.close()
    }
}
