import Foundation
import JSON
import JSONRPC
import Testing

/// Validates results against the JSON Schemas in schemas/openrpc.json.
///
/// Supports the subset the document uses: type (one or several), properties, required,
/// additionalProperties, items, enum, minimum/maximum, $ref to #/components/schemas, anyOf/oneOf.
struct SchemaValidator {
    let document: JSONValue

    static let shared: SchemaValidator = {
        let url = Binaries.packageRoot.appendingPathComponent("schemas/openrpc.json")
        let data = try! Data(contentsOf: url)
        return SchemaValidator(document: try! JSONParser.parse(Array(data)))
    }()

    var methodNames: [String] { (document["methods"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue } }

    func resultSchema(of method: String) -> JSONValue? {
        document["methods"]?.arrayValue?.first { $0["name"]?.stringValue == method }?["result"]?["schema"]
    }

    /// Problems found validating `value` as the result of `method` (empty: valid).
    func validateResult(_ value: JSONValue, method: String) -> [String] {
        guard let schema = resultSchema(of: method) else { return ["no result schema for \(method)"] }
        var problems: [String] = []
        validate(value, schema, path: "result", &problems)
        return problems
    }

    /// Records a test issue for every way `value` breaks the result schema of `method`.
    func expectValid(_ value: JSONValue, method: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let problems = validateResult(value, method: method)
        if !problems.isEmpty { Issue.record("\(method) result breaks its schema: \(problems)", sourceLocation: sourceLocation) }
    }

    func validate(_ v: JSONValue, _ schema: JSONValue, path: String, _ problems: inout [String]) {
        if let ref = schema["$ref"]?.stringValue {
            let name = ref.replacingOccurrences(of: "#/components/schemas/", with: "")
            guard let target = document["components"]?["schemas"]?[name] else { problems.append("\(path): unresolved \(ref)"); return }
            validate(v, target, path: path, &problems)
            return
        }
        if let any = schema["anyOf"]?.arrayValue ?? schema["oneOf"]?.arrayValue {
            let ok = any.contains { s in var p: [String] = []; validate(v, s, path: path, &p); return p.isEmpty }
            if !ok { problems.append("\(path): matches none of the alternatives") }
            return
        }
        if let t = schema["type"] {
            let types = t.arrayValue?.compactMap(\.stringValue) ?? [t.stringValue ?? ""]
            if !types.contains(where: { matches(v, $0) }) {
                problems.append("\(path): expected \(types.joined(separator: "|")), got \(v.typeName)")
                return
            }
        }
        if let e = schema["enum"]?.arrayValue, !e.contains(v) { problems.append("\(path): \(v) not in enum") }
        if let min = schema["minimum"]?.doubleValue, let d = v.doubleValue, d < min { problems.append("\(path): \(d) < \(min)") }
        if let max = schema["maximum"]?.doubleValue, let d = v.doubleValue, d > max { problems.append("\(path): \(d) > \(max)") }
        if case .object(let o) = v {
            let props = schema["properties"]?.objectValue ?? [:]
            for r in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where o[r] == nil {
                problems.append("\(path).\(r): required but missing")
            }
            for (k, child) in o {
                if let ps = props[k] { validate(child, ps, path: "\(path).\(k)", &problems) }
                else if schema["additionalProperties"] == .bool(false) { problems.append("\(path).\(k): not allowed") }
                else if let ap = schema["additionalProperties"], ap.objectValue != nil { validate(child, ap, path: "\(path).\(k)", &problems) }
            }
        }
        if case .array(let a) = v, let items = schema["items"] {
            for (i, child) in a.enumerated() { validate(child, items, path: "\(path)[\(i)]", &problems) }
        }
    }

    private func matches(_ v: JSONValue, _ type: String) -> Bool {
        switch (type, v) {
        case ("null", .null), ("boolean", .bool), ("integer", .int), ("number", .int), ("number", .double),
             ("string", .string), ("array", .array), ("object", .object): return true
        case ("integer", .double(let d)): return d.rounded() == d
        default: return false
        }
    }
}
