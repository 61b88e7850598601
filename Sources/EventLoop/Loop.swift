import CLibUV
import Foundation
import Synchronization

/// The libuv loop and the one thread that runs it.
///
/// All handles are created, used and closed on the loop thread. Other threads reach the
/// loop only through ``post(_:)``, which queues a closure and wakes the loop with one
/// `uv_async_t` (sends coalesce, so the callback drains the whole queue).
///
/// - Important: Everything but `post(_:)` and `isOnLoop` must be called on the loop thread.
public final class Loop: @unchecked Sendable {
    public let raw: UnsafeMutablePointer<uv_loop_t>
    private var wakeup: UnsafeMutablePointer<uv_async_t>
    private let posted = Mutex<Posted>(Posted())
    private struct Posted: ~Copyable {
        var jobs: [@Sendable () -> Void] = []
        var closed = false
    }
    private var threadID: pthread_t?
    /// One read buffer for every stream: read callbacks consume their bytes synchronously.
    let readBuffer: UnsafeMutableRawBufferPointer
    private var closed = false

    public init() throws(UVError) {
        raw = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        wakeup.initialize(to: uv_async_t())
        readBuffer = .allocate(byteCount: 64 << 10, alignment: 16)
        try uvCheck(uv_loop_init(raw), "uv_loop_init")
        raw.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        try uvCheck(uv_async_init(raw, wakeup) { async in
            let loop = Unmanaged<Loop>.fromOpaque(async!.pointee.loop.pointee.data).takeUnretainedValue()
            loop.drainPosted()
        }, "uv_async_init")
        // The wake-up handle alone must not keep the loop running.
        uv_unref(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self))
        threadID = pthread_self()
    }

    deinit {
        readBuffer.deallocate()
        raw.deallocate()
        if !closed { wakeup.deallocate() }
    }

    /// Whether the caller is on the loop thread.
    public var isOnLoop: Bool {
        guard let t = threadID else { return false }
        return pthread_equal(t, pthread_self()) != 0
    }

    /// Traps unless on the loop thread. Cheap enough to call at every entry point.
    @inline(__always)
    public func preconditionOnLoop(file: StaticString = #fileID, line: UInt = #line) {
        precondition(isOnLoop, "must run on the event loop thread", file: file, line: line)
    }

    /// Runs the loop on the calling thread until no active handles remain or `stop()` is called.
    public func run() {
        threadID = pthread_self()
        uv_run(raw, UV_RUN_DEFAULT)
    }

    public func stop() { uv_stop(raw) }

    /// Runs one iteration of the loop: waits for an event when `wait` (and something keeps the
    /// loop alive), else polls. Returns whether handles or requests are still active. For tests
    /// that drive the loop step by step on their own thread.
    @discardableResult
    public func runOnce(wait: Bool = true) -> Bool {
        threadID = pthread_self()
        return uv_run(raw, wait ? UV_RUN_ONCE : UV_RUN_NOWAIT) != 0
    }

    /// Monotonic loop time in milliseconds, cached per iteration.
    public var now: UInt64 { uv_now(raw) }

    /// Queues `job` to run on the loop thread. Safe from any thread.
    /// After the loop closed, a post is dropped (a log line from another thread, say).
    public func post(_ job: @escaping @Sendable () -> Void) {
        let wakeup = UnsafeSendable(self.wakeup)
        posted.withLock { q in
            guard !q.closed else { return }
            q.jobs.append(job)
            uv_async_send(wakeup.value)
        }
    }

    /// Work outstanding on other threads that will post back (compute jobs).
    private var outstanding = 0

    /// Keeps the loop alive while work is outstanding elsewhere (a compute job, say).
    /// `uv_ref` is a flag, not a count, so the count is kept here.
    func retainWakeup() {
        outstanding += 1
        if outstanding == 1 { uv_ref(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self)) }
    }

    func releaseWakeup() {
        outstanding -= 1
        if outstanding == 0 { uv_unref(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self)) }
    }

    private func drainPosted() {
        while true {
            let jobs = posted.withLock { q -> [@Sendable () -> Void] in
                let jobs = q.jobs
                q.jobs.removeAll(keepingCapacity: true)
                return jobs
            }
            if jobs.isEmpty { return }
            for job in jobs { job() }
        }
    }

    /// Closes the wake-up handle and every other handle still open, runs the loop until
    /// their close callbacks have fired, then closes the loop. Returns libuv's result of
    /// `uv_loop_close` (0 when nothing was left behind).
    @discardableResult
    public func close() -> Int32 {
        guard !closed else { return 0 }
        closed = true
        drainPosted()
        posted.withLock { $0.closed = true }
        // Close what the owner left open, through its wrapper so that its memory is freed.
        uv_walk(raw, { h, _ in
            guard let h, h.pointee.data != nil, uv_is_closing(h) == 0 else { return }
            Handle.from(h).close()
        }, nil)
        uv_close(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self)) { h in
            h!.withMemoryRebound(to: uv_async_t.self, capacity: 1) { $0.deallocate() }
        }
        uv_run(raw, UV_RUN_DEFAULT)
        return uv_loop_close(raw)
    }
}

/// A value that may be carried across threads but only touched on its loop's thread.
///
/// Lets a closure posted from a worker thread reach loop-confined state; the loop
/// thread check makes the promise a runtime fact.
public struct LoopBound<Value>: @unchecked Sendable {
    private let _value: Value
    public let loop: Loop

    public init(_ value: Value, loop: Loop) {
        loop.preconditionOnLoop()
        _value = value
        self.loop = loop
    }

    public var value: Value {
        loop.preconditionOnLoop()
        return _value
    }
}

/// A pointer handed to a lock's body (uv_async_send is safe from any thread).
private struct UnsafeSendable<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}
