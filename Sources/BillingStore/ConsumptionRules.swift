/// How consumption is counted from a meter's registers, written once for both stores (docs/STORE.md §6): SQLite
/// feeds it from its `dailyConsumption` summary, the central store from its readings grouped by local day. Pure.
public enum ConsumptionRules {
    /// A meter's first and last register on one local day.
    public struct DaySummary: Hashable, Sendable {
        public var day: Int64
        public var firstRegister: Int64
        public var lastRegister: Int64

        public init(day: Int64, firstRegister: Int64, lastRegister: Int64) {
            self.day = day
            self.firstRegister = firstRegister
            self.lastRegister = lastRegister
        }
    }

    /// Units per day: a day's last register minus the previous known day's last register (`before`, the last
    /// register before the first day), or its own first register when none is known before. A register that went
    /// back (a replaced meter, a reset) counts as it reads, negative: the report shows it rather than hiding it.
    public static func dailyUnits(before: Int64?, days: [DaySummary]) -> [(day: Int64, units: Int64)] {
        var previous = before
        return days.map { d in
            defer { previous = d.lastRegister }
            return (d.day, d.lastRegister - (previous ?? d.firstRegister))
        }
    }

    /// A meter's consumption over a period as `report meters` shows it: the days' sum, nil without a reading.
    public static func total(_ daily: [(day: Int64, units: Int64)]) -> Int64? {
        daily.isEmpty ? nil : daily.reduce(0) { $0 + $1.units }
    }

    /// One meter's rows of `report consumption`: its days' units, summed per local month when asked.
    public static func rows(
        serial: Int64, unitKind: Int64, daily: [(day: Int64, units: Int64)], by granularity: BillingDatabase.Granularity
    ) -> [BillingDatabase.ConsumptionRow] {
        var out: [BillingDatabase.ConsumptionRow] = []
        for (day, units) in daily {
            let period = granularity == .day ? LocalTime.dateText(day: day) : LocalTime.monthText(day: day)
            if let last = out.last, last.period == period {
                out[out.count - 1].units += units
            } else {
                out.append(BillingDatabase.ConsumptionRow(period: period, meterSerial: serial, unitKind: unitKind,
                                                          units: units))
            }
        }
        return out
    }

    /// The local day (days since 1970-01-01 at `offset` seconds east of UTC) of a Unix time, rounding down.
    public static func day(_ time: Int64, offset: Int64) -> Int64 {
        let local = time + offset
        return local >= 0 ? local / 86400 : (local - 86399) / 86400
    }
}
