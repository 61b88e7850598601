import Datasets
import Foundation
import JSON
import JSONRPC

/// The fuzz targets (docs/reliability.md): each takes arbitrary bytes and must neither crash nor
/// hang nor break an invariant it states. A target that finds a crash gets its input kept as a
/// regression in Fuzz/regressions/<target>/, which the tests replay.
enum FuzzTargets {
    static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "frames": frames,
        "datasets": datasets,
    ]

    /// The transport's input path: the frame decoder (fed in uneven chunks, auto-detecting the
    /// framing), then each frame's JSON and JSON-RPC validation. Invariants: the decoder never
    /// holds more than the limit plus a header; each message frame is at most the limit; a
    /// message that parses re-encodes to JSON that parses to the same value.
    static func frames(_ bytes: [UInt8]) {
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
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (.object(let x), .object(let y)): return x.count == y.count && x.allSatisfy { k, v in y[k].map { same(v, $0) } ?? false }
        default: return a == b
        }
    }

    /// Dataset import: CSV and JSONL readers, then validation. Invariants: every record's line
    /// is within the text; a plan keeps only validated rows.
    static func datasets(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).count
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

#if FUZZING
nonisolated(unsafe) var fuzzTarget: (@Sendable ([UInt8]) -> Void)?

/// libFuzzer's hooks: the target is named by ROBUSTD_FUZZ_TARGET.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = ProcessInfo.processInfo.environment["ROBUSTD_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTargets.all[name] else {
        FileHandle.standardError.write(Data("set ROBUSTD_FUZZ_TARGET to one of: \(FuzzTargets.all.keys.sorted().joined(separator: ", "))\n".utf8))
        exit(2)
    }
    fuzzTarget = t
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzTarget?(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM links an executable's entry point under this name; it hands over to libFuzzer.
@_cdecl("robustd_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var c = argc
    var v = argv
    return runFuzzerDriver(&c, &v) { data, size in fuzzOne(data, size) }
}
#else
/// Without the fuzzer: `robustd-fuzz TARGET FILE…` runs files (a corpus, the regressions)
/// through a target, as the tests do.
@main
struct FuzzReplay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let t = FuzzTargets.all[name] else {
            print("usage: robustd-fuzz TARGET FILE…   targets: \(FuzzTargets.all.keys.sorted().joined(separator: ", "))")
            exit(2)
        }
        var n = 0
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
            let files = isDir.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for f in files {
                guard let d = FileManager.default.contents(atPath: f) else { continue }
                t([UInt8](d))
                n += 1
            }
        }
        print("\(name): \(n) inputs, no crash")
    }
}
#endif
