import EventLoop

/// An in-memory ``ByteStream``: the test writes what the client sends with ``feed(_:)`` and
/// reads what the daemon answered with ``takeOutput()``; no socket, no process.
///
/// A stalled peer is simulated with ``isStalled``: writes then stay queued (counted in
/// ``queuedBytes``) until ``drain()``.
///
/// - Important: Used only on the loop thread (the test's).
public final class MemoryStream: ByteStream {
    private var onRead: ((EventLoop.Stream.ReadEvent) -> Void)?
    private var onDrain: (() -> Void)?
    private var onQueueChange: ((Int) -> Void)?
    private var output: [UInt8] = []
    private var queued: [UInt8] = []
    public private(set) var isReading = false
    public private(set) var isClosed = false
    /// While true, writes are queued instead of delivered.
    public var isStalled = false

    public init() {}

    // MARK: The test's side

    /// Delivers `bytes` to the reader as one read.
    public func feed(_ bytes: [UInt8]) {
        guard isReading, !isClosed else { return }
        bytes.withUnsafeBytes { onRead?(.data($0)) }
    }

    public func feed(_ text: String) { feed(Array(text.utf8)) }

    /// The peer closes its end (EOF).
    public func end() {
        guard isReading, !isClosed else { return }
        isReading = false
        onRead?(.eof)
    }

    /// Everything written so far (and not yet taken), as delivered to the peer.
    public func takeOutput() -> [UInt8] {
        defer { output.removeAll() }
        return output
    }

    /// Delivers the queued writes and runs the drain callback.
    public func drain() {
        isStalled = false
        guard !queued.isEmpty else { return }
        output += queued
        onQueueChange?(-queued.count)
        queued.removeAll()
        if let cb = onDrain { onDrain = nil; cb() }
    }

    // MARK: ByteStream

    public func startReading(_ callback: @escaping (EventLoop.Stream.ReadEvent) -> Void) throws(UVError) {
        onRead = callback
        isReading = !isClosed
    }

    public func stopReading() { isReading = false }

    public func write(_ bytes: [UInt8]) {
        guard !isClosed, !bytes.isEmpty else { return }
        if isStalled || !queued.isEmpty {
            queued += bytes
            onQueueChange?(bytes.count)
        } else {
            output += bytes
        }
    }

    public var queuedBytes: Int { queued.count }

    public func whenDrained(_ callback: @escaping () -> Void) {
        if queued.isEmpty { callback() } else { onDrain = callback }
    }

    public func onWriteFailure(_ callback: @escaping (UVError) -> Void) {}

    public func onQueuedBytesChange(_ callback: @escaping (Int) -> Void) { onQueueChange = callback }

    public func close(_ callback: (() -> Void)?) {
        guard !isClosed else { return }
        isClosed = true
        isReading = false
        onRead = nil
        if !queued.isEmpty { onQueueChange?(-queued.count); queued.removeAll() }
        onQueueChange = nil
        if let cb = onDrain { onDrain = nil; cb() }
        callback?()
    }
}
