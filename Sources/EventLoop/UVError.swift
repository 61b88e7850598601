import CLibUV

/// A libuv call failed. libuv reports errors as negative integers; this names the call too.
public struct UVError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int32
    public var function: String

    public init(code: Int32, function: String) {
        self.code = code
        self.function = function
    }

    /// libuv's short name for the error, e.g. `EADDRINUSE`.
    public var name: String { String(cString: uv_err_name(code)) }
    public var message: String { String(cString: uv_strerror(code)) }
    public var description: String { "\(function): \(message) (\(name))" }

    public static let eof = UV_EOF.rawValue
}

/// Throws `UVError` for a negative libuv result; returns the result otherwise.
@discardableResult
@inline(__always)
public func uvCheck(_ result: Int32, _ function: StaticString = #function) throws(UVError) -> Int32 {
    if result < 0 { throw UVError(code: result, function: "\(function)") }
    return result
}
