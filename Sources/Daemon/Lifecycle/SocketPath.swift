import Foundation

/// Why the socket could not be set up, in words that say what to do.
public struct SocketSetupError: Error, CustomStringConvertible {
    public var description: String
}

/// Prepares the socket path: the owner-only folder, and the stale-file check.
enum SocketPath {
    /// Longest path a `sockaddr_un` holds (108 bytes with the terminating NUL on Linux).
    static let maxLength = 107

    static func prepare(_ path: String) throws(SocketSetupError) {
        guard path.hasPrefix("/") else {
            throw SocketSetupError(description: "socket path must be absolute: \(path)")
        }
        guard path.utf8.count <= maxLength else {
            throw SocketSetupError(description: "socket path is \(path.utf8.count) bytes; Unix sockets allow at most \(maxLength): \(path)")
        }
        let dir = (path as NSString).deletingLastPathComponent
        try ensurePrivateFolder(dir)
        try removeIfStale(path)
    }

    /// Creates the folder 0700 if missing. A folder we created, or the default fallback
    /// folder, must be ours and closed to others; an existing folder chosen by the user
    /// (like XDG_RUNTIME_DIR) must at least be ours or root's.
    static func ensurePrivateFolder(_ dir: String) throws(SocketSetupError) {
        var st = stat()
        if lstat(dir, &st) != 0 {
            guard errno == ENOENT else {
                throw SocketSetupError(description: "cannot inspect \(dir): \(String(cString: strerror(errno)))")
            }
            if mkdir(dir, 0o700) != 0 && errno != EEXIST {
                throw SocketSetupError(description: "cannot create \(dir): \(String(cString: strerror(errno)))")
            }
            guard lstat(dir, &st) == 0 else {
                throw SocketSetupError(description: "cannot inspect \(dir): \(String(cString: strerror(errno)))")
            }
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw SocketSetupError(description: "\(dir) is not a directory")
        }
        let uid = getuid()
        if st.st_uid == uid {
            // Ours: make sure nobody else can even look in.
            if st.st_mode & 0o077 != 0 && !isSharedSystemDir(st) {
                if chmod(dir, 0o700) != 0 {
                    throw SocketSetupError(description: "\(dir) is open to other users and cannot be made 0700")
                }
            }
        } else if st.st_uid != 0 {
            throw SocketSetupError(description: "\(dir) belongs to uid \(st.st_uid), not to you (uid \(uid)); refusing to put the socket there")
        } else if st.st_mode & 0o002 != 0 && st.st_mode & S_ISVTX == 0 {
            throw SocketSetupError(description: "\(dir) is world-writable without the sticky bit; refusing to put the socket there")
        }
    }

    /// A root-owned sticky folder such as /tmp is left as it is.
    private static func isSharedSystemDir(_ st: stat) -> Bool { st.st_mode & S_ISVTX != 0 }

    /// A socket file nobody answers on is left over from a crash: remove it. A live one means
    /// another daemon runs; anything that is not a socket is never touched.
    static func removeIfStale(_ path: String) throws(SocketSetupError) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw SocketSetupError(description: "\(path) exists and is not a socket; refusing to replace it")
        }
        if isLive(path) {
            throw SocketSetupError(description: "another robustd is already listening on \(path) (stop it with 'robustctl call daemon/stop', or choose another --socket path)")
        }
        if unlink(path) != 0 && errno != ENOENT {
            throw SocketSetupError(description: "cannot remove the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func isLive(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            let bytes = Array(path.utf8.prefix(buf.count - 1))
            buf.copyBytes(from: bytes)
            buf[bytes.count] = 0
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return r == 0
    }
}
