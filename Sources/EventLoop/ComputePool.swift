import Foundation
import Synchronization

/// A flag that work on another thread checks to stop early.
public final class CancellationToken: Sendable {
    private let flag = Atomic<Bool>(false)
    public init() {}
    public var isCancelled: Bool { flag.load(ordering: .relaxed) }
    public func cancel() { flag.store(true, ordering: .relaxed) }
}

/// Threads that run compute work off the loop and deliver each result back on the loop thread.
///
/// `submit` is called on the loop; the work closure runs on a pool thread; the completion
/// runs on the loop thread with the work's result. Work that was cancelled before it
/// started is not run: its completion gets `nil`.
public final class ComputePool: @unchecked Sendable {
    public let loop: Loop
    public let threadCount: Int
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var queue: [Job] = []
    private var running = 0
    private var stopping = false
    private var threads: [Thread] = []
    private let exited = DispatchGroup()

    struct Job {
        let token: CancellationToken
        let run: @Sendable () -> Void
        let skipped: @Sendable () -> Void
    }

    public init(loop: Loop, threads: Int) {
        self.loop = loop
        self.threadCount = max(1, threads)
        for i in 0..<threadCount {
            exited.enter()
            let t = Thread { [self] in self.workerLoop() }
            t.name = "robustd-compute-\(i)"
            t.stackSize = 8 << 20
            self.threads.append(t)
            t.start()
        }
    }

    /// Jobs waiting for a thread, and jobs running.
    public var depth: (pending: Int, running: Int) {
        condition.lock()
        defer { condition.unlock() }
        return (queue.count, running)
    }

    /// Runs `work` on a pool thread; `completion` gets its result on the loop thread,
    /// or `nil` if the token was cancelled before the work started.
    ///
    /// - Important: Call on the loop thread.
    public func submit<T: Sendable>(token: CancellationToken = CancellationToken(),
                                    work: @escaping @Sendable (CancellationToken) -> T,
                                    completion: @escaping (T?) -> Void) {
        let done = LoopBound(completion, loop: loop)
        let loop = self.loop
        loop.retainWakeup()
        let job = Job(token: token, run: {
            let result = work(token)
            loop.post {
                loop.releaseWakeup()
                done.value(result)
            }
        }, skipped: {
            loop.post {
                loop.releaseWakeup()
                done.value(nil)
            }
        })
        condition.lock()
        queue.append(job)
        condition.signal()
        condition.unlock()
    }

    private func workerLoop() {
        defer { exited.leave() }
        while true {
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if queue.isEmpty && stopping {
                condition.unlock()
                return
            }
            let job = queue.removeFirst()
            running += 1
            condition.unlock()
            if job.token.isCancelled { job.skipped() } else { job.run() }
            condition.lock()
            running -= 1
            condition.unlock()
        }
    }

    /// Lets queued work finish, then joins the threads (waits at most `timeout` seconds).
    public func shutdown(timeout: TimeInterval = 10) {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
        _ = exited.wait(timeout: .now() + timeout)
        threads.removeAll()  // each Thread's closure holds the pool
    }
}
