/// Civil (proleptic Gregorian) dates and Unix seconds, in integers (Howard Hinnant's days-from-civil
/// algorithms): DL/T 645 meters carry local date and time as BCD fields, never as a count of seconds.
public struct CivilTime: Hashable, Sendable {
    public var year, month, day, hour, minute, second: Int
    /// 0 Sunday ... 6 Saturday (DL/T 645's WW).
    public var weekday: Int

    public init(unixSeconds: Int64) {
        let days = unixSeconds >= 0 ? unixSeconds / 86_400 : (unixSeconds - 86_399) / 86_400
        let rest = unixSeconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        self.day = Int(doy - (153 * mp + 2) / 5 + 1)
        self.month = Int(mp < 10 ? mp + 3 : mp - 9)
        self.year = Int(yoe + era * 400) + (self.month <= 2 ? 1 : 0)
        self.hour = Int(rest / 3_600)
        self.minute = Int(rest % 3_600 / 60)
        self.second = Int(rest % 60)
        // 1970-01-01 was a Thursday.
        self.weekday = Int(((days % 7) + 11) % 7)
    }

    public static func unixSeconds(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return (era * 146_097 + doe - 719_468) * 86_400 + Int64(hour) * 3_600 + Int64(minute) * 60 + Int64(second)
    }

    /// Two-digit BCD pairs, e.g. for the broadcast time's ss mm hh DD MM YY.
    public static func bcd(_ values: [Int]) -> [UInt8] { values.map { UInt8($0 / 10) << 4 | UInt8($0 % 10) } }

    /// BCD pairs back to numbers; nil when a nibble is not a digit.
    public static func numbers(_ bcd: [UInt8]) -> [Int]? {
        guard bcd.allSatisfy({ $0 >> 4 <= 9 && $0 & 0x0F <= 9 }) else { return nil }
        return bcd.map { Int($0 >> 4) * 10 + Int($0 & 0x0F) }
    }
}
