import Foundation
import JSON
import Tensor

/// Writes tensors as a safetensors file (F32, or F16/BF16 for tests of the converters),
/// atomically: a temporary file in the same folder, fsync, then rename.
public enum SafeTensorsWriter {
    public enum DType: String { case F32, F16, BF16 }

    public static func write(_ tensors: [(String, Tensor)], to path: String, dtype: DType = .F32,
                             metadata: [String: String] = [:]) throws {
        var header: [String: JSONValue] = [:]
        if !metadata.isEmpty { header["__metadata__"] = .object(metadata.mapValues { .string($0) }) }
        var offset = 0
        let size = dtype == .F32 ? 4 : 2
        for (name, t) in tensors {
            header[name] = ["dtype": .string(dtype.rawValue), "shape": .array(t.shape.map { .int(Int64($0)) }),
                            "data_offsets": [.int(Int64(offset)), .int(Int64(offset + t.count * size))]]
            offset += t.count * size
        }
        var headerBytes = JSONWriter.bytes(.object(header))
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }  // pad so data is aligned
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for (_, t) in tensors {
            switch dtype {
            case .F32:
                out.append(contentsOf: UnsafeRawBufferPointer(start: t.data, count: t.count * 4))
            case .F16:
                for i in 0..<t.count { withUnsafeBytes(of: Float16(t[i]).bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            case .BF16:
                for i in 0..<t.count {
                    let bits = t[i].bitPattern
                    let rounded = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
                    withUnsafeBytes(of: rounded.littleEndian) { out.append(contentsOf: $0) }
                }
            }
        }
        try AtomicFile.write(out, to: path)
    }
}

/// Writes a file so that a crash leaves either the old file or the new one, never a mix.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ModelError("cannot create: \(String(cString: strerror(errno)))", file: tmp) }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = String(cString: strerror(errno))
                close(fd); unlink(tmp)
                throw ModelError("write failed: \(e)", file: tmp)
            }
            off += n
        }
        guard fsync(fd) == 0 else {
            let e = String(cString: strerror(errno))
            close(fd); unlink(tmp)
            throw ModelError("fsync failed: \(e)", file: tmp)
        }
        close(fd)
        guard rename(tmp, path) == 0 else {
            let e = String(cString: strerror(errno))
            unlink(tmp)
            throw ModelError("rename failed: \(e)", file: path)
        }
        // Make the rename itself durable.
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }
}
