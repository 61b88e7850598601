/// A seeded, per-class split: about `fraction` of each class with at least 2 items goes to the
/// second part (at least one), the rest to the first; classes in sorted order, so the same
/// seed gives the same split everywhere (model/fit, fine-tune jobs, the benchmarks).
public func stratifiedSplit<T>(_ items: [T], label: (T) -> String, fraction: Double, seed: UInt64) -> (rest: [T], heldOut: [T]) {
    var byLabel: [String: [T]] = [:]
    for x in items { byLabel[label(x), default: []].append(x) }
    var rng = SeededRandom(seed: seed)
    var rest: [T] = [], held: [T] = []
    for l in byLabel.keys.sorted() {
        var xs = byLabel[l]!
        xs.shuffle(using: &rng)
        let n = xs.count >= 2 ? max(1, Int((Double(xs.count) * fraction).rounded())) : 0
        held.append(contentsOf: xs.prefix(n))
        rest.append(contentsOf: xs.dropFirst(n))
    }
    return (rest, held)
}
