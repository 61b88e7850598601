import Datasets
import Foundation
import JSON
import JSONRPC

/// The fuzz targets (docs/reliability.md): each takes arbitrary bytes and must neither crash nor
/// hang nor break an invariant it states. A target that finds a crash gets its input kept as a
/// regression in Fuzz/regressions/<target>/, which the tests replay.
public enum FuzzTargets {
    /// The targets by name, as scripts/fuzz and the replay tests name them.
    public static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "frames": frames,
        "datasets": datasets,
        "params": params,
        "document": document,
        "config": config,
        "safetensors": safetensors,
    ]

    /// The transport's input path: the frame decoder (fed in uneven chunks, auto-detecting the
    /// framing), then each frame's JSON and JSON-RPC validation. Invariants: the decoder never
    /// holds more than the limit plus a header; each message frame is at most the limit; a
    /// message that parses re-encodes to JSON that parses to the same value.
    public static func frames(_ bytes: [UInt8]) {
        let limit = 4096
        var decoder = FrameDecoder(maxMessageBytes: limit)
        var i = 0, step = 1
        while i < bytes.count {
            let end = min(bytes.count, i + step)
            decoder.feed(Array(bytes[i..<end]))
            i = end
            step = step % 7 + 1
            while let f = decoder.next() {
                guard case .message(let body) = f else { continue }
                precondition(body.count <= limit, "a frame over the limit came through")
                if let v = try? JSONParser.parse(body) {
                    let again = JSONWriter.string(v)
                    let back = try? JSONParser.parse(again)
                    precondition(back.map { same($0, v) } == true, "JSON did not survive its own writer: \(v) wrote \(again), read back \(String(describing: back))")
                }
                _ = Payload.parse(body)
            }
            precondition(decoder.bufferedBytes <= limit + 1024 + step, "the decoder buffered \(decoder.bufferedBytes) bytes")
        }
    }

    /// Equal as JSON values: numbers by value (the writer writes an integral double as an
    /// integer, so 2.0 reads back as 2, and -0.0 as 0).
    public static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.object(let x), .object(let y)): return x.count == y.count && x.allSatisfy { k, v in y[k].map { same(v, $0) } ?? false }
        default: return a == b
        }
    }

    /// Dataset import: CSV and JSONL readers, then validation. Invariants: every record's line
    /// is within the text; a plan keeps only validated rows.
    public static func datasets(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = bytes.count(where: { $0 == 0x0A }) + 1
        for csv in [true, false] {
            let read: [RawRecord]?
            if csv { read = try? CSVReader.records(text) } else { read = try? JSONLReader.records(text) }
            guard let records = read else { continue }
            for r in records { precondition(r.line >= 1 && r.line <= lines + 1, "line \(r.line) of \(lines)") }
            if case .success(let plan) = DatasetImport.plan(records, options: ImportOptions(splitField: "split")) {
                for e in plan.examples { precondition(!e.text.trimmingCharacters(in: .whitespaces).isEmpty && !e.label.isEmpty) }
            }
        }
    }
}

