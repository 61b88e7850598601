import CKernels
import Foundation
import Synchronization
import Testing
@testable import Tensor

/// The helper pool behind ``Parallel``: every part runs exactly once, on the caller and the
/// helpers; a caller that finds the pool busy (another thread's job, or a job run from inside
/// a job) still gets every part run, through libdispatch; nothing deadlocks.
@Suite struct ParallelTests {
    final class Counts: @unchecked Sendable {
        let lock = NSLock()
        var hits: [Int: Int] = [:]
        var threads: Set<UInt> = []
        func hit(_ k: Int) {
            lock.lock(); hits[k, default: 0] += 1; threads.insert(UInt(bitPattern: Int(bitPattern: pthread_self()))); lock.unlock()
        }
    }

    @Test func everyPartRunsOnceOnTheCallerAndTheHelpers() {
        let parts = Int(rk_pool_helpers()) + 1
        let c = Counts()
        for _ in 0..<2_000 { Parallel(threads: parts).run { k in c.hit(k) } }
        #expect(c.hits == Dictionary(uniqueKeysWithValues: (0..<parts).map { ($0, 2_000) }))
        // The caller runs parts no helper has claimed (a busy machine may not schedule a helper
        // in time), so concurrency is checked with a part 0 that waits (at most 20 ms) for part 1.
        guard parts > 1 else { return }
        var concurrent = false
        for _ in 0..<100 where !concurrent {
            let started = Atomic<Int>(0)
            let threads = Counts()
            Parallel(threads: 2).run { k in
                threads.hit(k)
                if k == 1 { started.store(1, ordering: .releasing); return }
                let deadline = Date().addingTimeInterval(0.02)
                while started.load(ordering: .acquiring) == 0 && Date() < deadline {}
            }
            concurrent = threads.threads.count == 2
        }
        #expect(concurrent, "part 1 never ran beside part 0 on a helper")
    }

    @Test func concurrentAndNestedCallersFallBackAndFinish() {
        let c = Counts()
        let total = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: 8) { caller in
            for i in 0..<300 {
                Parallel(threads: 2).run { k in
                    c.hit(caller * 1000 + k)
                    // A job run from inside a job finds the pool busy and still runs.
                    if i % 50 == 0 { Parallel(threads: 2).run { _ in total.add(1, ordering: .relaxed) } }
                    total.add(1, ordering: .relaxed)
                }
            }
        }
        #expect(total.load(ordering: .relaxed) == 8 * 300 * 2 + 8 * 6 * 2 * 2)
        for caller in 0..<8 { #expect(c.hits[caller * 1000] == 300 && c.hits[caller * 1000 + 1] == 300) }
    }

    @Test func morePartsThanHelpersStillRunEveryPart() {
        let parts = Int(rk_pool_helpers()) + 3
        let c = Counts()
        Parallel(threads: parts).run { k in c.hit(k) }
        #expect(c.hits.count == parts && c.hits.values.allSatisfy { $0 == 1 })
    }
}
