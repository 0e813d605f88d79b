import BillingStore
import MeterProtocol
import PostgresNIO

// The desk's consumption-based reports on the central store. The central store keeps no daily summary: the
// readings are grouped per local day here, and `ConsumptionRules` counts them exactly as on SQLite.

extension CentralDatabase {
    public func consumptionRows(
        fromDay: Int64, toDay: Int64, by granularity: BillingDatabase.Granularity, progress: DeskProgress?
    ) async throws(StoreError) -> [BillingDatabase.ConsumptionRow] {
        try await self.deskRead { c in
            let offset = try await self.utcOffset(c)
            var meters: [(id: Int64, serial: Int64, unitKind: Int64)] = []
            for try await (id, serial, unitKind) in try await c.query(
                "SELECT id, serial, unit_kind::bigint FROM meter ORDER BY serial", logger: self.logger
            ).decode((Int64, Int64, Int64).self) {
                meters.append((id, serial, unitKind))
            }
            var out: [BillingDatabase.ConsumptionRow] = []
            for (index, meter) in meters.enumerated() {
                let daily = try await self.dailyUnits(c, meter: meter.id, fromDay: fromDay, toDay: toDay,
                                                      offset: offset)
                out += ConsumptionRules.rows(serial: meter.serial, unitKind: meter.unitKind, daily: daily,
                                             by: granularity)
                progress?(index + 1, meters.count)
            }
            return out
        }
    }

    /// A meter's units per local day in `fromDay...toDay`, from its readings: what SQLite's `dailyConsumption`
    /// holds, computed on the fly in one statement. Each day's first and last register are two probes of the
    /// primary key (meter_id, time), so the cost grows with the days asked for, not with the readings in them
    /// (aggregating a month of 15-minute readings per meter was 3 s for 1,000 meters; docs/BENCHMARKS.md).
    func dailyUnits(_ c: PostgresConnection, meter: Int64, fromDay: Int64, toDay: Int64, offset: Int64)
        async throws -> [(day: Int64, units: Int64)]
    {
        let start = fromDay * 86400 - offset
        var before: Int64?
        var days: [ConsumptionRules.DaySummary] = []
        // A day without readings yields no row (the lateral probes find none). `before`, the last register
        // before the period, is the same on every row.
        for try await (day, first, last, previous) in try await c.query("""
            SELECT d.day, f.register, l.register,
                   (SELECT register FROM reading WHERE meter_id = \(meter) AND time < \(start)
                    ORDER BY time DESC LIMIT 1)
            FROM generate_series(\(fromDay)::bigint, \(toDay)::bigint) AS d(day)
            CROSS JOIN LATERAL (SELECT register FROM reading
                                WHERE meter_id = \(meter) AND time >= d.day * 86400 - \(offset)
                                  AND time < (d.day + 1) * 86400 - \(offset)
                                ORDER BY time LIMIT 1) f
            CROSS JOIN LATERAL (SELECT register FROM reading
                                WHERE meter_id = \(meter) AND time >= d.day * 86400 - \(offset)
                                  AND time < (d.day + 1) * 86400 - \(offset)
                                ORDER BY time DESC LIMIT 1) l
            ORDER BY d.day
            """, logger: self.logger).decode((Int64, Int64, Int64, Int64?).self) {
            before = previous
            days.append(ConsumptionRules.DaySummary(day: day, firstRegister: first, lastRegister: last))
        }
        return ConsumptionRules.dailyUnits(before: before, days: days)
    }
}

extension CentralDatabase {
    public func utcOffsetSeconds() async throws(StoreError) -> Int64 {
        try await self.deskRead { c in try await self.utcOffset(c) }
    }

