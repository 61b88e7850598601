import CLibUV

/// Base of every libuv handle wrapper.
///
/// The wrapper owns the C handle's memory and keeps itself alive (one retain) from `init`
/// until libuv's close callback, the only place where that memory is freed, as libuv's design
/// requires. Call ``close(_:)`` exactly once; it is idempotent.
///
/// - Important: Use only on the loop thread.
public class Handle {
    public let loop: Loop
    let raw: UnsafeMutableRawPointer
    public private(set) var isClosing = false
    private var onClose: (() -> Void)?

    var handle: UnsafeMutablePointer<uv_handle_t> { raw.assumingMemoryBound(to: uv_handle_t.self) }

    init(loop: Loop, type: uv_handle_type) {
        loop.preconditionOnLoop()
        self.loop = loop
        raw = .allocate(byteCount: uv_handle_size(type), alignment: 16)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: uv_handle_size(type))
    }

    /// Called by subclasses once `uv_*_init` succeeded: from here on the handle holds itself.
    func didInit() {
        handle.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    /// Frees memory of a handle whose init failed (no close callback will come).
    func failedInit() {
        raw.deallocate()
    }

    static func from(_ h: UnsafeMutablePointer<uv_handle_t>?) -> Handle {
        Unmanaged<Handle>.fromOpaque(h!.pointee.data).takeUnretainedValue()
    }

    /// Closes the handle; `callback` runs once libuv has released it.
    public func close(_ callback: (() -> Void)? = nil) {
        guard !isClosing else { return }
        isClosing = true
        onClose = callback
        willClose()
        uv_close(handle) { h in
            let me = Unmanaged<Handle>.fromOpaque(h!.pointee.data)
            let handle = me.takeUnretainedValue()
            let cb = handle.onClose
            handle.onClose = nil
            handle.didClose()
            handle.raw.deallocate()
            me.release()
            cb?()
        }
    }

    /// Subclass hook: drop callbacks that capture state, so cycles break at close.
    func willClose() {}
    func didClose() {}

    /// Whether the handle keeps the loop alive.
    public func ref() { uv_ref(handle) }
    public func unref() { uv_unref(handle) }

    public var isActive: Bool { uv_is_active(handle) != 0 }
}

/// A one-shot or repeating timer.
public final class Timer: Handle {
    private var callback: (() -> Void)?

    public init(loop: Loop) throws(UVError) {
        super.init(loop: loop, type: UV_TIMER)
        let r = uv_timer_init(loop.raw, raw.assumingMemoryBound(to: uv_timer_t.self))
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_timer_init") }
        didInit()
    }

    /// Fires `callback` after `timeoutMs`, then every `repeatMs` if non-zero.
    public func start(timeoutMs: UInt64, repeatMs: UInt64 = 0, _ callback: @escaping () -> Void) {
        self.callback = callback
        uv_timer_start(raw.assumingMemoryBound(to: uv_timer_t.self), { t in
            let me = Handle.from(UnsafeMutableRawPointer(t!).assumingMemoryBound(to: uv_handle_t.self)) as! Timer
            me.callback?()
        }, timeoutMs, repeatMs)
    }

    public func stop() { uv_timer_stop(raw.assumingMemoryBound(to: uv_timer_t.self)) }

    override func willClose() { callback = nil }
}

/// Watches one signal on the loop (SIGTERM, SIGINT, …).
public final class SignalWatcher: Handle {
    private var callback: ((Int32) -> Void)?

    public init(loop: Loop) throws(UVError) {
        super.init(loop: loop, type: UV_SIGNAL)
        let r = uv_signal_init(loop.raw, raw.assumingMemoryBound(to: uv_signal_t.self))
        if r < 0 { failedInit(); throw UVError(code: r, function: "uv_signal_init") }
        didInit()
    }

    public func start(signal: Int32, _ callback: @escaping (Int32) -> Void) throws(UVError) {
        self.callback = callback
        try uvCheck(uv_signal_start(raw.assumingMemoryBound(to: uv_signal_t.self), { s, signum in
            let me = Handle.from(UnsafeMutableRawPointer(s!).assumingMemoryBound(to: uv_handle_t.self)) as! SignalWatcher
            me.callback?(signum)
        }, signal), "uv_signal_start")
    }

    override func willClose() { callback = nil }
}
