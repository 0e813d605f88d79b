import GRDB

/// One register reading from a poll (or a card's write-back).
public struct ReadingInput: Hashable, Sendable {
    public var meterID: Int64
    public var time: Int64
    public var register: Int64
    public var credit: Int64?

    public init(meterID: Int64, time: Int64, register: Int64, credit: Int64? = nil) {
        self.meterID = meterID
        self.time = time
        self.register = register
        self.credit = credit
    }
}

/// One event from a meter's event log (PROTOCOL READ_EVENTS), keyed by its index in that log.
public struct EventInput: Hashable, Sendable {
    public var meterID: Int64
    public var index: Int64
    public var time: Int64
    public var code: Int64
    public var value: Int64

    public init(meterID: Int64, index: Int64, time: Int64, code: Int64, value: Int64) {
        self.meterID = meterID
        self.index = index
        self.time = time
        self.code = code
        self.value = value
    }
}

/// The alarm bits a meter showed at a time.
public struct AlarmInput: Hashable, Sendable {
    public var meterID: Int64
    public var time: Int64
    public var alarms: Int64

    public init(meterID: Int64, time: Int64, alarms: Int64) {
        self.meterID = meterID
        self.time = time
        self.alarms = alarms
    }
}

extension BillingDatabase {
    /// Inserts a batch of readings in one transaction; a reading already stored (same meter and time) is skipped,
    /// so re-polling is safe. Keeps the daily summary that consumption reports read. Returns the rows inserted.
    @discardableResult
    public func insertReadings(_ readings: [ReadingInput], by actor: Actor) throws(StoreError) -> Int {
        try self.write { db in
            let n = try Self.insertReadings(db, readings, source: "poll")
            try AuditLog.append(db, operator: actor.name, action: "readings.insert", entity: "reading", id: nil,
                                now: actor.now, [("received", .int(Int64(readings.count))), ("inserted", .int(Int64(n)))])
            return n
        }
    }

    static func utcOffset(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT CAST(value AS INTEGER) FROM setting WHERE key = 'utcOffsetSeconds'") ?? 0
    }

    /// Local day number (days since 1970-01-01 in the store's UTC offset) of a Unix time.
    static func day(_ time: Int64, offset: Int64) -> Int64 { ConsumptionRules.day(time, offset: offset) }

    static func insertReadings(_ db: Database, _ readings: [ReadingInput], source: String) throws -> Int {
        guard !readings.isEmpty else { return 0 }
        let offset = try Self.utcOffset(db)
        let insert = try db.cachedStatement(sql: """
            INSERT INTO reading (meterId, time, register, credit, source) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (meterId, time) DO NOTHING
            """)
        struct Day { var firstTime, firstRegister, lastTime, lastRegister: Int64 }
        var days: [Int64: [Int64: Day]] = [:]
        var inserted = 0
        for r in readings {
            try insert.execute(arguments: [r.meterID, r.time, r.register, r.credit, source])
            guard db.changesCount > 0 else { continue }
            inserted += 1
            let d = Self.day(r.time, offset: offset)
            if var s = days[r.meterID, default: [:]][d] {
                if r.time < s.firstTime { (s.firstTime, s.firstRegister) = (r.time, r.register) }
                if r.time > s.lastTime { (s.lastTime, s.lastRegister) = (r.time, r.register) }
                days[r.meterID]![d] = s
            } else {
                days[r.meterID, default: [:]][d] = Day(firstTime: r.time, firstRegister: r.register, lastTime: r.time,
                                                       lastRegister: r.register)
            }
        }
        let upsert = try db.cachedStatement(sql: """
            INSERT INTO dailyConsumption (meterId, day, firstTime, firstRegister, lastTime, lastRegister)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (meterId, day) DO UPDATE SET
                firstTime = min(firstTime, excluded.firstTime),
                firstRegister = CASE WHEN excluded.firstTime < firstTime THEN excluded.firstRegister
                                     ELSE firstRegister END,
                lastTime = max(lastTime, excluded.lastTime),
                lastRegister = CASE WHEN excluded.lastTime > lastTime THEN excluded.lastRegister ELSE lastRegister END
            """)
        for (meter, perDay) in days {
            for (day, s) in perDay {
                try upsert.execute(arguments: [meter, day, s.firstTime, s.firstRegister, s.lastTime, s.lastRegister])
            }
        }
        return inserted
    }

    /// Stores meter events; an event already stored (same meter and index) is skipped.
    @discardableResult
    public func insertEvents(_ events: [EventInput], by actor: Actor) throws(StoreError) -> Int {
        try self.write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT INTO event (meterId, eventIndex, time, code, value) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                """)
            var n = 0
            for e in events {
                try insert.execute(arguments: [e.meterID, e.index, e.time, e.code, e.value])
                n += db.changesCount
            }
            try AuditLog.append(db, operator: actor.name, action: "events.insert", entity: "event", id: nil,
                                now: actor.now, [("inserted", .int(Int64(n)))])
            return n
        }
    }

    /// Stores a meter's alarm bits when they differ from the latest stored before that time.
    @discardableResult
    public func recordAlarms(_ alarm: AlarmInput, by actor: Actor) throws(StoreError) -> Bool {
        try self.write { db in
            let changed = try Self.insertAlarm(db, alarm, source: "poll")
            if changed {
                try AuditLog.append(db, operator: actor.name, action: "alarm.record", entity: "alarm", id: alarm.meterID,
                                    now: actor.now, [("time", .int(alarm.time)), ("alarms", .int(alarm.alarms))])
            }
            return changed
        }
    }

    @discardableResult
    static func insertAlarm(_ db: Database, _ alarm: AlarmInput, source: String) throws -> Bool {
        let previous = try Int64.fetchOne(db, sql: """
            SELECT alarms FROM alarm WHERE meterId = ? AND time < ? ORDER BY time DESC LIMIT 1
            """, arguments: [alarm.meterID, alarm.time])
        guard CardRules.alarmChanged(previous: previous, alarms: alarm.alarms) else { return false }
        try db.execute(sql: """
            INSERT INTO alarm (meterId, time, alarms, source) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING
            """, arguments: [alarm.meterID, alarm.time, alarm.alarms, source])
        return db.changesCount > 0
    }

    /// Meter ids by serial, for pollers that know serials.
    public func meterIDs() throws(StoreError) -> [Int64: Int64] {
        try self.read { db in
            var out: [Int64: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT serial, id FROM meter") { out[row[0]] = row[1] }
            return out
        }
    }
}
