/// A float32 buffer with a row-major shape, written outermost first: `[B, T, H]`.
///
/// Either owns its memory (allocated, zeroed, freed on deinit) or views memory kept alive by
/// `owner` (a memory-mapped weight file). Kernels take tensors and check their shapes.
///
/// - Important: A tensor is shared across threads only while nobody writes to it (weights).
public final class Tensor: @unchecked Sendable {
    public let data: UnsafeMutablePointer<Float>
    public private(set) var shape: [Int]
    public let count: Int
    private let owned: Bool
    private let owner: AnyObject?

    /// A zeroed tensor of this shape.
    public init(shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        self.shape = shape
        count = shape.reduce(1, *)
        data = .allocate(capacity: max(count, 1))
        data.initialize(repeating: 0, count: max(count, 1))
        owned = true
        owner = nil
    }

    /// A tensor filled from `values`.
    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    /// A view of memory that `owner` keeps alive.
    public init(viewing data: UnsafeMutablePointer<Float>, shape: [Int], owner: AnyObject) {
        self.data = data
        self.shape = shape
        count = shape.reduce(1, *)
        owned = false
        self.owner = owner
    }

    deinit { if owned { data.deallocate() } }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }

    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: data, count: count) }

    /// Reinterprets the same memory with another shape of the same element count.
    public func reshape(_ newShape: [Int]) {
        precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
        shape = newShape
    }

    public func zero() { data.update(repeating: 0, count: count) }

    public func copy() -> Tensor {
        let t = Tensor(shape: shape)
        t.data.update(from: data, count: count)
        return t
    }

    /// Traps unless the shape is `expected`, naming the buffer.
    @inline(__always)
    public func check(_ expected: [Int], _ name: StaticString, file: StaticString = #fileID, line: UInt = #line) {
        precondition(shape == expected, "\(name): shape \(shape), expected \(expected)", file: file, line: line)
    }
}
