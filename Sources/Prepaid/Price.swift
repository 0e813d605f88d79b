/// A price per unit, exact: millionths of a minor unit per unit (µfen/Wh, µfen/L), docs/CARD.md §2.1.
///
/// 0.5283 yuan/kWh is 52.83 fen per 1000 Wh, i.e. 0.05283 fen/Wh = 52830 µfen/Wh. Any price with up to five decimal
/// places of yuan per kWh (or per m³ of water) is exact in this form, and so is everything computed from it.
public struct Price: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// One minor unit is this many price units: prices and values are computed in millionths of a minor unit.
    public static let microPerMinor: UInt64 = 1_000_000

    public var microMinorPerUnit: UInt64

    public init(microMinorPerUnit: UInt64) { self.microMinorPerUnit = microMinorPerUnit }

    public static func < (a: Self, b: Self) -> Bool { a.microMinorPerUnit < b.microMinorPerUnit }

    /// A price written as people do, in major units per thousand units (yuan per kWh, yuan per m³), e.g. "0.5283".
    /// Nil unless the text is a plain non-negative decimal that is exact in µminor per unit.
    public init?(majorPerThousandUnits text: String, currency: Currency) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let wholeText = parts.first, !wholeText.isEmpty,
              wholeText.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        let fractionText = parts.count == 2 ? parts[1] : ""
        guard fractionText.allSatisfy({ $0.isASCII && $0.isNumber }), parts.count == 1 || !fractionText.isEmpty,
              wholeText.count + fractionText.count <= 18, let digits = UInt64(wholeText + fractionText)
        else { return nil }
        // value = digits / 10^scale major per 1000 units = digits * minorPerMajor * 10^6 / (1000 * 10^scale) µminor.
        var numerator = digits.multipliedReportingOverflow(by: UInt64(currency.minorPerMajor))
        guard !numerator.overflow else { return nil }
        numerator = numerator.partialValue.multipliedReportingOverflow(by: Self.microPerMinor)
        guard !numerator.overflow else { return nil }
        var denominator: UInt64 = 1000
        for _ in 0..<fractionText.count { denominator *= 10 }
        guard numerator.partialValue % denominator == 0 else { return nil }
        self.microMinorPerUnit = numerator.partialValue / denominator
    }

    /// "52830 µfen/unit".
    public var description: String { "\(self.microMinorPerUnit) µminor/unit" }

    /// The price in major units per thousand units, e.g. "0.5283" (trailing zeros trimmed, at least 2 decimals).
    public func majorPerThousandUnitsText(_ currency: Currency) -> String {
        // µminor/unit * 1000 units / 10^6 / minorPerMajor = major; keep it as a decimal with enough digits.
        let scaleDigits = 3 + Int(currency.minorDigits)  // 10^6 / 1000 * minorPerMajor = 10^(3 + minorDigits)
        var divisor: UInt64 = 1
        for _ in 0..<scaleDigits { divisor *= 10 }
        let whole = self.microMinorPerUnit / divisor
        var fraction = String(self.microMinorPerUnit % divisor)
        fraction = String(repeating: "0", count: scaleDigits - fraction.count) + fraction
        while fraction.count > 2 && fraction.hasSuffix("0") { fraction.removeLast() }
        return "\(whole).\(fraction)"
    }
}
