import Prepaid

/// Money and units as people write them, parsed and printed with integer arithmetic only (docs/STORE.md).
public enum Amount {
    /// Parses "100", "100.5" or "100.00" in major units of `currency` exactly; refuses more decimals than the
    /// currency has, signs other than a leading "-", exponents, grouping and anything that overflows 64 bits.
    public static func parse(_ text: String, currency: Currency) throws(StoreError) -> Money {
        let trimmed = text.trimmedBlanks
        var body = Substring(trimmed)
        var negative = false
        if body.first == "-" {
            negative = true
            body = body.dropFirst()
        } else if body.first == "+" {
            body = body.dropFirst()
        }
        let parts = body.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let whole = parts.first, !whole.isEmpty,
              whole.allSatisfy({ $0.isASCII && $0.isNumber })
        else { throw .invalidAmount(text, reason: "write it as digits with an optional decimal point, e.g. 100.00") }
        let fraction = parts.count == 2 ? parts[1] : ""
        guard fraction.allSatisfy({ $0.isASCII && $0.isNumber }), parts.count == 1 || !fraction.isEmpty else {
            throw .invalidAmount(text, reason: "write it as digits with an optional decimal point, e.g. 100.00")
        }
        let digits = Int(currency.minorDigits)
        guard fraction.count <= digits else {
            throw .invalidAmount(
                text, reason: "\(currency.code) has \(digits) decimal places (1 \(currency.minorUnitName) is the "
                    + "smallest amount)")
        }
        let padded = String(fraction) + String(repeating: "0", count: digits - fraction.count)
        guard let w = Int64(whole), let f = Int64(padded.isEmpty ? "0" : padded) else {
            throw .invalidAmount(text, reason: "too large")
        }
        let scaled = w.multipliedReportingOverflow(by: currency.minorPerMajor)
        guard !scaled.overflow else { throw .invalidAmount(text, reason: "too large") }
        let sum = scaled.partialValue.addingReportingOverflow(f)
        guard !sum.overflow else { throw .invalidAmount(text, reason: "too large") }
        return Money(minor: negative ? -sum.partialValue : sum.partialValue, currency)
    }

    /// "100.00 CNY".
    public static func text(_ minor: Int64, _ currency: String) -> String {
        "\(Money(minor: minor, StoreCurrency.named(currency)).majorText) \(currency)"
    }

    /// "189286 Wh (189.286 kWh)", "7142 L (7.142 m³)".
    public static func units(_ count: Int64, _ kind: Int64) -> String {
        let unit = UnitKind(rawValue: UInt8(truncatingIfNeeded: kind)) ?? .wattHours
        let big = unit == .wattHours ? "kWh" : "m³"
        let sign = count < 0 ? "-" : ""
        let m = count.magnitude
        let frac = String(m % 1000)
        return "\(count) \(unit.symbol) (\(sign)\(m / 1000).\(String(repeating: "0", count: 3 - frac.count))\(frac) \(big))"
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmedBlanks: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return String(s)
    }
}
