/// A JSON value with ordered object keys, so decoded output reads in wire order and golden files diff cleanly.
public indirect enum JSONValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.rendered() == b.rendered() }
    public func hash(into h: inout Hasher) { h.combine(self.rendered()) }

    /// Compact JSON on one line (`--json` output is one object per line).
    public func rendered() -> String {
        var out = ""
        self.render(into: &out, indent: nil, level: 0)
        return out
    }

    /// Indented JSON for files people review as diffs.
    public func pretty() -> String {
        var out = ""
        self.render(into: &out, indent: "  ", level: 0)
        return out
    }

    private func render(into out: inout String, indent: String?, level: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .string(let s): Self.quote(s, into: &out)
        case .array(let items):
            Self.container("[", "]", items.count, into: &out, indent: indent, level: level) { i, out in
                items[i].render(into: &out, indent: indent, level: level + 1)
            }
        case .object(let members):
            Self.container("{", "}", members.count, into: &out, indent: indent, level: level) { i, out in
                Self.quote(members[i].0, into: &out)
                out += indent == nil ? ":" : ": "
                members[i].1.render(into: &out, indent: indent, level: level + 1)
            }
        }
    }

    private static func container(
        _ open: String, _ close: String, _ count: Int, into out: inout String, indent: String?, level: Int,
        _ item: (Int, inout String) -> Void
    ) {
        out += open
        guard count > 0 else { return out += close }
        for i in 0..<count {
            if i > 0 { out += "," }
            if let indent { out += "\n" + String(repeating: indent, count: level + 1) }
            item(i, &out)
        }
        if let indent { out += "\n" + String(repeating: indent, count: level) }
        out += close
    }

    private static func quote(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let h = Array("0123456789abcdef")
                out += "\\u00" + String(h[Int(scalar.value >> 4)]) + String(h[Int(scalar.value & 0xF)])
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

extension FieldValue {
    public var json: JSONValue {
        switch self {
        case .unsigned(let u): .uint(u)
        case .signed(let i): .int(i)
        case .quantity(let v, let unit): .object([("value", .int(v)), ("unit", .string(unit))])
        case .text(let s): .string(s)
        case .flag(let b): .bool(b)
        case .bytes(let b): .string(hexString(b))
        case .code(let raw, let name): .string(name == "unknown" ? "unknown(\(raw))" : name)
        case .bits(_, let names): .array(names.map { .string($0) })
        case .time(let t): .string(UTCTime.iso8601(t))
        case .records(let rows): .array(rows.map(Field.jsonObject))
        }
    }
}

extension Field {
    public static func jsonObject(_ fields: [Field]) -> JSONValue { .object(fields.map { ($0.name, $0.value.json) }) }
}

/// Calendar arithmetic on Unix seconds, without Foundation (the wire layer reads no clock and needs no locale).
public enum UTCTime {
    /// `2026-11-25T15:04:05Z`.
    public static func iso8601(_ seconds: UInt32) -> String {
        let c = Self.components(Int64(seconds))
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(c.year)-\(two(c.month))-\(two(c.day))T\(two(c.hour)):\(two(c.minute)):\(two(c.second))Z"
    }

    /// Civil date and time of Unix `seconds` (proleptic Gregorian, UTC); H. Hinnant's days-to-civil.
    public static func components(_ seconds: Int64)
        -> (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int)
    {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secs = Int(seconds - days * 86_400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = Int(yoe + era * 400) + (month <= 2 ? 1 : 0)
        return (year, month, day, secs / 3600, secs % 3600 / 60, secs % 60)
    }

    /// Unix seconds of a civil UTC date and time.
    public static func seconds(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0)
        -> Int64
    {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return days * 86_400 + Int64(hour * 3600 + minute * 60 + second)
    }
}
