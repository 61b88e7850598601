import JSON
import JSONRPC

// LSP text synchronisation for utterance files (docs/editors.md).

public struct LSPPosition: Codable, Sendable, Equatable {
    public var line: Int
    /// UTF-16 code units, as LSP counts them.
    public var character: Int
    public init(line: Int, character: Int) { self.line = line; self.character = character }
}

public struct LSPRange: Codable, Sendable, Equatable {
    public var start: LSPPosition
    public var end: LSPPosition
    public init(start: LSPPosition, end: LSPPosition) { self.start = start; self.end = end }
}

public struct TextDocumentIdentifier: Codable, Sendable {
    public var uri: String
    public var version: Int?
    public init(uri: String, version: Int? = nil) { self.uri = uri; self.version = version }
}

/// `textDocument/didOpen`.
public enum DidOpenTextDocument: RPCNotification {
    public static let name = "textDocument/didOpen"
    public struct Params: Codable, Sendable {
        public struct Item: Codable, Sendable {
            public var uri: String
            public var languageId: String
            public var version: Int
            public var text: String
            public init(uri: String, languageId: String, version: Int, text: String) {
                self.uri = uri; self.languageId = languageId; self.version = version; self.text = text
            }
        }
        public var textDocument: Item
        public init(textDocument: Item) { self.textDocument = textDocument }
    }
}

/// `textDocument/didChange`: full or incremental (ranged) changes.
public enum DidChangeTextDocument: RPCNotification {
    public static let name = "textDocument/didChange"
    public struct Params: Codable, Sendable {
        public struct Change: Codable, Sendable {
            public var range: LSPRange?
            public var text: String
            public init(range: LSPRange? = nil, text: String) {
                self.range = range
                self.text = text
            }
        }
        public var textDocument: TextDocumentIdentifier
        public var contentChanges: [Change]
        public init(textDocument: TextDocumentIdentifier, contentChanges: [Change]) {
            self.textDocument = textDocument; self.contentChanges = contentChanges
        }
    }
}

/// `textDocument/didClose`.
public enum DidCloseTextDocument: RPCNotification {
    public static let name = "textDocument/didClose"
    public struct Params: Codable, Sendable {
        public var textDocument: TextDocumentIdentifier
        public init(textDocument: TextDocumentIdentifier) { self.textDocument = textDocument }
    }
}

/// `textDocument/publishDiagnostics`: sent by the daemon.
public enum PublishDiagnostics: RPCNotification {
    public static let name = "textDocument/publishDiagnostics"
    public struct Diagnostic: Codable, Sendable {
        public var range: LSPRange
        /// 1 error, 2 warning, 3 information, 4 hint.
        public var severity: Int
        public var source: String
        public var code: String
        public var message: String
        public init(range: LSPRange, severity: Int, code: String, message: String) {
            self.range = range; self.severity = severity; self.source = "robustd"; self.code = code; self.message = message
        }
    }
    public struct Params: Codable, Sendable {
        public var uri: String
        public var version: Int?
        public var diagnostics: [Diagnostic]
        public init(uri: String, version: Int?, diagnostics: [Diagnostic]) { self.uri = uri; self.version = version; self.diagnostics = diagnostics }
    }
}

/// `textDocument/hover`: the prediction and its risk for the utterance under the cursor.
public enum Hover: RPCRequest {
    public static let name = "textDocument/hover"
    public struct Params: Codable, Sendable {
        public var textDocument: TextDocumentIdentifier
        public var position: LSPPosition
        public init(textDocument: TextDocumentIdentifier, position: LSPPosition) { self.textDocument = textDocument; self.position = position }
    }
    /// LSP's MarkupContent.
    public struct Contents: Codable, Sendable, Equatable {
        public var kind: String
        public var value: String
        public init(kind: String = "markdown", value: String) { self.kind = kind; self.value = value }
    }
    public struct Info: Codable, Sendable, Equatable {
        public var contents: Contents
        public var range: LSPRange
        public init(contents: Contents, range: LSPRange) { self.contents = contents; self.range = range }
    }
    /// null when the position is on no utterance.
    public typealias Result = Info?
}
