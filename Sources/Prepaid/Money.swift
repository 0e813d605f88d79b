/// A currency and its minor unit. Amounts are always whole minor units (fen for CNY); see docs/CARD.md §2.
public struct Currency: Hashable, Sendable, Codable, CustomStringConvertible {
    /// ISO 4217 code, e.g. "CNY".
    public var code: String
    /// The minor unit's name, e.g. "fen".
    public var minorUnitName: String
    /// Digits of the minor unit: 2 means 100 minor units to the major unit.
    public var minorDigits: UInt8

    public init(code: String, minorUnitName: String, minorDigits: UInt8) {
        self.code = code
        self.minorUnitName = minorUnitName
        self.minorDigits = minorDigits
    }

    /// Chinese yuan, counted in fen (1 yuan = 100 fen).
    public static let cny = Currency(code: "CNY", minorUnitName: "fen", minorDigits: 2)

    public var description: String { self.code }

    /// Minor units per major unit (100 for CNY).
    public var minorPerMajor: Int64 {
        var n: Int64 = 1
        for _ in 0..<self.minorDigits { n *= 10 }
        return n
    }
}

/// Why an amount could not be computed: the only failure of integer money arithmetic.
public enum MoneyError: Error, Hashable, Sendable {
    /// The result does not fit in 64 bits.
    case overflow
    /// Two amounts in different currencies were combined.
    case currencyMismatch(Currency, Currency)
}

/// An amount of money in whole minor units of a named currency. Integer only; arithmetic is overflow-checked and
/// throws `MoneyError` instead of wrapping or trapping.
public struct Money: Hashable, Sendable, Codable, CustomStringConvertible {
    public var amountMinor: Int64
    public var currency: Currency

    public init(minor amountMinor: Int64, _ currency: Currency) {
        self.amountMinor = amountMinor
        self.currency = currency
    }

    /// `fen` of Chinese yuan.
    public static func fen(_ amount: Int64) -> Money { Money(minor: amount, .cny) }

    public static func zero(_ currency: Currency) -> Money { Money(minor: 0, currency) }

    public func adding(_ other: Money) throws(MoneyError) -> Money {
        guard other.currency == self.currency else { throw .currencyMismatch(self.currency, other.currency) }
        let (sum, overflow) = self.amountMinor.addingReportingOverflow(other.amountMinor)
        if overflow { throw .overflow }
        return Money(minor: sum, self.currency)
    }

    public func subtracting(_ other: Money) throws(MoneyError) -> Money {
        guard other.currency == self.currency else { throw .currencyMismatch(self.currency, other.currency) }
        let (difference, overflow) = self.amountMinor.subtractingReportingOverflow(other.amountMinor)
        if overflow { throw .overflow }
        return Money(minor: difference, self.currency)
    }

    public func multiplied(by factor: Int64) throws(MoneyError) -> Money {
        let (product, overflow) = self.amountMinor.multipliedReportingOverflow(by: factor)
        if overflow { throw .overflow }
        return Money(minor: product, self.currency)
    }

    /// "1234 fen (12.34 CNY)".
    public var description: String {
        "\(self.amountMinor) \(self.currency.minorUnitName) (\(self.majorText) \(self.currency.code))"
    }

    /// The amount in major units with the minor digits, e.g. "12.34". Integer formatting only.
    public var majorText: String {
        let perMajor = self.currency.minorPerMajor
        let magnitude = self.amountMinor.magnitude
        let whole = magnitude / UInt64(perMajor)
        let fraction = String(magnitude % UInt64(perMajor))
        let digits = Int(self.currency.minorDigits)
        let sign = self.amountMinor < 0 ? "-" : ""
        guard digits > 0 else { return "\(sign)\(whole)" }
        return "\(sign)\(whole).\(String(repeating: "0", count: digits - fraction.count))\(fraction)"
    }
}
