import Foundation
import Logging
import Synchronization

/// Writes one line per event to stderr: time, level, label, message, metadata.
///
/// Never writes to stdout, which belongs to the protocol in stdio mode.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private static let lock = Mutex(())

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let m = event.metadata { all.merge(m) { _, new in new } }
        var line = "\(Self.timestamp()) \(event.level.rawValue.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0)) [\(label)] \(event.message)"
        for k in all.keys.sorted() {
            let v = "\(all[k]!)"
            line += v.contains(" ") ? " \(k)=\"\(v)\"" : " \(k)=\(v)"
        }
        line = line.replacingOccurrences(of: "\n", with: "\\n") + "\n"
        Self.lock.withLock { _ in
            var bytes = Array(line.utf8)
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + off, $0.count - off) }
                if n <= 0 { if errno == EINTR { continue } else { break } }
                off += n
            }
        }
    }

    private static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = tm()
        var secs = ts.tv_sec
        gmtime_r(&secs, &t)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                      t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1_000_000)
    }
}
