import ArgumentParser
import Foundation
import JSON
import JSONRPC
import RobustdAPI
import RobustdClient

/// Small SVG charts, drawn by hand: no scripts, no external assets.
enum SVG {
    static let width = 760.0

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
            .replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static func niceMax(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let e = pow(10, floor(log10(v)))
        for m in [1.0, 2, 2.5, 5, 10] where m * e >= v { return m * e }
        return 10 * e
    }

    static func time(_ t: Double, seconds: Bool = false) -> String {
        let f = DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = seconds ? "HH:mm:ss" : "MM-dd HH:mm"
        return f.string(from: Date(timeIntervalSince1970: t))
    }

    /// A line over time with vertical markers (version promotions).
    static func line(_ points: [(Double, Double)], markers: [(Double, String)], unit: String) -> String {
        let h = 260.0, l = 60.0, r = 20.0, t = 20.0, b = 40.0
        guard var t0 = points.first?.0, var t1 = points.last?.0, t1 > t0 else {
            return "<p class=\"empty\">Not enough history yet (a point a minute; see metrics/history).</p>"
        }
        // The axis spans the markers too (a version made before the first snapshot).
        t0 = min(t0, markers.map(\.0).min() ?? t0)
        t1 = max(t1, markers.map(\.0).max() ?? t1)
        let ymax = niceMax(points.map(\.1).max() ?? 1)
        func x(_ v: Double) -> Double { l + (v - t0) / (t1 - t0) * (width - l - r) }
        func y(_ v: Double) -> Double { t + (1 - v / ymax) * (h - t - b) }
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(h))\" role=\"img\">"
        for k in 0...4 {
            let v = ymax * Double(k) / 4
            s += "<line x1=\"\(fmt(l))\" x2=\"\(fmt(width - r))\" y1=\"\(fmt(y(v)))\" y2=\"\(fmt(y(v)))\" class=\"grid\"/>"
            s += "<text x=\"\(fmt(l - 6))\" y=\"\(fmt(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%g", v))</text>"
        }
        for k in 0...3 {
            let tv = t0 + (t1 - t0) * Double(k) / 3
            let anchor = k == 0 ? "start" : k == 3 ? "end" : "middle"
            s += "<text x=\"\(fmt(x(tv)))\" y=\"\(fmt(h - 12))\" text-anchor=\"\(anchor)\">\(time(tv, seconds: t1 - t0 < 3600))</text>"
        }
        for (mt, label) in markers where mt >= t0 && mt <= t1 {
            s += "<line x1=\"\(fmt(x(mt)))\" x2=\"\(fmt(x(mt)))\" y1=\"\(fmt(t))\" y2=\"\(fmt(h - b))\" class=\"marker\"/>"
            s += "<text x=\"\(fmt(x(mt) + 4))\" y=\"\(fmt(t + 12))\" class=\"mlabel\">\(esc(label))</text>"
        }
        s += "<polyline class=\"series\" points=\"" + points.map { "\(fmt(x($0.0))),\(fmt(y($0.1)))" }.joined(separator: " ") + "\"/>"
        s += "<text x=\"\(fmt(l))\" y=\"12\" class=\"unit\">\(esc(unit))</text></svg>"
        return s
    }

    /// Horizontal bars, one per label.
    static func bars(_ rows: [(String, Double)], unit: String) -> String {
        guard !rows.isEmpty else { return "<p class=\"empty\">No regions yet: score traffic and report failures.</p>" }
        let rowH = 24.0, l = 290.0, r = 70.0
        let h = Double(rows.count) * rowH + 30
        let vmax = niceMax(rows.map(\.1).max() ?? 1)
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(h))\" role=\"img\">"
        for (i, (label, v)) in rows.enumerated() {
            let y = 10 + Double(i) * rowH
            let w = max(1, v / vmax * (width - l - r))
            s += "<text x=\"\(fmt(l - 8))\" y=\"\(fmt(y + 15))\" text-anchor=\"end\">\(esc(label))</text>"
            s += "<rect x=\"\(fmt(l))\" y=\"\(fmt(y + 3))\" width=\"\(fmt(w))\" height=\"\(fmt(rowH - 8))\" class=\"bar\"/>"
            s += "<text x=\"\(fmt(l + w + 6))\" y=\"\(fmt(y + 15))\">\(String(format: "%.2f", v))</text>"
        }
        s += "<text x=\"\(fmt(l))\" y=\"\(fmt(h - 4))\" class=\"unit\">\(esc(unit))</text></svg>"
        return s
    }

    /// Groups of bars (clean, typos) per version.
    static func groups(_ groups: [(String, [Double])], series: [String], unit: String) -> String {
        guard !groups.isEmpty else { return "<p class=\"empty\">No evaluation: pass --eval-dataset NAME.</p>" }
        let h = 260.0, l = 50.0, b = 40.0, t = 20.0
        let gw = (width - l - 20) / Double(groups.count)
        let bw = min(40, gw * 0.8 / Double(series.count))
        func y(_ v: Double) -> Double { t + (1 - v) * (h - t - b) }
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(h))\" role=\"img\">"
        for k in 0...4 {
            let v = Double(k) / 4
            s += "<line x1=\"\(fmt(l))\" x2=\"\(fmt(width - 20))\" y1=\"\(fmt(y(v)))\" y2=\"\(fmt(y(v)))\" class=\"grid\"/>"
            s += "<text x=\"\(fmt(l - 6))\" y=\"\(fmt(y(v) + 4))\" text-anchor=\"end\">\(Int(v * 100))%</text>"
        }
        for (g, (name, values)) in groups.enumerated() {
            let x0 = l + Double(g) * gw + (gw - bw * Double(series.count)) / 2
            for (k, v) in values.enumerated() {
                let x = x0 + Double(k) * bw
                s += "<rect x=\"\(fmt(x))\" y=\"\(fmt(y(v)))\" width=\"\(fmt(bw - 2))\" height=\"\(fmt(y(0) - y(v)))\" class=\"s\(k)\"/>"
                s += "<text x=\"\(fmt(x + bw / 2 - 1))\" y=\"\(fmt(y(v) - 4))\" text-anchor=\"middle\" class=\"small\">\(String(format: "%.1f", 100 * v))</text>"
            }
            s += "<text x=\"\(fmt(l + Double(g) * gw + gw / 2))\" y=\"\(fmt(h - 18))\" text-anchor=\"middle\">\(esc(name))</text>"
        }
        var lx = l
        for (k, name) in series.enumerated() {
            s += "<rect x=\"\(fmt(lx))\" y=\"\(fmt(h - 12))\" width=\"10\" height=\"10\" class=\"s\(k)\"/><text x=\"\(fmt(lx + 14))\" y=\"\(fmt(h - 3))\" class=\"small\">\(esc(name))</text>"
            lx += 110
        }
        s += "<text x=\"\(fmt(l))\" y=\"12\" class=\"unit\">\(esc(unit))</text></svg>"
        return s
    }

    /// Jobs as spans on a time axis.
    static func timeline(_ jobs: [(label: String, start: Double, end: Double, state: String)]) -> String {
        guard let t0 = jobs.map(\.start).min(), let t1 = jobs.map(\.end).max() else { return "<p class=\"empty\">No fine-tune jobs yet.</p>" }
        let rowH = 26.0, l = 230.0, r = 20.0
        let h = Double(jobs.count) * rowH + 36
        let span = max(1, t1 - t0)
        func x(_ v: Double) -> Double { l + (v - t0) / span * (width - l - r) }
        var s = "<svg width=\"\(Int(width))\" height=\"\(Int(h))\" role=\"img\">"
        for (i, j) in jobs.enumerated() {
            let y = 8 + Double(i) * rowH
            s += "<text x=\"\(fmt(l - 8))\" y=\"\(fmt(y + 15))\" text-anchor=\"end\">\(esc(j.label))</text>"
            s += "<rect x=\"\(fmt(x(j.start)))\" y=\"\(fmt(y + 3))\" width=\"\(fmt(max(3, x(j.end) - x(j.start))))\" height=\"\(fmt(rowH - 8))\" class=\"job \(j.state)\"><title>\(esc(j.state))</title></rect>"
        }
        s += "<text x=\"\(fmt(l))\" y=\"\(fmt(h - 6))\">\(time(t0, seconds: span < 3600))</text><text x=\"\(fmt(width - r))\" y=\"\(fmt(h - 6))\" text-anchor=\"end\">\(time(t1, seconds: span < 3600))</text></svg>"
        return s
    }
}

struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one self-contained HTML page (inline SVG): cost over time with promotions, top risk regions, accuracy clean vs typos per version, fine-tune jobs.")

    @Option(help: "Where to write the page.")
    var out = "report.html"

    @Option(help: "A labelled dataset to measure every usable version on (eval/run); without it the accuracy chart is left out.")
    var evalDataset: String?

    @Option(help: "Hours of history to draw.")
    var hours: Double = 24

    @OptionGroup var connection: Connection

    func run() throws {
        let c: RPCClient
        do { c = try RPCClient(path: connection.socketPath) } catch { fail("\(error)", code: 2) }
        let now = Date().timeIntervalSince1970
        let since = now - hours * 3600
        let status = try rpc(c, DaemonStatus.self, timeout: 60)
        let metrics = try rpc(c, MetricsGet.self, .init(metrics: ["requests", "expectedCostPer1000", "failures", "latencyP99Ms", "batchLatencyP99Ms", "version.active"]),
                              timeout: 60)
        let history = try rpc(c, MetricsHistory.self, .init(metric: "expectedCostPer1000.1m", since: since), timeout: 60)
        let versions = try rpc(c, ModelVersions.self, .init(), timeout: 60)
        let regions = try rpc(c, RiskRegions.self, .init(limit: 10, kind: .intent), timeout: 60)
        let jobs = try rpc(c, FineTuneList.self, .init(), timeout: 60)
        let rollouts = try rpc(c, RolloutList.self, timeout: 60).rollouts

        var points = history.points.map { ($0.at, $0.value) }
        // At most 300 points: averages over equal spans of the history there is.
        if points.count > 300, let first = points.first?.0, let last = points.last?.0 {
            let step = (last - first) / 300
            var buckets: [Int: (Double, Double, Int)] = [:]
            for (t, v) in points {
                let b = min(299, Int((t - first) / step))
                let e = buckets[b] ?? (0, 0, 0)
                buckets[b] = (e.0 + t, e.1 + v, e.2 + 1)
            }
            points = buckets.keys.sorted().map { b in let e = buckets[b]!; return (e.0 / Double(e.2), e.1 / Double(e.2)) }
        }
        // Versions: when each was made, and each rollout's transitions.
        var markers: [(Double, String)] = []
        for v in versions.versions { markers.append((v.createdAt, "v\(v.id)")) }
        for r in rollouts {
            for t in r.timeline.dropFirst() { markers.append((t.at, "v\(r.candidate) \(t.to.rawValue)")) }
        }
        let regionRows = regions.regions.map { ($0.label, $0.costPer1000) }

        var groups: [(String, [Double])] = []
        var series = ["clean"]
        if let ds = evalDataset {
            for v in versions.versions where [.active, .ready, .candidate].contains(v.status) {
                FileHandle.standardError.write(Data("measuring version \(v.id) on \(ds)…\n".utf8))
                var p = EvalRun.Params(dataset: ds)
                p.version = v.id
                guard let rep = try rpc(c, EvalRun.self, p, timeout: 1800).reports.first else { continue }
                series = ["clean"] + rep.typos.map { "\(Int(100 * $0.rate))% typos" }
                groups.append(("v\(v.id) (\(v.method))", [rep.accuracy] + rep.typos.map(\.accuracy)))
            }
        }
        let jobRows = jobs.jobs.reversed().map { j -> (label: String, start: Double, end: Double, state: String) in
            let label = "job \(j.id) \(j.method)" + (j.version.map { " → v\($0)" } ?? "")
            return (label, j.startedAt ?? j.createdAt, j.finishedAt ?? now, j.state.rawValue)
        }
        let rolloutHTML = rollouts.isEmpty ? "<p class=\"empty\">No rollouts yet.</p>" : rollouts.map(Self.rolloutTable).joined(separator: "\n")
        func v(_ name: String) -> String { metrics.values[name].map { String(format: "%.4g", $0) } ?? "–" }
        let html = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>robustd report</title>
        <style>
        body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 800px; color: #1b1f24; }
        h1 { font-size: 22px; margin-bottom: 2px; } h2 { font-size: 16px; margin-top: 28px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
        .meta { color: #57606a; } table { border-collapse: collapse; } td { padding: 2px 14px 2px 0; }
        svg text { font: 11px system-ui, sans-serif; fill: #24292f; } svg .small { font-size: 10px; } svg .unit { fill: #57606a; }
        .grid { stroke: #eaeef2; } .series { fill: none; stroke: #0969da; stroke-width: 2; } .marker { stroke: #cf222e; stroke-dasharray: 4 3; }
        .mlabel { fill: #cf222e; } .bar { fill: #bf8700; } .s0 { fill: #0969da; } .s1 { fill: #8250df; } .s2 { fill: #bf3989; } .s3 { fill: #1a7f37; }
        .job { fill: #8c959f; } .job.succeeded { fill: #1a7f37; } .job.failed, .job.interrupted { fill: #cf222e; } .job.running { fill: #0969da; } .job.cancelled { fill: #bf8700; }
        .empty { color: #57606a; font-style: italic; } .rollout td { vertical-align: top; } .rollout .why { color: #57606a; }
        .stage { font-weight: 600; } .stage.promoted { color: #1a7f37; } .stage.rolled-back { color: #cf222e; } .stage.canary { color: #bf8700; }
        </style></head><body>
        <h1>robustd report</h1>
        <div class="meta">\(SVG.esc(SVG.time(now))) UTC · robustd \(SVG.esc(status.version)) · active version \(versions.active.map(String.init) ?? "none") · up \(String(format: "%.0f", status.uptimeSeconds)) s</div>
        <h2>Now</h2>
        <table>
        <tr><td>requests, last hour</td><td>\(v("requests.1h"))</td><td>last 24 h</td><td>\(v("requests.24h"))</td></tr>
        <tr><td>expected cost per 1,000 requests, last hour</td><td>\(v("expectedCostPer1000.1h"))</td><td>last 24 h</td><td>\(v("expectedCostPer1000.24h"))</td></tr>
        <tr><td>failure reports, last hour</td><td>\(v("failures.1h"))</td><td>last 24 h</td><td>\(v("failures.24h"))</td></tr>
        <tr><td>score latency p99, one-input requests, last hour (ms)</td><td>\(v("latencyP99Ms.1h"))</td><td></td><td></td></tr>
        <tr><td>score latency p99, batch requests, last hour (ms)</td><td>\(v("batchLatencyP99Ms.1h"))</td><td></td><td></td></tr>
        </table>
        <h2>Expected cost per 1,000 requests, last \(String(format: "%g", hours)) h</h2>
        \(SVG.line(points, markers: markers.filter { $0.0 >= since }, unit: "cost per 1,000 requests (1-minute windows, averaged); red: versions"))
        <h2>Riskiest regions now</h2>
        \(SVG.bars(regionRows, unit: "expected cost per 1,000 requests from each intent (risk/regions)"))
        <h2>Accuracy per version, clean and under word typos\(evalDataset.map { " (eval/run on \(SVG.esc($0)))" } ?? "")</h2>
        \(SVG.groups(groups, series: series, unit: "accuracy on in-scope examples"))
        <h2>Fine-tune jobs</h2>
        \(SVG.timeline(jobRows))
        <h2>Rollouts</h2>
        \(rolloutHTML)
        </body></html>
        """
        do { try html.write(toFile: out, atomically: true, encoding: .utf8) } catch { fail("cannot write \(out): \(error)", code: 1) }
        print("wrote \(out) (\(html.utf8.count) bytes): \(points.count) history points, \(regionRows.count) regions, \(groups.count) versions measured, \(jobRows.count) jobs, \(rollouts.count) rollouts")
    }

    /// One rollout: its timeline, each transition with the numbers it rested on.
    static func rolloutTable(_ r: RolloutView) -> String {
        func n(_ v: Int?) -> String { v.map(String.init) ?? "–" }
        var rows: [String] = []
        for t in r.timeline {
            let e = t.evidence
            let to = t.to.rawValue
            let numbers = "\(e.shadowRequests) inputs shadowed, \(e.disagreements) disagreements, \(e.labels) reviewed occurrences counted"
                + (e.effect.map { String(format: ", effect %+.3f", $0) } ?? "")
                + "; canary requests \(n(e.canaryRequests["candidate"])) candidate / \(n(e.canaryRequests["control"])) control"
                + ", failure reports \(n(e.failureReports["candidate"])) / \(n(e.failureReports["control"]))"
                + String(format: "; e-values better %.3g, worse %.3g", e.betterEValue, e.worseEValue)
            rows.append("<tr><td>\(SVG.esc(SVG.time(t.at, seconds: true)))</td><td class=\"stage \(SVG.esc(to))\">\(SVG.esc(to))</td>"
                        + "<td>by \(SVG.esc(t.by))</td><td>\(SVG.esc(t.reason))<br><span class=\"why\">\(SVG.esc(numbers))</span></td></tr>")
        }
        return "<p>rollout \(r.id): version \(r.candidate) against version \(r.control), now <span class=\"stage \(SVG.esc(r.stage.rawValue))\">\(SVG.esc(r.stage.rawValue))</span></p>"
            + "<table class=\"rollout\">" + rows.joined() + "</table>"
    }
}
