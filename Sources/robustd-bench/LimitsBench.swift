import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// Requests at the size limits from many clients at once (docs/reliability.md, "Memory"):
/// the daemon's RSS before, its peak while they are served, and after.
struct LimitsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "limits",
        abstract: "Many clients at once, each sending a request at a size limit (a message of nearly --max-message-bytes, score with 4,096 inputs, embed with 4,096 texts, a batch of 1,024, an oversized message): the daemon's peak RSS.")

    @OptionGroup var paths: BenchPaths

    @Option(help: "Clients at once (each sends one request of each kind, in turn).")
    var clients: Int = 32

    func run() throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("robustd")
        let train = try paths.rows("train.csv", perIntent: 10)
        let d = try ModelDaemon(binary: binary, model: paths.model, tag: "limits")
        defer { d.stop() }
        try RiskBench().importRecords(d, "train", train)
        _ = try d.call(ModelFit.self, .init(dataset: "train", lambdas: [0.01]))
        let pid = d.process.processIdentifier
        let idle = rssKiB(pid)
        print("robustd-bench limits: \(clients) clients at once; daemon RSS idle with the model and a version: \(String(format: "%.1f", Double(idle) / 1024)) MB")
        let short = train.map(\.0)
        let kinds: [(String, [UInt8])] = [
            // A message of nearly 16 MiB: one input whose text is 16 MiB minus a little.
            ("score, one 16 MiB text", Array((#"{"jsonrpc":"2.0","id":1,"method":"score","params":{"inputs":[{"text":""# + String(repeating: "card ", count: ((16 << 20) - 200) / 5) + #""}]}}"#).utf8) + [0x0a]),
            ("score, 4,096 inputs", Array(JSONWriter.string(["jsonrpc": "2.0", "id": 1, "method": "score",
                                                           "params": ["inputs": .array((0..<4096).map { ["text": .string(short[$0 % short.count])] })]]).utf8) + [0x0a]),
            ("embed, 4,096 texts", Array(JSONWriter.string(["jsonrpc": "2.0", "id": 1, "method": "embed",
                                                           "params": ["texts": .array((0..<4096).map { .string(short[$0 % short.count]) })]]).utf8) + [0x0a]),
            ("a batch of 1,024 pings", Array(JSONWriter.string(.array((0..<1024).map { ["jsonrpc": "2.0", "id": .int(Int64($0 + 1)), "method": "daemon/ping"] })).utf8) + [0x0a]),
            ("an oversized message (17 MiB)", Array(#"{"jsonrpc":"2.0","id":1,"method":"score","params":{"x":""#.utf8) + [UInt8](repeating: 0x61, count: 17 << 20) + Array("\"}}\n".utf8)),
        ]
        print("request                          bytes each   peak RSS MB   over idle MB   per client MB   after MB   answered")
        for (name, bytes) in kinds {
            final class Box: @unchecked Sendable { let lock = NSLock(); var answered = 0 }
            let box = Box()
            let group = DispatchGroup()
            let socket = d.socket
            for _ in 0..<clients {
                group.enter()
                let t = Thread {
                    defer { group.leave() }
                    guard let c = try? RPCClient(path: socket) else { return }
                    guard (try? c.sendRaw(bytes)) != nil, let v = try? c.receive(timeout: 600) else { return }
                    if v["result"] != nil || v["error"] != nil || v.arrayValue != nil { box.lock.withLock { box.answered += 1 } }
                }
                t.stackSize = 1 << 20
                t.start()
            }
            var peak = idle
            while group.wait(timeout: .now() + 0.05) == .timedOut { peak = max(peak, rssKiB(pid)) }
            peak = max(peak, rssKiB(pid))
            usleep(500_000)
            let after = rssKiB(pid)
            print(name.padding(toLength: 31, withPad: " ", startingAt: 0) + String(format: "  %10d  %12.1f  %13.1f  %14.1f  %9.1f  %6d/%d", bytes.count, Double(peak) / 1024,
                  Double(peak - idle) / 1024, Double(peak - idle) / 1024 / Double(clients), Double(after) / 1024, box.answered, clients))
        }
    }
}
