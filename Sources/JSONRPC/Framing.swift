import JSON
/// How messages are delimited on a byte stream.
public enum FramingStyle: String, Sendable, Equatable {
    /// LSP base protocol: `Content-Length: N\r\n\r\n` then N bytes of UTF-8 JSON.
    case contentLength
    /// Newline-delimited JSON: one message a line.
    case ndjson

    /// Wraps one serialised message for this style.
    public func frame(_ body: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        frame(body, into: &out)
        return out
    }

    public func frame(_ body: [UInt8], into out: inout [UInt8]) {
        switch self {
        case .contentLength:
            out.reserveCapacity(out.count + body.count + 24)
            out.append(contentsOf: "Content-Length: ".utf8)
            out.append(contentsOf: String(body.count).utf8)
            out.append(contentsOf: [0x0d, 0x0a, 0x0d, 0x0a])
            out.append(contentsOf: body)
        case .ndjson:
            out.append(contentsOf: body)
            out.append(0x0a)
        }
    }
}

/// One unit the decoder produced.
public enum Frame: Sendable, Equatable {
    /// A complete message body.
    case message([UInt8])
    /// A message over the size limit was skipped; the stream is still in sync.
    case oversized(size: Int, limit: Int)
    /// A header block could not be understood; it was skipped up to its blank line.
    case badHeader(String)
}

/// An incremental decoder for both framings, fed arbitrary chunks.
///
/// With `style == nil` the first non-whitespace byte decides: `{` or `[` means NDJSON, anything
/// else Content-Length. Oversized messages and bad header blocks are reported as frames and
/// skipped, so one bad message costs that message only.
public struct FrameDecoder: Sendable {
    public static let defaultMaxMessageBytes = 16 << 20
    static let maxHeaderBytes = 8 << 10

    public private(set) var style: FramingStyle?
    public let maxMessageBytes: Int

    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes of an oversized body (Content-Length) still to drop.
    private var skipping = 0
    /// Dropping an over-long NDJSON line until its newline.
    private var skippingLine = false
    private var skippedLineBytes = 0
    /// Bytes of the current partial line already searched for a newline, so that a long line
    /// arriving in many chunks is scanned once, not once per chunk.
    private var scanned = 0

    public init(style: FramingStyle? = nil, maxMessageBytes: Int = FrameDecoder.defaultMaxMessageBytes) {
        self.style = style
        self.maxMessageBytes = maxMessageBytes
    }

