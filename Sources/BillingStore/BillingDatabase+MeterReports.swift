import GRDB
import MeterProtocol

extension BillingDatabase {
    /// Called after each meter a long report has walked: (meters done, meters in all). The CLI draws it.
    public typealias ReportProgress = (_ done: Int, _ total: Int) -> Void

    /// The store's local time offset (setting `utcOffsetSeconds`), for showing report times.
    public func utcOffsetSeconds() throws(StoreError) -> Int64 {
        try self.read { db in try Self.utcOffset(db) }
    }

    /// One meter in `report meters` (docs/STORE.md §6).
    public struct MeterReportRow: Hashable, Sendable {
        public var serial: Int64
        public var kind: String
        public var unitKind: Int64
        public var account: Int64?
        public var accountNumber: Int64?
        public var tariff: String
        /// The latest reading up to the period's end, and its time.
        public var lastReadingTime: Int64?
        public var lastRegister: Int64?
        /// Consumption in the period, as `report consumption` sums it; nil when the period has no reading.
        public var consumption: Int64?
        /// The latest credit the meter reported in the period (poll or card), and when; nil if none did. Bounded to
        /// the period: a meter that never reports credit (no prepaid register) must not cost a scan of its years.
        public var credit: Int64?
        public var creditTime: Int64?
        /// Now, not at the period's end: the store keeps no history of these.
        public var lastAppliedSequence: Int64
        public var pendingPurchases: Int
        public var pendingUnits: Int64

        public init(serial: Int64, kind: String, unitKind: Int64, account: Int64?, accountNumber: Int64?,
                    tariff: String, lastReadingTime: Int64?, lastRegister: Int64?, consumption: Int64?,
                    credit: Int64?, creditTime: Int64?, lastAppliedSequence: Int64, pendingPurchases: Int,
                    pendingUnits: Int64) {
            self.serial = serial
            self.kind = kind
            self.unitKind = unitKind
            self.account = account
            self.accountNumber = accountNumber
            self.tariff = tariff
            self.lastReadingTime = lastReadingTime
            self.lastRegister = lastRegister
            self.consumption = consumption
            self.credit = credit
            self.creditTime = creditTime
            self.lastAppliedSequence = lastAppliedSequence
            self.pendingPurchases = pendingPurchases
            self.pendingUnits = pendingUnits
        }
    }

    /// Every meter with its latest reading, consumption and credit in local days `fromDay...toDay`, and its
    /// purchase state now. One read transaction: a consistent picture while the gateway writes.
    public func meterReport(fromDay: Int64, toDay: Int64, progress: ReportProgress? = nil)
        throws(StoreError) -> [MeterReportRow]
    {
        try self.read { db in
            let offset = try Self.utcOffset(db)
            let start = fromDay * 86400 - offset
            let end = (toDay + 1) * 86400 - offset
            let meters = try Row.fetchAll(db, sql: """
                SELECT m.id, m.serial, m.kind, m.unitKind, m.accountId, a.number, t.name AS tariff,
                       m.lastAppliedSequence
                FROM meter m JOIN tariff t ON t.id = m.tariffId LEFT JOIN account a ON a.id = m.accountId
                ORDER BY m.serial
                """)
            let lastReading = try db.cachedStatement(sql: """
                SELECT time, register FROM reading WHERE meterId = ? AND time < ? ORDER BY time DESC LIMIT 1
                """)
            let lastCredit = try db.cachedStatement(sql: """
                SELECT time, credit FROM reading WHERE meterId = ? AND time >= ? AND time < ? AND credit IS NOT NULL
                ORDER BY time DESC LIMIT 1
                """)
            let pending = try db.cachedStatement(sql: """
                SELECT count(*), coalesce(sum(units), 0) FROM purchase
                WHERE meterId = ? AND state IN ('created', 'written', 'queued')
                """)
            var out: [MeterReportRow] = []
            for (index, m) in meters.enumerated() {
                let id: Int64 = m["id"]
                let reading = try Row.fetchOne(lastReading, arguments: [id, end])
                let credit = try Row.fetchOne(lastCredit, arguments: [id, start, end])
                let owed = try Row.fetchOne(pending, arguments: [id])!
                let days = try Self.dailyUnits(db, meter: id, fromDay: fromDay, toDay: toDay)
                out.append(MeterReportRow(
                    serial: m["serial"], kind: m["kind"], unitKind: m["unitKind"], account: m["accountId"],
                    accountNumber: m["number"], tariff: m["tariff"], lastReadingTime: reading?[0],
                    lastRegister: reading?[1], consumption: ConsumptionRules.total(days),
                    credit: credit?[1], creditTime: credit?[0], lastAppliedSequence: m["lastAppliedSequence"],
                    pendingPurchases: owed[0], pendingUnits: owed[1]))
                progress?(index + 1, meters.count)
            }
            return out
        }
    }

