/// How much a meter draws over a day: an hourly shape, a peak demand, and seeded randomness (docs/EMULATOR.md).
public struct LoadProfile: Codable, Sendable, Equatable {
    /// Relative demand for each hour of the day, in per mille of `peakDemand` (24 values).
    public var hourlyPerMille: [UInt16]
    /// Demand at the peak hour: W for energy meters, L/h for water.
    public var peakDemand: UInt32
    /// Random variation around the shape, ± per mille.
    public var jitterPerMille: UInt16

    /// A household: low at night, a morning bump, the evening peak.
    public static func household(peakDemand: UInt32) -> LoadProfile {
        LoadProfile(
            hourlyPerMille: [300, 250, 220, 200, 200, 250, 500, 800, 700, 500, 450, 450,
                             500, 450, 400, 400, 500, 800, 1000, 1000, 900, 700, 500, 400],
            peakDemand: peakDemand, jitterPerMille: 200)
    }

    public init(hourlyPerMille: [UInt16], peakDemand: UInt32, jitterPerMille: UInt16) {
        precondition(hourlyPerMille.count == 24, "a load profile has 24 hourly values")
        self.hourlyPerMille = hourlyPerMille
        self.peakDemand = peakDemand
        self.jitterPerMille = jitterPerMille
    }

    /// Demand at `timeOfDayMs`, with a jitter draw in 0..<2000 (1000 = no change).
    public func demand(timeOfDayMs: Int64, jitterDraw: UInt64) -> UInt32 {
        let hour = Int((timeOfDayMs / 3_600_000) % 24)
        let base = UInt64(self.peakDemand) * UInt64(self.hourlyPerMille[hour]) / 1000
        let spread = UInt64(self.jitterPerMille)
        let factor = 1000 - spread + (spread == 0 ? 0 : jitterDraw % (2 * spread + 1))
        return UInt32(clamping: base * factor / 1000)
    }
}

/// Integrates demand over simulated time into whole units, carrying the remainder so nothing is lost to rounding.
public struct ConsumptionIntegrator: Codable, Sendable, Equatable {
    /// Demand × milliseconds not yet a whole unit (a unit is 3,600,000 of these: 1 Wh = 1 W for 1 h).
    public var carry: UInt64 = 0

    public init() {}

    public mutating func units(demand: UInt32, simulatedMs: Int64) -> UInt64 {
        self.carry += UInt64(demand) * UInt64(max(0, simulatedMs))
        let whole = self.carry / 3_600_000
        self.carry %= 3_600_000
        return whole
    }
}
