import Foundation
import Synchronization
import Tensor

/// Runs the encoder on a batch using both cores.
///
/// Two ways to use the cores were measured (docs/performance.md): OpenBLAS's own threads
/// inside each matrix product, or one OpenBLAS thread per worker with the batch split into
/// shares of equal token counts, one per worker. The engine picks per batch: a batch that
/// splits evenly runs split; a single sequence runs with BLAS threads.
///
/// - Important: One caller at a time (the micro-batcher's thread); the engine owns its workspaces.
public final class BatchEngine: @unchecked Sendable {
    public enum Mode: String, Sendable { case blasThreads, splitBatch, auto }

    public let encoder: SentenceEncoder
    public let threads: Int
    public let mode: Mode
    private let workspaces: [Workspace]
    private let lock = NSLock()

    public init(encoder: SentenceEncoder, threads: Int = ProcessInfo.processInfo.activeProcessorCount, mode: Mode = .auto) {
        self.encoder = encoder
        self.threads = max(1, threads)
        self.mode = mode
        workspaces = (0..<max(1, threads)).map { _ in Workspace(config: encoder.config) }
    }

    public var description: String { "\(threads) threads, mode \(mode.rawValue)" }

    /// Sentence vectors of `sequences` into `out` (`[B, H]` with B ≥ sequences.count; rows
    /// beyond are left alone). `override` runs another encoder of the same shape instead (a
    /// version with fine-tuned layers) on this engine's workspaces.
    public func embed(_ sequences: [[Int32]], into out: Tensor, using override: SentenceEncoder? = nil) {
        let encoder = override ?? self.encoder
        precondition(encoder.config.hiddenSize == self.encoder.config.hiddenSize && encoder.config.intermediateSize == self.encoder.config.intermediateSize)
        lock.lock()
        defer { lock.unlock() }
        let B = sequences.count
        guard B > 0 else { return }
        precondition(out.shape[0] >= B && out.shape[1] == encoder.hiddenSize, "out: \(out.shape) for \(B) sequences")
        let split = threads > 1 && B >= 2 * threads && mode != .blasThreads
        if !split {
            BLASThreads.count = min(threads, BLASThreads.limit)
            let view = Tensor(viewing: out.data, shape: [B, encoder.hiddenSize], owner: out)
            encoder.embed(sequences, into: view, workspace: workspaces[0], parallel: Parallel(threads: threads))
            return
        }
        // Split into contiguous shares of about equal token counts.
        BLASThreads.count = 1
        let total = sequences.reduce(0) { $0 + $1.count }
        var bounds = [0]
        var acc = 0
        for (i, s) in sequences.enumerated() {
            acc += s.count
            if bounds.count < threads && acc * threads >= total * bounds.count && i + 1 < B { bounds.append(i + 1) }
        }
        bounds.append(B)
        let H = encoder.hiddenSize
        let shares = bounds.count - 1
        let cuts = bounds
        Parallel(threads: shares).run { k in
            let lo = cuts[k], hi = cuts[k + 1]
            guard hi > lo else { return }
            let view = Tensor(viewing: out.data + lo * H, shape: [hi - lo, H], owner: out)
            encoder.embed(Array(sequences[lo..<hi]), into: view, workspace: workspaces[k])
        }
    }
}
