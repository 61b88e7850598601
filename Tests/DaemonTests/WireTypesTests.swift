import Foundation
import JSON
import JSONRPC
import RobustdAPI
import Testing

/// The typed shapes that stand where a method takes one of several forms: region selections,
/// times, and the reports a version or a job carries.
@Suite("Wire types")
struct WireTypesTests {
    private func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONValueDecoder().decode(type, fromJSON: json)
    }

    private func error<T: Decodable>(_ type: T.Type, _ json: String) -> JSONDecodingError? {
        do { _ = try decode(type, json); return nil } catch { return error as? JSONDecodingError }
    }

    @Test("finetune/start regions: auto, all or region ids; anything else names the field and what it takes")
    func regionSelection() throws {
        #expect(try decode(FineTuneStart.Params.self, #"{"regions":"auto"}"#).regions == .auto)
        #expect(try decode(FineTuneStart.Params.self, #"{"regions":"all"}"#).regions == .all)
        #expect(try decode(FineTuneStart.Params.self, #"{"regions":["intent:a","cluster:2"]}"#).regions == .ids(["intent:a", "cluster:2"]))
        #expect(try decode(FineTuneStart.Params.self, #"{}"#).regions == nil)
        for bad in [#""some""#, "[]", "[1]", "3", "{}"] {
            let e = error(FineTuneStart.Params.self, #"{"regions":"# + bad + "}")
            #expect(e?.path == "regions", "\(bad)")
            #expect(e?.expected.contains("\"auto\", \"all\"") == true)
        }
        var params = FineTuneStart.Params()
        params.regions = .ids(["intent:a"])
        let wire = try JSONBytesEncoder().string(params)
        #expect(wire.contains(#""regions":["intent:a"]"#), "\(wire)")
        #expect(try JSONBytesEncoder().string(RegionSelection.all) == #""all""#)
    }

    @Test("feedback/report at: seconds since 1970 or ISO 8601 (with or without fractions); written as seconds")
    func timestamps() throws {
        #expect(try decode(Timestamp.self, "1764000000.5").secondsSince1970 == 1_764_000_000.5)
        #expect(try decode(Timestamp.self, #""2026-11-29T10:00:00Z""#).secondsSince1970 == 1_795_946_400)
        #expect(try decode(Timestamp.self, #""2026-11-29T10:00:00.250Z""#).secondsSince1970 == 1_795_946_400.25)
        for bad in ["-1", #""yesterday""#, "true", "[1]"] {
            let e = error(FeedbackReport.Params.self, #"{"kind":"complaint","at":"# + bad + "}")
            #expect(e?.path == "at", "\(bad)")
            #expect(e?.expected.contains("ISO 8601") == true)
        }
        #expect(try JSONBytesEncoder().string(Timestamp(secondsSince1970: 12.5)) == "12.5")
    }

    @Test("a version's report decodes as model/fit's or a fine-tune's; another release's shape is kept as stored")
    func versionReports() throws {
        let fit = #"{"lambda":0.01,"lambdasTried":[0.1,0.01],"validationAccuracyByLambda":[0.8,0.9],"trainAccuracy":0.95,"#
            + #""validationAccuracy":0.9,"temperature":1.2,"eceBefore":0.05,"eceAfter":0.02,"oosThreshold":3.5,"#
            + #""oosTargetRecall":0.95,"iterations":40,"converged":true}"#
        let f = try decode(VersionReport.self, fit)
        #expect(f.fit?.validationAccuracy == 0.9 && f.fineTune == nil)
        // Re-encoded, it is the same object (no wrapper around the report).
        let again = try JSONParser.parse(try JSONBytesEncoder().string(f))
        #expect(again == (try JSONParser.parse(fit)))

        let other = try decode(VersionReport.self, #"{"note":"made by robustd 9","lambda":"high"}"#)
        guard case .unrecognised(let v) = other else { Issue.record("\(other)"); return }
        #expect(v["note"] == "made by robustd 9")
        #expect(try JSONBytesEncoder().string(other).contains("made by robustd 9"))
        guard case .unrecognised = try decode(VersionReport.self, "{}") else { Issue.record("{} decoded as a report"); return }
    }
}