    /// A meter's consumption per local day in `fromDay...toDay` from the daily summary: a day's last register minus
    /// the previous known day's last register (its own first register when none is known before).
    static func dailyUnits(_ db: Database, meter: Int64, fromDay: Int64, toDay: Int64) throws
        -> [(day: Int64, units: Int64)]
    {
        let before = try Int64.fetchOne(db.cachedStatement(sql: """
            SELECT lastRegister FROM dailyConsumption WHERE meterId = ? AND day < ? ORDER BY day DESC LIMIT 1
            """), arguments: [meter, fromDay])
        let days = try Row.fetchAll(db.cachedStatement(sql: """
            SELECT day, firstRegister, lastRegister FROM dailyConsumption
            WHERE meterId = ? AND day BETWEEN ? AND ? ORDER BY day
            """), arguments: [meter, fromDay, toDay]).map { row in
            ConsumptionRules.DaySummary(day: row[0], firstRegister: row[1], lastRegister: row[2])
        }
        return ConsumptionRules.dailyUnits(before: before, days: days)
    }

    // MARK: Alarm episodes

    /// One alarm episode in `report alarms`: an alarm bit from the poll (or card) that showed it set to the one
    /// that showed it clear.
    public struct AlarmEpisode: Hashable, Sendable {
        public var meterSerial: Int64
        /// PROTOCOL.md §4.1 bit number and name (`low-credit`, `tamper`, ...).
        public var bit: Int
        public var alarm: String
        public var raised: Int64
        /// When the meter was first seen without it; nil while it lasts.
        public var cleared: Int64?
        /// The meter's "alarms acknowledged" event (0070) for this bit within the episode, if any.
        public var acknowledged: Int64?
        /// Until cleared, or until `now` for an alarm that lasts.
        public var durationSeconds: Int64

        public init(meterSerial: Int64, bit: Int, alarm: String, raised: Int64, cleared: Int64?,
                    acknowledged: Int64?, durationSeconds: Int64) {
            self.meterSerial = meterSerial
            self.bit = bit
            self.alarm = alarm
            self.raised = raised
            self.cleared = cleared
            self.acknowledged = acknowledged
            self.durationSeconds = durationSeconds
        }
    }

    /// Alarm episodes that overlap local days `fromDay...toDay`, per meter (by serial) then by time raised. An
    /// episode raised before the period starts with its real raise time; one still set at the period's end ends
    /// when it cleared after it, or lasts.
    public func alarmReport(fromDay: Int64, toDay: Int64, now: Int64, progress: ReportProgress? = nil)
        throws(StoreError) -> [AlarmEpisode]
    {
        try self.read { db in
            let offset = try Self.utcOffset(db)
            let start = fromDay * 86400 - offset
            let end = (toDay + 1) * 86400 - offset
            let meters = try Row.fetchAll(db, sql: "SELECT id, serial FROM meter ORDER BY serial")
            var out: [AlarmEpisode] = []
            for (index, m) in meters.enumerated() {
                out += try Self.alarmEpisodes(db, meter: m["id"], serial: m["serial"], start: start, end: end,
                                              now: now)
                progress?(index + 1, meters.count)
            }
            return out
        }
    }

    static func alarmEpisodes(_ db: Database, meter: Int64, serial: Int64, start: Int64, end: Int64, now: Int64)
        throws -> [AlarmEpisode]
    {
        var walk = AlarmWalk(serial: serial, end: end)
        let before = try Row.fetchCursor(db, sql: """
            SELECT time, alarms FROM alarm WHERE meterId = ? AND time < ? ORDER BY time DESC
            """, arguments: [meter, start])
        while let row = try before.next(), walk.before(time: row["time"], alarms: row["alarms"]) {}
        let after = try Row.fetchCursor(db, sql: """
            SELECT time, alarms FROM alarm WHERE meterId = ? AND time >= ? ORDER BY time
            """, arguments: [meter, start])
        while let row = try after.next(), walk.after(time: row["time"], alarms: row["alarms"]) {}
        let episodes = walk.episodes(now: now)
        guard !episodes.isEmpty else { return [] }
        let acks = try Row.fetchAll(db, sql: """
            SELECT time, value FROM event WHERE meterId = ? AND code = ? ORDER BY time
            """, arguments: [meter, Int64(EventCode.alarmsAcknowledged.rawValue)])
            .map { (time: $0[0] as Int64, mask: $0[1] as Int64) }
        return AlarmWalk.acknowledge(episodes, acks: acks)
    }
}
