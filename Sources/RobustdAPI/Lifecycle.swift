import JSON
import JSONRPC

/// The robustd release this build speaks for.
public enum RobustdVersion {
    public static let current = "0.1.0"
    /// Bumped when a method's params or results change incompatibly.
    public static let protocolVersion = "1"
}

/// `initialize`: the first request of an LSP-style session.
public enum Initialize: RPCRequest {
    public static let name = "initialize"

    public struct Params: Codable, Sendable {
        public struct ClientInfo: Codable, Sendable {
            public var name: String
            public var version: String?
            public init(name: String, version: String? = nil) {
                self.name = name
                self.version = version
            }
        }
        public var processId: Int?
        public var clientInfo: ClientInfo?
        public var capabilities: JSONValue?
        public var initializationOptions: JSONValue?
        public var trace: String?
        public init(clientInfo: ClientInfo? = nil) { self.clientInfo = clientInfo }
    }

    public struct Result: Codable, Sendable {
        public struct ServerInfo: Codable, Sendable {
            public var name: String
            public var version: String
            public init(name: String, version: String) {
                self.name = name
                self.version = version
            }
        }
        public var capabilities: JSONValue
        public var serverInfo: ServerInfo
        public var protocolVersion: String
        public init(capabilities: JSONValue, serverInfo: ServerInfo, protocolVersion: String) {
            self.capabilities = capabilities
            self.serverInfo = serverInfo
            self.protocolVersion = protocolVersion
        }
    }
}

/// `initialized`: the client has read the initialize result.
public enum Initialized: RPCNotification {
    public static let name = "initialized"
    public typealias Params = EmptyParams
}

/// `shutdown`: stop answering work requests; `exit` follows.
public enum Shutdown: RPCRequest {
    public static let name = "shutdown"
    public typealias Params = EmptyParams
    public typealias Result = JSONValue  // LSP: null
}

/// `exit`: end the session. On stdio the process exits: 0 after `shutdown`, 1 otherwise.
/// On a socket connection only that connection closes.
public enum Exit: RPCNotification {
    public static let name = "exit"
    public typealias Params = EmptyParams
}

/// `$/cancelRequest`: the request with this id should stop; it answers -32800.
public enum CancelRequest: RPCNotification {
    public static let name = "$/cancelRequest"
    public struct Params: Codable, Sendable {
        public var id: RequestID
        public init(id: RequestID) { self.id = id }
    }
}

/// `$/progress`: work-done progress (begin / report / end) for a token the client gave.
public enum Progress: RPCNotification {
    public static let name = "$/progress"
    public struct Params: Codable, Sendable {
        public var token: RequestID
        public var value: Value
        public init(token: RequestID, value: Value) {
            self.token = token
            self.value = value
        }
    }
    public struct Value: Codable, Sendable {
        public enum Kind: String, RPCEnum { case begin, report, end }
        public var kind: Kind
        public var title: String?
        public var message: String?
        public var percentage: Int?
        public var cancellable: Bool?
        public init(kind: Kind, title: String? = nil, message: String? = nil, percentage: Int? = nil, cancellable: Bool? = nil) {
            self.kind = kind
            self.title = title
            self.message = message
            self.percentage = percentage
            self.cancellable = cancellable
        }
    }
}

/// `window/logMessage`: a log line for the client to show (1 error, 2 warning, 3 info, 4 log).
public enum LogMessage: RPCNotification {
    public static let name = "window/logMessage"
    public struct Params: Codable, Sendable {
        public var type: Int
        public var message: String
        public init(type: Int, message: String) {
            self.type = type
            self.message = message
        }
    }
}

/// `rpc.discover`: the OpenRPC document describing every method.
public enum Discover: RPCRequest {
    public static let name = "rpc.discover"
    public typealias Params = EmptyParams
    public typealias Result = JSONValue
}
