import Scoring

/// Scores by (version, options, text), bounded: two generations, the older dropped whole
/// when the newer fills up. A repeated input costs one hash lookup.
///
/// - Important: Used only on the loop thread.
final class ScoreCache {
    struct Key: Hashable {
        let version: Int
        let options: String
        let text: String
    }
    private var current: [Key: InputScore] = [:]
    private var previous: [Key: InputScore] = [:]
    let capacity: Int
    private(set) var hits = 0, misses = 0

    init(capacity: Int = 100_000) { self.capacity = max(2, capacity) }

    func get(_ k: Key) -> InputScore? {
        if let v = current[k] { hits += 1; return v }
        if let v = previous[k] { hits += 1; put(k, v); return v }
        misses += 1
        return nil
    }

    func put(_ k: Key, _ v: InputScore) {
        if current.count >= capacity / 2 {
            previous = current
            current = [:]
        }
        current[k] = v
    }

    /// Drops everything (a new version was activated).
    func clear() {
        current = [:]
        previous = [:]
    }

    var count: Int { current.count + previous.count }
}