    public func meterRows(fromDay: Int64, toDay: Int64, progress: DeskProgress?) async throws(StoreError)
        -> [BillingDatabase.MeterReportRow]
    {
        try await self.deskRead { c in
            let offset = try await self.utcOffset(c)
            let start = fromDay * 86400 - offset
            let end = (toDay + 1) * 86400 - offset
            var meters: [BillingDatabase.MeterReportRow] = []
            var ids: [Int64] = []
            for try await (id, serial, kind, unitKind, account, number, tariff, applied) in try await c.query("""
                SELECT m.id, m.serial, m.kind, m.unit_kind::bigint, m.account_id, a.number, t.name,
                       m.last_applied_sequence
                FROM meter m JOIN tariff t ON t.id = m.tariff_id LEFT JOIN account a ON a.id = m.account_id
                ORDER BY m.serial
                """, logger: self.logger).decode((Int64, Int64, String, Int64, Int64?, Int64?, String, Int64).self) {
                ids.append(id)
                meters.append(BillingDatabase.MeterReportRow(
                    serial: serial, kind: kind, unitKind: unitKind, account: account, accountNumber: number,
                    tariff: tariff, lastReadingTime: nil, lastRegister: nil, consumption: nil, credit: nil,
                    creditTime: nil, lastAppliedSequence: applied, pendingPurchases: 0, pendingUnits: 0))
            }
            for (index, id) in ids.enumerated() {
                // One statement per meter for its latest reading, its latest credit in the period (bounded to
                // the period, as on SQLite: a meter without a prepaid register costs no scan of years) and its
                // pending purchases.
                for try await (lastTime, lastRegister, creditTime, credit, count, units) in try await c.query("""
                    SELECT r.time, r.register, k.time, k.credit, p.count, p.units
                    FROM (SELECT 1) one
                    LEFT JOIN LATERAL (SELECT time, register FROM reading WHERE meter_id = \(id) AND time < \(end)
                                       ORDER BY time DESC LIMIT 1) r ON true
                    LEFT JOIN LATERAL (SELECT time, credit FROM reading
                                       WHERE meter_id = \(id) AND time >= \(start) AND time < \(end)
                                         AND credit IS NOT NULL
                                       ORDER BY time DESC LIMIT 1) k ON true
                    CROSS JOIN (SELECT count(*) AS count, coalesce(sum(units), 0)::bigint AS units FROM purchase
                                WHERE meter_id = \(id) AND state IN ('created', 'written', 'queued')) p
                    """, logger: self.logger).decode((Int64?, Int64?, Int64?, Int64?, Int64, Int64).self) {
                    (meters[index].lastReadingTime, meters[index].lastRegister) = (lastTime, lastRegister)
                    (meters[index].creditTime, meters[index].credit) = (creditTime, credit)
                    (meters[index].pendingPurchases, meters[index].pendingUnits) = (Int(count), units)
                }
                meters[index].consumption = ConsumptionRules.total(
                    try await self.dailyUnits(c, meter: id, fromDay: fromDay, toDay: toDay, offset: offset))
                progress?(index + 1, ids.count)
            }
            return meters
        }
    }
}

extension CentralDatabase {
    public func alarmEpisodes(fromDay: Int64, toDay: Int64, now: Int64, progress: DeskProgress?)
        async throws(StoreError) -> [BillingDatabase.AlarmEpisode]
    {
        try await self.deskRead { c in
            let offset = try await self.utcOffset(c)
            let start = fromDay * 86400 - offset
            let end = (toDay + 1) * 86400 - offset
            var meters: [(id: Int64, serial: Int64)] = []
            for try await (id, serial) in try await c.query("SELECT id, serial FROM meter ORDER BY serial",
                                                            logger: self.logger).decode((Int64, Int64).self) {
                meters.append((id, serial))
            }
            var out: [BillingDatabase.AlarmEpisode] = []
            for (index, meter) in meters.enumerated() {
                var walk = AlarmWalk(serial: meter.serial, end: end)
                // Leaving a result early is safe (PostgresNIO drains the rest), but the server has sent it: a
                // meter's whole alarm history before the period travels once. Alarm rows are few per meter.
                for try await (time, bits) in try await c.query("""
                    SELECT time, alarms::bigint FROM alarm WHERE meter_id = \(meter.id) AND time < \(start)
                    ORDER BY time DESC
                    """, logger: self.logger).decode((Int64, Int64).self) {
                    if !walk.before(time: time, alarms: bits) { break }
                }
                for try await (time, bits) in try await c.query("""
                    SELECT time, alarms::bigint FROM alarm WHERE meter_id = \(meter.id) AND time >= \(start)
                    ORDER BY time
                    """, logger: self.logger).decode((Int64, Int64).self) {
                    if !walk.after(time: time, alarms: bits) { break }
                }
                let episodes = walk.episodes(now: now)
                if !episodes.isEmpty {
                    var acks: [(time: Int64, mask: Int64)] = []
                    for try await (time, mask) in try await c.query("""
                        SELECT time, value FROM event
                        WHERE meter_id = \(meter.id) AND code = \(Int64(EventCode.alarmsAcknowledged.rawValue))
                        ORDER BY time
                        """, logger: self.logger).decode((Int64, Int64).self) {
                        acks.append((time, mask))
                    }
                    out += AlarmWalk.acknowledge(episodes, acks: acks)
                }
                progress?(index + 1, meters.count)
            }
            return out
        }
    }
}
