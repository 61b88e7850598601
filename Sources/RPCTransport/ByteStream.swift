import EventLoop

/// What a ``Connection`` reads from and writes to: a libuv stream (socket, pipe, terminal),
/// or a ``MemoryStream`` in tests.
///
/// - Important: Used only on the loop thread.
public protocol ByteStream: AnyObject {
    /// Starts delivering reads; the bytes of `.data` are valid only during the call.
    func startReading(_ callback: @escaping (EventLoop.Stream.ReadEvent) -> Void) throws(UVError)
    func stopReading()
    /// Writes `bytes`, queueing what cannot be written at once.
    func write(_ bytes: [UInt8])
    /// Bytes written but not yet taken by the peer.
    var queuedBytes: Int { get }
    /// Runs `callback` once every queued write has completed (at once if none is queued).
    func whenDrained(_ callback: @escaping () -> Void)
    func onWriteFailure(_ callback: @escaping (UVError) -> Void)
    /// Tells `callback` of every change of ``queuedBytes`` (the difference).
    func onQueuedBytesChange(_ callback: @escaping (Int) -> Void)
    func close(_ callback: (() -> Void)?)
}

extension EventLoop.Stream: ByteStream {}
