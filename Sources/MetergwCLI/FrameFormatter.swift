import MeterProtocol

/// Human-readable lines for decoded frames and skipped runs (the JSON form comes from MeterProtocol).
enum FrameFormatter {
    static func lines(for item: DecodedItem, bytes: ArraySlice<UInt8>? = nil, timestamp: String? = nil) -> [String] {
        let prefix = timestamp.map { "\($0) " } ?? ""
        switch item {
        case .skipped(let offset, let count, let reason):
            var line = "\(prefix)@\(pad(offset, 6)) garbage   \(count) B: \(reason.explanation)"
            if let bytes { line += "\n" + indent + hexString(bytes.prefix(48)) + (bytes.count > 48 ? " …" : "") }
            return [line]
        case .frame(let frame, let offset):
            var header = "\(prefix)@\(pad(offset, 6)) \(frame.direction.padding(9)) "
            header += "\(Command.name(of: frame.command).padding(18)) addr \(frame.address)"
            header += " serial \(frame.serial == Frame.anySerial ? "any" : String(frame.serial))"
            header += " seq \(frame.sequence) (\(frame.encodedLength) B)"
            if frame.version != Frame.currentVersion { header += " version \(frame.version)" }
            var out = [header]
            switch frame.decodeMessage() {
            case .message(let message): out += self.fieldLines(message.fields, depth: 1)
            case .nak(let nak): out += self.fieldLines(nak.fields, depth: 1)
            case .invalid(let error):
                out.append(indent + "invalid payload: \(error.explanation)")
                out.append(indent + "payload: \(hexString(frame.payload))")
            }
            return out
        }
    }

    static let indent = "          "

    static func fieldLines(_ fields: [Field], depth: Int) -> [String] {
        let pad = String(repeating: "  ", count: depth - 1) + indent
        var out: [String] = []
        for field in fields {
            if case .records(let rows) = field.value {
                out.append("\(pad)\(field.name) (\(rows.count))")
                for row in rows {
                    out.append(pad + "  - " + row.map { "\($0.name) \(self.text($0.value))" }.joined(separator: ", "))
                }
            } else {
                out.append("\(pad)\(field.name.padding(22)) \(self.text(field.value))")
            }
        }
        return out
    }

    /// A value with its unit, and a larger unit where it helps (1234567 Wh (1234.567 kWh)).
    static func text(_ value: FieldValue) -> String {
        switch value {
        case .unsigned(let u): return String(u)
        case .signed(let i): return String(i)
        case .quantity(let v, let unit):
            // "units" stands for the meter's base unit where the frame alone does not say which (Wh or L).
            let base = "\(v) \(unit)"
            switch unit {
            case "Wh" where abs(v) >= 1000: return base + " (\(decimal(v, scale: 3)) kWh)"
            case "L" where abs(v) >= 1000: return base + " (\(decimal(v, scale: 3)) m³)"
            case "W" where v >= 1000: return base + " (\(decimal(v, scale: 3)) kW)"
            default: return base
            }
        case .text(let s): return s
        case .flag(let b): return b ? "yes" : "no"
        case .bytes(let b): return b.isEmpty ? "(none)" : hexString(b)
        case .code(let raw, let name): return name == "unknown" ? "unknown (\(raw))" : name
        case .bits(let raw, let names): return names.isEmpty ? "none" : names.joined(separator: ", ") + " (0x\(String(raw, radix: 16)))"
        case .time(let t): return UTCTime.iso8601(t)
        case .records(let rows): return "\(rows.count) records"
        }
    }

    /// An integer shown with `scale` decimal places, e.g. 1234567 at scale 3 is "1234.567". Integer math only.
    static func decimal(_ value: Int64, scale: Int) -> String {
        var divisor: Int64 = 1
        for _ in 0..<scale { divisor *= 10 }
        let sign = value < 0 ? "-" : ""
        let magnitude = value.magnitude
        let whole = magnitude / UInt64(divisor)
        let fraction = String(magnitude % UInt64(divisor))
        return "\(sign)\(whole).\(String(repeating: "0", count: scale - fraction.count))\(fraction)"
    }

    static func pad(_ n: Int, _ width: Int) -> String { String(n).padding(width) }
}

extension String {
    func padding(_ width: Int) -> String { self.count >= width ? self : self + String(repeating: " ", count: width - self.count) }
}
