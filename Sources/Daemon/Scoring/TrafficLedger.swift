import EventLoop
import Foundation
import Logging
import Scoring
import Store

/// Scored traffic by hour, version and predicted label, not yet added to the store's hourly
/// counters; flushed every 5 s and at a graceful stop, so a kill -9 loses at most the last
/// 5 s of traffic counts (never an acknowledged report).
///
/// - Important: Used only on the loop thread.
final class TrafficLedger {
    struct Key: Hashable {
        let hour: Int
        let version: Int
        let label: String
    }

    private var pending: [Key: TrafficTotal] = [:]
    private let store: StoreThread
    private let logger: Logger
    private var timer: EventLoop.Timer?

    init(store: StoreThread, loop: Loop, logger: Logger) {
        self.store = store
        self.logger = logger
        let t = try? EventLoop.Timer(loop: loop)
        t?.unref()
        t?.start(timeoutMs: 5000, repeatMs: 5000) { [unowned self] in self.flush() }
        timer = t
    }

    func record(_ scores: [InputScore]) {
        let hour = Int(Date().timeIntervalSince1970 / 3600)
        for s in scores {
            let k = Key(hour: hour, version: s.version, label: s.label)
            pending[k, default: TrafficTotal(count: 0, expectedErrors: 0)].count += 1
            pending[k]!.expectedErrors += s.risk.pWrong
        }
    }

    /// Unflushed traffic per predicted label since an hour.
    func pendingByLabel(sinceHour: Int) -> [String: TrafficTotal] {
        var out: [String: TrafficTotal] = [:]
        for (k, n) in pending where k.hour >= sinceHour {
            out[k.label, default: TrafficTotal(count: 0, expectedErrors: 0)].count += n.count
            out[k.label]!.expectedErrors += n.expectedErrors
        }
        return out
    }

    func flush() {
        guard !pending.isEmpty else { return }
        let counts = pending.map {
            TrafficCount(hour: $0.key.hour, version: $0.key.version, label: $0.key.label, count: $0.value.count, expectedErrors: $0.value.expectedErrors)
        }
        pending.removeAll()
        store.run({ store throws(StoreError) in try store.addTraffic(counts) }, completion: { [weak self, logger] r in
            guard case .failure(let e) = r else { return }
            if e.code == .storeUnavailable, let self {
                // The store is away (nothing was added): keep the deltas for the next flush.
                for c in counts {
                    let k = Key(hour: c.hour, version: c.version, label: c.label)
                    self.pending[k, default: TrafficTotal(count: 0, expectedErrors: 0)].count += c.count
                    self.pending[k]!.expectedErrors += c.expectedErrors
                }
                logger.debug("traffic counters kept for the next flush: the store is unavailable", metadata: ["error": "\(e.message)"])
            } else {
                logger.warning("traffic counters not saved", metadata: ["error": "\(e.message)"])
            }
        })
    }

    func close() {
        flush()
        timer?.close()
        timer = nil
    }
}

/// A bounded map from input ids to what was scored (two generations, like the score cache),
/// so that feedback can name an input by its id.
///
/// - Important: Used only on the loop thread.
final class RecentInputs {
    struct Entry { let text: String; let label: String; let version: Int }
    private var current: [String: Entry] = [:], previous: [String: Entry] = [:]
    let capacity: Int
    init(capacity: Int = 100_000) { self.capacity = max(2, capacity) }
    subscript(id: String) -> Entry? {
        get { current[id] ?? previous[id] }
        set {
            if current.count >= capacity / 2 { previous = current; current = [:] }
            current[id] = newValue
        }
    }
}

/// Vectors of the newest failure cases (at most 5,000), for the "near a known failure" reason.
///
/// - Important: Used only on the loop thread.
final class FailureMemory {
    static let capacity = 5000
    private(set) var vectors: [[Float]] = []

    func remember(_ v: [Float]) {
        vectors.append(v)
        if vectors.count > Self.capacity { vectors.removeFirst(vectors.count - Self.capacity) }
    }

    /// Loads the newest stored failure vectors (start-up), before any remembered since.
    func load(from store: StoreThread) {
        store.run({ store throws(StoreError) -> [[Float]] in
            try store.feedback(FeedbackFilter(limit: FailureMemory.capacity, withVectors: true))
                .filter { $0.kind != "confirmation" && !$0.vector.isEmpty }.map(\.vector)
        }, completion: { [weak self] r in
            guard let self, case .success(let vs) = r else { return }
            self.vectors = Array((vs.reversed() + self.vectors).suffix(Self.capacity))
        })
    }
}

extension String {
    /// A hash that is the same in every process (Swift's hashValue is seeded per process),
    /// so typo variants are reproducible across restarts.
    var hashValueStable: UInt32 {
        var h: UInt32 = 2166136261
        for b in utf8 { h = (h ^ UInt32(b)) &* 16777619 }
        return h
    }
}
