import Foundation
import JSON
import RobustdAPI
import RobustdClient
import RobustdTestSupport
import Testing

/// contrib/: the Grafana dashboard and the Prometheus configuration of a fleet (docs/fleet.md).
/// Grafana is in neither Debian nor PyPI, so the dashboard is checked by structure, by
/// promtool (every query parses as PromQL), and against a real daemon's exposition (every
/// metric it queries exists).
@Suite("contrib: the fleet's dashboard and Prometheus configuration")
struct DashboardTests {
    static var promtool: String? { ["/usr/bin/promtool", "/usr/local/bin/promtool"].first { FileManager.default.isExecutableFile(atPath: $0) } }

    @Test("the Grafana dashboard imports as is: panels, a Prometheus data source input, queries that parse, metrics that exist")
    func dashboard() throws {
        let root = Binaries.packageRoot.path
        let d = try JSONParser.parse(Array(try Data(contentsOf: URL(fileURLWithPath: root + "/contrib/grafana/robustd-fleet.json"))))
        #expect(d["title"] == "robustd fleet" && d["uid"] == "robustd-fleet" && (d["schemaVersion"]?.intValue ?? 0) >= 30)
        #expect(d["templating"]?["list"]?[0]?["type"] == "datasource")
        let panels = try #require(d["panels"]?.arrayValue)
        #expect(panels.count >= 7)
        #expect(Set(panels.compactMap { $0["id"]?.intValue }).count == panels.count)
        var exprs: [String] = []
        for p in panels {
            #expect(p["datasource"]?["uid"] == "${datasource}", "\(p["title"] ?? .null)")
            #expect(p["gridPos"]?["w"]?.intValue != nil && ["timeseries", "bargauge"].contains(p["type"]?.stringValue ?? ""))
            let targets = try #require(p["targets"]?.arrayValue)
            #expect(!targets.isEmpty)
            exprs += targets.compactMap { $0["expr"]?.stringValue }
        }
        // The floor's figures are all there.
        let all = exprs.joined(separator: "\n")
        for name in ["robustd_expected_cost_total", "robustd_failure_reports_total", "robustd_intent_expected_cost_per_1000_requests",
                     "robustd_score_request_duration_seconds_bucket", "robustd_active_version", "robustd_rollout_expected_cost_per_1000_requests",
                     "robustd_store_up"] {
            #expect(all.contains(name), "the dashboard does not show \(name)")
        }
        // Every query parses (promtool checks PromQL in rule files).
        if let promtool = Self.promtool {
            let dir = TempDir()
            var rules = "groups:\n  - name: dashboard\n    rules:\n"
            for (i, e) in exprs.enumerated() {
                rules += "      - record: dashboard:q\(i)\n        expr: '\(e.replacingOccurrences(of: "'", with: "''"))'\n"
            }
            try rules.write(toFile: dir.path + "/rules.yml", atomically: true, encoding: .utf8)
            let (status, out, err) = try run(URL(fileURLWithPath: promtool), ["check", "rules", dir.path + "/rules.yml"])
            #expect(status == 0, "promtool: \(out) \(err)")
            for f in ["robustd-fleet.yml", "robustd-fleet.rules.yml"] {
                let (s, o, e) = try run(URL(fileURLWithPath: promtool), [f.hasSuffix("rules.yml") ? "check" : "check", f.hasSuffix("rules.yml") ? "rules" : "config",
                                                                          root + "/contrib/prometheus/" + f])
                #expect(s == 0, "promtool on \(f): \(o) \(e)")
            }
        } else if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record("promtool is missing in CI")
        }
        // Every metric queried is exported: by a daemon with a version, traffic and reports, or
        // (the rollout's families, present only during a rollout) documented in docs/metrics.md.
        let model = TempFolder()
        try TinyModel.write(to: model.path)
        let state = TempDir()
        let (daemon, c) = try FineTuneTests.prepared(state: state, model: model)
        defer { withExtendedLifetime(daemon) {} }
        let exposition = try c.call(MetricsPrometheus.self).get().text
        let metricsDoc = try String(contentsOfFile: root + "/docs/metrics.md", encoding: .utf8)
        let names = Set(all.matches(of: /robustd_[a-z0-9_]+/).map { String($0.output) })
        for n in names {
            let family = n.hasSuffix("_bucket") ? String(n.dropLast(7)) : n
            let exported = exposition.contains("# TYPE \(family) ")
            #expect(exported || (family.hasPrefix("robustd_rollout_") && metricsDoc.contains(family)), "\(family) is neither exported nor documented")
        }
    }
}
