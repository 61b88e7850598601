/// A model folder could not be loaded: what is wrong and where, in words a person can act on.
public struct ModelError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    /// The file concerned, if any.
    public var file: String?
    /// The tensor concerned, if any.
    public var tensor: String?

    public init(_ message: String, file: String? = nil, tensor: String? = nil) {
        self.message = message
        self.file = file
        self.tensor = tensor
    }

    public var description: String {
        var s = message
        if let tensor { s = "tensor '\(tensor)': " + s }
        if let file { s = "\(file): " + s }
        return s
    }
}
