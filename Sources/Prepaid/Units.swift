import MeterProtocol

/// The unit a meter counts and sells in (docs/CARD.md §2): watt-hours for electricity and heat, litres for water.
public enum UnitKind: UInt8, CaseIterable, Hashable, Sendable, Codable {
    case wattHours = 1
    case litres = 2

    /// The unit's symbol as the protocol and the CLI print it.
    public var symbol: String { self == .wattHours ? "Wh" : "L" }

    /// The unit a meter of `kind` counts in; nil for devices that meter nothing (card writers).
    public init?(meterKind kind: DeviceKind) {
        switch kind {
        case .electricity, .heat: self = .wattHours
        case .water: self = .litres
        case .cardWriter: return nil
        }
    }
}

/// Energy in whole watt-hours (electricity, heat).
public struct EnergyWh: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var wh: UInt64
    public init(_ wh: UInt64) { self.wh = wh }
    public static func < (a: Self, b: Self) -> Bool { a.wh < b.wh }
    public var description: String { "\(self.wh) Wh" }
    public var units: Units { Units(self.wh, .wattHours) }
}

/// Water in whole litres.
public struct VolumeLitres: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public var litres: UInt64
    public init(_ litres: UInt64) { self.litres = litres }
    public static func < (a: Self, b: Self) -> Bool { a.litres < b.litres }
    public var description: String { "\(self.litres) L" }
    public var units: Units { Units(self.litres, .litres) }
}

/// A whole number of a meter's units, with the unit it counts: what tariffs sell and cards carry.
public struct Units: Hashable, Sendable, Codable, CustomStringConvertible {
    public var count: UInt64
    public var kind: UnitKind

    public init(_ count: UInt64, _ kind: UnitKind) {
        self.count = count
        self.kind = kind
    }

    public static func wh(_ count: UInt64) -> Units { Units(count, .wattHours) }
    public static func litres(_ count: UInt64) -> Units { Units(count, .litres) }

    public var description: String { "\(self.count) \(self.kind.symbol)" }
}
