import Daemon
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

@Suite("Live metrics: get, subscriptions, Prometheus over JSON-RPC and HTTP")
struct MetricsTests {
    /// GET over a plain TCP socket, as Prometheus would; returns the whole response.
    static func httpGet(port: Int, _ request: String) throws -> String {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError("socket") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw ClientError("connect: \(errno)") }
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test("metrics/get counts scored inputs, flags, failures and latency over windows; regions by cost; schema-valid")
    func get() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(d) {} }
        // prepared() scored 8 inputs in one request and reported some corrections.
        let m = try c.call(MetricsGet.self, .init()).get()
        let v = m.values
        #expect(v["requests.1m"] == 8)
        #expect(v["requests.24h"] == 8)
        #expect(v["scoreCalls.1m"] == 1)
        #expect((v["failures.correction.1m"] ?? 0) >= 1)
        #expect(v["failures.1m"] == v["failures.correction.1m"])
        // One request of 8 inputs: a batch, timed apart from single-input requests.
        #expect((v["batchLatencyP50Ms.1m"] ?? 0) > 0)
        #expect(v["latencyP50Ms.1m"] == nil)
        #expect((v["expectedCostPer1000.1h"] ?? 0) > 0)
        #expect(v["requests.sinceActivation"] == 8)
        #expect(v["version.active"] == 1)
        #expect(m.regions.count >= 1)
        let only = try c.call(MetricsGet.self, .init(metrics: ["requests", "queue"])).get().values
        #expect(Set(only.keys) == ["requests.1m", "requests.1h", "requests.24h", "requests.sinceActivation",
                                   "queue.computePending", "queue.computeRunning", "queue.embedPending"])
        _ = try c.call(Score.self, .init(inputs: [.init(text: "a b c"), .init(text: "the card")])).get()
        #expect(try c.call(MetricsGet.self, .init(metrics: ["requests.1m"])).get().values["requests.1m"] == 10)
    }

    @Test("subscriptions: updates at the interval with the chosen metrics, on change only when asked, unsubscribe stops them, a closed connection ends them")
    func subscribe() throws {
        let d = try DaemonProcess()
        let c = try d.client()
        var updates: [MetricsUpdate.Params] = []
        c.onNotification = { m, p in
            if let u = RPCClient.notification(MetricsUpdate.self, method: m, params: p) { updates.append(u) }
        }
        let sub = try c.call(MetricsSubscribe.self, .init(metrics: ["requestRate", "connections.open"], intervalMs: 100)).get()
        #expect(sub.metrics.contains("connections.open"))
        let start = Date()
        while Date().timeIntervalSince(start) < 0.65 { _ = try c.call(Ping.self).get(); usleep(20_000) }
        #expect(updates.count >= 4 && updates.count <= 8, "\(updates.count) updates in 0.65 s at 100 ms")
        #expect(updates.allSatisfy { $0.subscription == sub.subscription })
        #expect(Set(updates.last?.values.keys.map { $0 } ?? []) == ["requestRate.1m", "requestRate.1h", "requestRate.24h", "connections.open"])
        #expect(updates.last?.coalesced == 0)
        #expect(try c.call(MetricsUnsubscribe.self, .init(subscription: sub.subscription)).get().unsubscribed)
        #expect(try !c.call(MetricsUnsubscribe.self, .init(subscription: sub.subscription)).get().unsubscribed)
        updates.removeAll()
        for _ in 0..<10 { _ = try c.call(Ping.self).get(); usleep(30_000) }
        #expect(updates.isEmpty)

        // On change: one update, then nothing while nothing changes.
        _ = try c.call(MetricsSubscribe.self, .init(metrics: ["requests.24h"], intervalMs: 100, onChange: true)).get()
        for _ in 0..<15 { _ = try c.call(Ping.self).get(); usleep(30_000) }
        #expect(updates.count == 1, "\(updates.count)")
        // Bad parameters.
        guard case .failure(let e) = try c.call(MetricsSubscribe.self, .init(intervalMs: 10)) else { Issue.record("accepted 10 ms"); return }
        #expect(e.code == .invalidParams)
        guard case .failure(let e2) = try c.call(MetricsSubscribe.self, .init(metrics: ["nothing.like.this"])) else { Issue.record("accepted"); return }
        #expect(e2.message.contains("no metric matches"))
        // Another connection's subscriptions end with it.
        var other: RPCClient? = try d.client()
        _ = try other!.call(MetricsSubscribe.self, .init(intervalMs: 100)).get()
        #expect(try c.call(MetricsGet.self, .init(metrics: ["subscriptions"])).get().values["subscriptions"] == 2)
        other = nil
        _ = other
        var count: Double? = nil
        for _ in 0..<50 {
            count = try c.call(MetricsGet.self, .init(metrics: ["subscriptions"])).get().values["subscriptions"]
            if count == 1 { break }
            usleep(20_000)
        }
        #expect(count == 1)
    }

    @Test("snapshots persist: metrics/history has points, survives a restart, averages by step, and names what it keeps")
    func history() throws {
        let state = TempDir()
        let args = ["--state-dir", state.path, "--metrics-snapshot-seconds", "0.2"]
        var d: DaemonProcess? = try DaemonProcess(extraArgs: args)
        var c = try d!.client()
        usleep(700_000)
        let h = try c.call(MetricsHistory.self, .init(metric: "connections.open")).get()
        let n = h.points.count
        #expect(n >= 2, "\(n) points")
        #expect(h.points.first?.value == 1)
        #expect(d!.terminate() == 0)
        d = try DaemonProcess(extraArgs: args)
        c = try d!.client()
        let again = try c.call(MetricsHistory.self, .init(metric: "connections.open")).get()
        #expect(again.points.count >= n + 1)  // the earlier points and the stop's snapshot are kept
        let coarse = try c.call(MetricsHistory.self, .init(metric: "connections.open", since: Date().timeIntervalSince1970 - 60, step: 3600)).get()
        #expect(coarse.points.count == 1)
        #expect((coarse.points.first?.value ?? 0) > 0)
        guard case .failure(let e) = try c.call(MetricsHistory.self, .init(metric: "requests.24h")) else { Issue.record("a 24 h window has no history"); return }
        #expect(e.code == .invalidParams && e.message.contains("persisted"))
        guard case .failure(let e2) = try c.call(MetricsHistory.self, .init(metric: "requests.1m", since: 10, until: 5)) else { Issue.record("since > until"); return }
        #expect(e2.code == .invalidParams)
    }

    @Test("clients/python: the monitoring client calls, subscribes and forwards updates as JSON lines against the real daemon")
    func pythonClient() throws {
        let d = try DaemonProcess()
        let script = Binaries.packageRoot.appendingPathComponent("clients/python/robustd_client.py").path
        let python = URL(fileURLWithPath: "/usr/bin/python3")
        let (s1, out1, err1) = try run(python, [script, "--socket", d.socketPath, "call", "daemon/ping"])
        #expect(s1 == 0, "\(err1)")
        #expect(out1.trimmingCharacters(in: .whitespacesAndNewlines) == "{}")
        let (s2, out2, err2) = try run(python, [script, "--socket", d.socketPath, "watch", "--metrics", "connections.open,requestRate",
                                                "--interval-ms", "100", "--count", "3", "--json"])
        #expect(s2 == 0, "\(err2)")
        let lines = out2.split(separator: "\n").map { try? JSONParser.parse(String($0)) }
        #expect(lines.count == 3)
        for l in lines {
            #expect(l?["values"]?["connections.open"] == 1)
            #expect(l?["values"]?["requestRate.1m"] != nil)
            #expect(l?["subscription"] != nil)
        }
        let (s3, out3, _) = try run(python, [script, "--socket", d.socketPath, "watch", "--metrics", "connections.open", "--interval-ms", "100", "--count", "1"])
        #expect(s3 == 0 && out3.contains("connections.open=1"))
        let (s4, _, err4) = try run(python, [script, "--socket", d.socketPath, "call", "metrics/subscribe", #"{"intervalMs": 1}"#])
        #expect(s4 == 1 && err4.contains("-32602"))
        let (s5, _, err5) = try run(python, [script, "--socket", d.dir.path + "/nothing.sock", "call", "daemon/ping"])
        #expect(s5 == 2 && err5.contains("cannot reach robustd"))
    }

    @Test("robustctl report writes one self-contained HTML page with its four charts; robustctl watch streams updates")
    func reportAndWatch() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model, extra: ["--metrics-snapshot-seconds", "0.2"])
        defer { withExtendedLifetime(d) {} }
        let job = try c.call(FineTuneStart.self, .init(regions: .all, method: .head, epochs: 2)).get()
        let done = try FineTuneTests.waitForJob(c, job.id)
        _ = try c.call(DatasetImportMethod.self, .init(name: "check", records: VersionTests.recordList)).get()
        usleep(500_000)
        let out = d.dir.path + "/report.html"
        let (s1, o1, e1) = try run(Binaries.robustctl, ["report", "--out", out, "--eval-dataset", "check", "--socket", d.socketPath])
        #expect(s1 == 0, "\(o1) \(e1)")
        let html = try String(contentsOfFile: out, encoding: .utf8)
        #expect(html.hasPrefix("<!doctype html>"))
        #expect(html.components(separatedBy: "<svg ").count - 1 == 4, "four charts")
        #expect(!html.contains("<script") && !html.contains("http://") && !html.contains("https://"), "self-contained")
        #expect(html.contains("class=\"series\""))      // the cost curve
        #expect(html.contains("class=\"job succeeded\""))
        #expect(html.contains("v1 (fit)"))
        // Every version is marked on the cost curve (and each rollout's transitions).
        #expect(html.contains("class=\"mlabel\">v1<"))
        #expect(html.contains("class=\"mlabel\">v2<"), "\(done)")
        let (s2, o2, e2) = try run(Binaries.robustctl, ["watch", "--interval-ms", "100", "--count", "2", "--plain", "--socket", d.socketPath])
        #expect(s2 == 0, "\(e2)")
        #expect(o2.split(separator: "\n").filter { $0.contains("requests/s") }.count == 2)
    }

    @Test("a subscriber that never reads gets coalesced updates: its queue stays bounded and others are not slowed")
    func slowSubscriber() throws {
        let d = try DaemonProcess()
        // A raw client: 20 subscriptions at 100 ms (about 0.5 MB/s of updates), then it never reads.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        _ = withUnsafeMutableBytes(of: &addr.sun_path) { p in d.socketPath.withCString { strncpy(p.baseAddress!.assumingMemoryBound(to: CChar.self), $0, p.count - 1) } }
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(r == 0)
        defer { close(fd) }
        var requests = ""
        for i in 0..<20 { requests += "{\"jsonrpc\":\"2.0\",\"id\":\(i),\"method\":\"metrics/subscribe\",\"params\":{\"intervalMs\":100}}\n" }
        _ = requests.withCString { send(fd, $0, strlen($0), 0) }
        let c = try d.client()
        var worst = 0.0
        let start = Date()
        var coalesced = false
        while Date().timeIntervalSince(start) < 8 && !coalesced {
            let t0 = Date()
            _ = try c.call(Ping.self).get()
            worst = max(worst, Date().timeIntervalSince(t0))
            let text = try c.call(MetricsPrometheus.self).get().text
            coalesced = text.contains("robustd_metric_updates_coalesced_total") && !text.contains("robustd_metric_updates_coalesced_total 0\n")
            usleep(100_000)
        }
        #expect(coalesced, "no update was coalesced in 8 s")
        let status = try c.call(DaemonStatus.self).get()
        let queued = status.queues.outputBytes
        // Bounded: the coalescing limit (256 KiB) plus at most one round of updates.
        #expect(queued < 512 * 1024, "\(queued) bytes queued for the subscriber")
        #expect(worst < 0.25, "a ping took \(worst) s while the subscriber was stuck")
        #expect(status.connections.open == 2)
    }

    @Test("--metrics-listen takes a numeric address and a port, IPv4 or bracketed IPv6; robustd refuses anything else")
    func listenAddress() throws {
        #expect(Configuration.parseHostPort("127.0.0.1:9464")! == ("127.0.0.1", 9464))
        #expect(Configuration.parseHostPort("[::1]:0")! == ("::1", 0))
        for bad in ["localhost:9464", "127.0.0.1", "127.0.0.1:70000", "::1:9464", "[::1]", ":9464", "1.2.3.4:x"] {
            #expect(Configuration.parseHostPort(bad) == nil, "\(bad)")
        }
        let (status, _, err) = try run(Binaries.robustd, ["--socket", "/tmp/unused.sock", "--metrics-listen", "localhost:9464"])
        #expect(status != 0 && err.contains("--metrics-listen must be HOST:PORT"))
    }

    @Test("Prometheus: metrics/prometheus and GET /metrics serve the same valid exposition (promtool check metrics); other paths 404")
    func prometheus() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (d, c) = try FineTuneTests.prepared(state: state, model: model, extra: ["--metrics-listen", "127.0.0.1:0"])
        defer { withExtendedLifetime(d) {} }
        let text = try c.call(MetricsPrometheus.self).get().text
        #expect(text.contains("robustd_scored_inputs_total 8"))
        #expect(text.contains("# TYPE robustd_score_request_duration_seconds histogram"))
        #expect(text.contains("robustd_failure_reports_total{kind=\"correction\"}"))
        #expect(text.contains("robustd_intent_expected_cost_per_1000_requests{intent="))
        // The port the daemon bound, from its log.
        var port = 0
        for _ in 0..<100 where port == 0 {
            if let r = d.stderr.range(of: "metrics on http://127.0.0.1:") {
                port = Int(d.stderr[r.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            usleep(10_000)
        }
        #expect(port > 0)
        let ok = try Self.httpGet(port: port, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        #expect(ok.hasPrefix("HTTP/1.1 200 OK"))
        #expect(ok.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(ok.contains("robustd_scored_inputs_total 8"))
        #expect(try Self.httpGet(port: port, "GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404"))
        #expect(try Self.httpGet(port: port, "POST /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 405"))
        #expect(try Self.httpGet(port: port, "nonsense\r\n\r\n").hasPrefix("HTTP/1.1 400"))
        #expect(try Self.httpGet(port: port, "GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000)).hasPrefix("HTTP/1.1 431"))
        // promtool (Debian's prometheus package; CI installs it) checks the exposition.
        let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) }
        if let promtool {
            let body = String(ok[ok.range(of: "\r\n\r\n")!.upperBound...])
            let (status, out, err) = try run(URL(fileURLWithPath: promtool), ["check", "metrics"], stdin: body)
            #expect(status == 0, "promtool: \(out) \(err)")
        } else if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record("promtool is missing in CI")
        }
    }

    static func openFDs(_ pid: Int32) -> Int { ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []).count }

    @Test("slow-loris clients on the metrics listener and the socket hold nothing past their timeouts; scrapes and requests go on")
    func slowLoris() throws {
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let d = try DaemonProcess(extraArgs: ["--model", model.path, "--metrics-listen", "127.0.0.1:0", "--partial-message-timeout-ms", "500"])
        var port = 0
        for _ in 0..<200 where port == 0 {
            if let r = d.stderr.range(of: "metrics on http://127.0.0.1:") { port = Int(d.stderr[r.upperBound...].prefix { $0.isNumber }) ?? 0 }
            usleep(10_000)
        }
        #expect(port > 0)
        let before = Self.openFDs(d.pid)
        // 100 HTTP clients that send half a request line and stop; 20 socket clients that
        // send half a frame and stop.
        var held: [Int32] = []
        for i in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr)
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            _ = "GET /met\(i)".withCString { send(fd, $0, strlen($0), 0) }
            held.append(fd)
        }
        for _ in 0..<20 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { p in _ = d.socketPath.withCString { strncpy(p.baseAddress!.assumingMemoryBound(to: CChar.self), $0, p.count - 1) } }
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            _ = "Content-Length: 50\r\n\r\n{\"jsonrpc\"".withCString { send(fd, $0, strlen($0), 0) }
            held.append(fd)
        }
        defer { for fd in held { close(fd) } }
        // Requests go on meanwhile.
        #expect((try? d.client().call(Ping.self).get()) != nil)
        // Past the timeouts (0.5 s for the socket, 5 s for HTTP) the daemon has let go of all of them.
        var after = Int.max
        for _ in 0..<80 where after > before + 1 {
            usleep(100_000)
            after = Self.openFDs(d.pid)
        }
        #expect(after <= before + 1, "open descriptors: \(before) before, \(after) after")
        var buf = [UInt8](repeating: 0, count: 16)
        // Closed: end of stream, or a reset (a TCP socket closed with unread bytes resets).
        let closedByDaemon = held.filter { fd in
            let n = recv(fd, &buf, 16, Int32(MSG_DONTWAIT))
            return n == 0 || (n < 0 && errno == ECONNRESET)
        }.count
        #expect(closedByDaemon == held.count, "\(closedByDaemon) of \(held.count) closed by the daemon")
        #expect(try Self.httpGet(port: port, "GET /metrics HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 200 OK"))
        #expect(d.stderr.contains("not finished in time"))
        #expect(d.terminate() == 0)
    }
}