    /// Bytes held but not yet returned as frames.
    public var bufferedBytes: Int { buffer.count - start }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var bytes = bytes
        if skipping > 0 {
            let n = min(skipping, bytes.count)
            skipping -= n
            bytes = UnsafeRawBufferPointer(rebasing: bytes[n...])
        }
        if start > 0 && start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
            scanned = 0
        } else if start > 65536 && start > buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    public mutating func feed(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { feed($0) }
    }

    /// The next complete frame, or nil if more bytes are needed.
    public mutating func next() -> Frame? {
        if style == nil {
            while start < buffer.count, isSpace(buffer[start]) { start += 1 }
            guard start < buffer.count else { return nil }
            style = (buffer[start] == UInt8(ascii: "{") || buffer[start] == UInt8(ascii: "[")) ? .ndjson : .contentLength
        }
        switch style! {
        case .ndjson: return nextLine()
        case .contentLength: return nextContentLength()
        }
    }

    @inline(__always) private func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x0a || b == 0x0d || b == 0x09 }

    private mutating func nextLine() -> Frame? {
        while true {
            guard let nl = buffer[(start + scanned)...].firstIndex(of: 0x0a) else {
                scanned = buffer.count - start
                let pending = buffer.count - start
                if skippingLine {
                    skippedLineBytes += pending
                    start = buffer.count
                } else if pending > maxMessageBytes {
                    skippingLine = true
                    skippedLineBytes = pending
                    start = buffer.count
                }
                if start == buffer.count { scanned = 0 }
                return nil
            }
            scanned = 0
            if skippingLine {
                let size = skippedLineBytes + (nl - start)
                skippingLine = false
                skippedLineBytes = 0
                start = nl + 1
                return .oversized(size: size, limit: maxMessageBytes)
            }
            var end = nl
            if end > start, buffer[end - 1] == 0x0d { end -= 1 }
            let lineStart = start
            start = nl + 1
            // Blank lines between messages are allowed.
            if buffer[lineStart..<end].allSatisfy(isSpace) { continue }
            if end - lineStart > maxMessageBytes { return .oversized(size: end - lineStart, limit: maxMessageBytes) }
            return .message(Array(buffer[lineStart..<end]))
        }
    }

    private mutating func nextContentLength() -> Frame? {
        // Tolerate stray line breaks between messages.
        while start < buffer.count, buffer[start] == 0x0d || buffer[start] == 0x0a { start += 1 }
        guard let (headerEnd, bodyStart) = findHeaderEnd() else {
            if buffer.count - start > Self.maxHeaderBytes {
                // No blank line within the limit: drop what we have; keep the last 3 bytes in
                // case they begin a terminator.
                start = buffer.count - 3
                return .badHeader("header block longer than \(Self.maxHeaderBytes) bytes")
            }
            return nil
        }
        let header = buffer[start..<headerEnd]
        var length: Int? = nil
        var problem: String? = nil
        for rawLine in header.split(separator: 0x0a, omittingEmptySubsequences: true) {
            var line = rawLine
            if line.last == 0x0d { line = line.dropLast() }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else {
                problem = "header line without ':' (\(printable(line)))"
                break
            }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self).trimmingSpaces().lowercased()
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmingSpaces()
            switch name {
            case "content-length":
                guard let n = Int(value), n >= 0, value.allSatisfy(\.isASCII) else {
                    problem = "Content-Length must be a non-negative integer, got '\(value.prefix(32))'"
                    break
                }
                length = n
            case "content-type":
                let lower = value.lowercased()
                if let r = lower.firstRange(of: "charset=") {
                    let cs = lower[r.upperBound...].trimmingCharacters(in: " ;\"")
                    if cs != "utf-8" && cs != "utf8" { problem = "unsupported charset '\(cs)'; only utf-8 is accepted" }
                }
            default:
                break  // unknown headers are ignored, as LSP allows
            }
            if problem != nil { break }
        }
        if problem == nil && length == nil { problem = "missing Content-Length header" }
        if let problem {
            // With a usable length the body is skipped too, so that it is not read as a header.
            start = bodyStart
            if let n = length {
                let available = buffer.count - bodyStart
                if available >= n { start = bodyStart + n } else { skipping = n - available; start = buffer.count }
            }
            return .badHeader(problem)
        }
        let n = length!
        if n > maxMessageBytes {
            let available = buffer.count - bodyStart
            if available >= n {
                start = bodyStart + n
            } else {
                skipping = n - available
                start = buffer.count
            }
            return .oversized(size: n, limit: maxMessageBytes)
        }
        guard buffer.count - bodyStart >= n else { return nil }
        start = bodyStart + n
        return .message(Array(buffer[bodyStart..<(bodyStart + n)]))
    }

    /// Finds the blank line ending the header block (`\r\n\r\n`, or a bare `\n\n`).
    private func findHeaderEnd() -> (Int, Int)? {
        var i = start
        let end = buffer.count
        while i < end {
            if buffer[i] == 0x0a {
                if i + 1 < end && buffer[i + 1] == 0x0a { return (i, i + 2) }
                if i + 2 < end && buffer[i + 1] == 0x0d && buffer[i + 2] == 0x0a { return (i, i + 3) }
            }
            i += 1
        }
        return nil
    }

    private func printable(_ bytes: ArraySlice<UInt8>) -> String {
        let s = String(decoding: bytes.prefix(32), as: UTF8.self)
        return s.unicodeScalars.map { $0.value < 0x20 ? "?" : String($0) }.joined()
    }
}

extension String {
    func trimmingSpaces() -> String { trimmingCharacters(in: " \t") }

    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

extension Substring {
    func trimmingCharacters(in set: String) -> String { String(self).trimmingCharacters(in: set) }
}
