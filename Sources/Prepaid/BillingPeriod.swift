/// The period a tiered tariff counts consumption in and charges its fixed charge for (docs/CARD.md §2.3).
public enum BillingPeriod: String, CaseIterable, Hashable, Sendable, Codable {
    case monthly
    case yearly

    /// The number of the period containing `time` (Unix seconds) in local time `utcOffsetSeconds` east of UTC
    /// (28800 for China): months or years since January 1970. Integer civil-calendar arithmetic, no clock reads.
    public func index(containing time: UInt32, utcOffsetSeconds: Int32 = 0) -> Int64 {
        let local = Int64(time) + Int64(utcOffsetSeconds)
        let days = local >= 0 ? local / 86400 : (local - 86399) / 86400
        let (year, month, _) = Self.civil(fromDays: days)
        switch self {
        case .monthly: return (year - 1970) * 12 + (month - 1)
        case .yearly: return year - 1970
        }
    }

    /// Unix time of the first second of period `index` in local time `utcOffsetSeconds` east of UTC.
    public func start(ofPeriod index: Int64, utcOffsetSeconds: Int32 = 0) -> Int64 {
        let (year, month): (Int64, Int64)
        switch self {
        case .monthly:
            let y = index >= 0 ? index / 12 : (index - 11) / 12
            (year, month) = (1970 + y, index - y * 12 + 1)
        case .yearly: (year, month) = (1970 + index, 1)
        }
        return Self.days(fromCivil: year, month, 1) * 86400 - Int64(utcOffsetSeconds)
    }

    /// Howard Hinnant's days_from_civil: days since 1970-01-01 of a proleptic Gregorian date.
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    /// Howard Hinnant's civil_from_days.
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
