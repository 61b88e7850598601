import Foundation
import JSON
import Tensor

/// A safetensors file: its header parsed and validated, its data memory-mapped.
///
/// F32 tensors are viewed in place (zero copy) when aligned; F16 and BF16 are converted to
/// F32 at load. Every problem (truncated file, offsets outside the data, overlapping
/// tensors, a size that does not match dtype × shape) is an error naming the tensor.
public final class SafeTensorsFile: @unchecked Sendable {
    public enum DType: String, Sendable {
        case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL
        var size: Int {
            switch self {
            case .F64, .I64: return 8
            case .F32, .I32: return 4
            case .F16, .BF16, .I16: return 2
            case .I8, .U8, .BOOL: return 1
            }
        }
    }

    public struct Entry: Sendable {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        /// Byte range within the data section.
        public let begin: Int, end: Int
    }

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let base: UnsafeMutableRawPointer
    private let mappedSize: Int
    private let dataStart: Int

    public init(path: String) throws(ModelError) {
        self.path = path
        let file = (path as NSString).lastPathComponent
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ModelError("cannot open: \(String(cString: strerror(errno)))", file: file) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelError("cannot stat: \(String(cString: strerror(errno)))", file: file) }
        let size = Int(st.st_size)
        guard size >= 8 else { throw ModelError("file is \(size) bytes; a safetensors file starts with an 8-byte header size", file: file) }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw ModelError("cannot map: \(String(cString: strerror(errno)))", file: file)
        }
        base = map
        mappedSize = size
        // Reads are by row (an embedding per token) or whole tensors: no read-ahead. (The
        // kernel still maps the neighbouring pages already cached on a fault, 64 KB around.)
        _ = madvise(map, size, MADV_RANDOM)
        do throws(ModelError) {
            // Any 8 bytes can stand here: clamped before it becomes an Int.
            let headerSize = Int(min(map.loadUnaligned(as: UInt64.self).littleEndian, UInt64(Int.max)))
            guard headerSize > 0, headerSize <= size - 8, headerSize <= 100 << 20 else {
                throw ModelError("header size \(headerSize) does not fit a file of \(size) bytes (truncated or not safetensors)", file: file)
            }
            dataStart = 8 + headerSize
            let headerBytes = UnsafeRawBufferPointer(start: map + 8, count: headerSize)
            let header: JSONValue
            do { header = try JSONParser.parse(headerBytes) } catch {
                throw ModelError("header is not valid JSON: \(error)", file: file)
            }
            guard case .object(let o) = header else { throw ModelError("header is not a JSON object", file: file) }
            let dataSize = size - dataStart
            var entries: [String: Entry] = [:]
            var meta: [String: String] = [:]
            for (name, v) in o {
                if name == "__metadata__" {
                    for (k, mv) in v.objectValue ?? [:] { meta[k] = mv.stringValue }
                    continue
                }
                guard let ds = v["dtype"]?.stringValue else { throw ModelError("missing dtype", file: file, tensor: name) }
                guard let dtype = DType(rawValue: ds) else { throw ModelError("unsupported dtype \(ds)", file: file, tensor: name) }
                guard let shapeArr = v["shape"]?.arrayValue else { throw ModelError("missing shape", file: file, tensor: name) }
                let shape = shapeArr.compactMap { $0.intValue.map(Int.init) }
                guard shape.count == shapeArr.count, shape.allSatisfy({ $0 >= 0 }) else {
                    throw ModelError("shape must be non-negative integers", file: file, tensor: name)
                }
                guard let offs = v["data_offsets"]?.arrayValue, offs.count == 2,
                      let b = offs[0].intValue, let e = offs[1].intValue else {
                    throw ModelError("data_offsets must be [begin, end]", file: file, tensor: name)
                }
                let begin = Int(b), end = Int(e)
                guard begin >= 0, begin <= end, end <= dataSize else {
                    throw ModelError("data_offsets [\(begin), \(end)] fall outside the \(dataSize) bytes of data (truncated file?)", file: file, tensor: name)
                }
                // A shape from the file can be any size: its product is checked for overflow.
                var count = 1, overflow = false
                for d in shape + [dtype.size] where !overflow { (count, overflow) = count.multipliedReportingOverflow(by: d) }
                guard !overflow else { throw ModelError("shape \(shape) is too large", file: file, tensor: name) }
                let expected = count
                guard end - begin == expected else {
                    throw ModelError("holds \(end - begin) bytes but \(dtype.rawValue) \(shape) needs \(expected)", file: file, tensor: name)
                }
                entries[name] = Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
            }
            let sorted = entries.values.sorted { $0.begin < $1.begin }
            for (a, b) in zip(sorted, sorted.dropFirst()) where a.end > b.begin {
                throw ModelError("overlaps tensor '\(a.name)'", file: file, tensor: b.name)
            }
            self.entries = entries
            self.metadata = meta
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit { munmap(base, mappedSize) }

    /// Drops the mapping's resident pages (read-only and clean: the next read of a page maps
    /// it again from the page cache). Resident memory then counts only what is read after.
    public func releaseResidentPages() {
        _ = madvise(base, mappedSize, MADV_DONTNEED)
    }

    /// The tensor `name` as F32 with the given shape: a view into the mapping when the data
    /// is F32 and aligned, otherwise a converted copy.
    ///
    /// - Throws: when the tensor is missing, has another shape, or a dtype that is not a float.
    public func tensor(_ name: String, shape expected: [Int]) throws(ModelError) -> Tensor {
        let file = (path as NSString).lastPathComponent
        guard let e = entries[name] else { throw ModelError("missing from the weights", file: file, tensor: name) }
        guard e.shape == expected else {
            throw ModelError("has shape \(e.shape), but the config says \(expected)", file: file, tensor: name)
        }
        let src = base + dataStart + e.begin
        let n = expected.reduce(1, *)
        switch e.dtype {
        case .F32:
            if Int(bitPattern: src) % MemoryLayout<Float>.alignment == 0 {
                return Tensor(viewing: UnsafeMutableRawPointer(mutating: src).assumingMemoryBound(to: Float.self), shape: expected, owner: self)
            }
            let t = Tensor(shape: expected)
            UnsafeMutableRawPointer(t.data).copyMemory(from: src, byteCount: n * 4)
            return t
        case .F16:
            let t = Tensor(shape: expected)
            for i in 0..<n { t.data[i] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
            return t
        case .BF16:
            let t = Tensor(shape: expected)
            for i in 0..<n { t.data[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16) }
            return t
        case .F64:
            let t = Tensor(shape: expected)
            for i in 0..<n { t.data[i] = Float(src.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
            return t
        default:
            throw ModelError("has dtype \(e.dtype.rawValue); a float tensor (F32, F16, BF16) is needed", file: file, tensor: name)
        }
    }
}
