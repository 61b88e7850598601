import Encoder
import Foundation

/// The base encoder in each precision: the base itself, and its twin in another precision,
/// made on first use and kept (every version in that precision shares it).
///
/// Thread-safe, so that a twin is made where the slow work already runs, on the compute pool
/// (reading a version's files, before a fit embeds its data), never on the loop: quantising
/// the six layers of the reference model takes about 0.15 s, a stall for every connection.
/// A caller on the loop that finds no twin yet (a path that did not warm it) makes it there,
/// which is slower but not wrong.
final class EncoderTwins: @unchecked Sendable {
    let base: SentenceEncoder
    private let lock = NSLock()
    // Guarded by `lock`.
    private var twins: [Precision: SentenceEncoder] = [:]

    init(base: SentenceEncoder) { self.base = base }

    /// The base with its products in `precision` (nil: the base's own).
    func encoder(_ precision: Precision?) -> SentenceEncoder {
        guard let precision, precision != base.model.precision else { return base }
        lock.lock()
        defer { lock.unlock() }
        if let t = twins[precision] { return t }
        let t = base.withPrecision(precision)
        twins[precision] = t
        return t
    }

    /// Whether the twin in `precision` exists (or is not needed).
    func isReady(_ precision: Precision?) -> Bool {
        guard let precision, precision != base.model.precision else { return true }
        lock.lock()
        defer { lock.unlock() }
        return twins[precision] != nil
    }
}
