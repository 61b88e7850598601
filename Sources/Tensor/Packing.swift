/// Sequences of different lengths packed one after another into `[N, ·]` rows, N = Σ Tᵢ.
///
/// Packing replaces padding: row-wise kernels (linear, layer norm, GELU) never see a pad
/// token, and attention runs per sequence over exactly its own tokens, which is what a
/// padding mask expresses.
public struct Packing: Sendable, Equatable {
    /// Tᵢ for each sequence.
    public let lengths: [Int]
    /// First row of each sequence.
    public let offsets: [Int]
    /// N = Σ Tᵢ.
    public let totalTokens: Int
    /// Offset of each sequence's attention probabilities in a `[Σ NH·Tᵢ²]` cache, per head count 1.
    public let squareOffsets: [Int]
    public let totalSquares: Int

    public init(lengths: [Int]) {
        precondition(lengths.allSatisfy { $0 > 0 }, "every sequence needs at least one token")
        self.lengths = lengths
        var o = 0, q = 0
        var offs: [Int] = [], sq: [Int] = []
        offs.reserveCapacity(lengths.count)
        sq.reserveCapacity(lengths.count)
        for t in lengths {
            offs.append(o); sq.append(q)
            o += t; q += t * t
        }
        offsets = offs
        squareOffsets = sq
        totalTokens = o
        totalSquares = q
    }

    public var count: Int { lengths.count }
    public var maxLength: Int { lengths.max() ?? 0 }
}
