/// Dates and times in the store's local time (UTC offset in seconds, 28800 for China), with integer calendar
/// arithmetic (H. Hinnant's algorithms): reports' days and months, tariff validity dates, receipts.
public enum LocalTime {
    /// Days since 1970-01-01 of a civil date.
    public static func days(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public static func civil(days: Int64) -> (year: Int64, month: Int64, day: Int64) {
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

    /// The local day number of a Unix time.
    public static func day(of time: Int64, offset: Int64) -> Int64 {
        let local = time + offset
        return local >= 0 ? local / 86400 : (local - 86399) / 86400
    }

    /// "2026-11-25" → its local day number; nil unless exactly YYYY-MM-DD and a real date.
    public static func parseDate(_ text: String) -> Int64? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
              parts.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let y = Int64(parts[0]), let m = Int64(parts[1]), let d = Int64(parts[2]),
              (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        let days = Self.days(year: y, month: m, day: d)
        guard Self.civil(days: days) == (y, m, d) else { return nil }
        return days
    }

    /// "2026-11" → the local day number of its first day.
    public static func parseMonth(_ text: String) -> Int64? { Self.parseDate(text + "-01") }

    public static func dateText(day: Int64) -> String {
        let c = Self.civil(days: day)
        return "\(c.year)-\(Self.two(c.month))-\(Self.two(c.day))"
    }

    public static func monthText(day: Int64) -> String {
        let c = Self.civil(days: day)
        return "\(c.year)-\(Self.two(c.month))"
    }

    /// The first day of the month after the one containing `day`.
    public static func nextMonth(day: Int64) -> Int64 {
        let c = Self.civil(days: day)
        return c.month == 12 ? Self.days(year: c.year + 1, month: 1, day: 1) : Self.days(year: c.year, month: c.month + 1, day: 1)
    }

    /// "2026-11-25 16:30:00 +08:00".
    public static func text(_ time: Int64, offset: Int64) -> String {
        let local = time + offset
        let day = Self.day(of: time, offset: offset)
        let seconds = local - day * 86400
        let sign = offset < 0 ? "-" : "+"
        let o = offset.magnitude / 60
        return "\(Self.dateText(day: day)) \(Self.two(seconds / 3600)):\(Self.two(seconds / 60 % 60)):"
            + "\(Self.two(seconds % 60)) \(sign)\(Self.two(Int64(o / 60))):\(Self.two(Int64(o % 60)))"
    }

    static func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
}
