import GRDB

/// What one poll of one meter saw, for the gateway's batch write.
public struct MeterObservation: Hashable, Sendable {
    public var meterID: Int64
    /// The gateway's clock (Unix seconds) when the answer arrived: the reading's key with the meter.
    public var time: Int64
    public var register: Int64
    /// Nil when the meter's protocol reports no credit (Modbus energy meters, DL/T 645): stored as NULL, not 0.
    public var credit: Int64?
    public var alarms: Int64
    /// "closed" or "open".
    public var relay: String
    public var relayReason: Int64
    public var lastAppliedSequence: Int64
    /// False when the poller saw the same alarms, relay and last applied sequence in its previous reading of this
    /// meter, so nothing but the reading can have changed (saves three queries per reading).
    public var mayHaveChanged: Bool

    public init(meterID: Int64, time: Int64, register: Int64, credit: Int64?, alarms: Int64, relay: String,
                relayReason: Int64, lastAppliedSequence: Int64, mayHaveChanged: Bool = true) {
        self.mayHaveChanged = mayHaveChanged
        self.meterID = meterID
        self.time = time
        self.register = register
        self.credit = credit
        self.alarms = alarms
        self.relay = relay
        self.relayReason = relayReason
        self.lastAppliedSequence = lastAppliedSequence
    }
}

/// What a batch changed: rows written, and what the meters reported that the store could not take.
public struct PollRecord: Hashable, Sendable {
    public var readingsInserted = 0
    /// Alarm changes recorded (the start or end of an episode), per meter id.
    public var alarmChanges: [Int64: Int64] = [:]
    /// Relay changes recorded, per meter id: "open" or "closed".
    public var relayChanges: [Int64: String] = [:]
    /// Purchases the meters' last applied sequences confirmed.
    public var confirmed: [Purchase] = []
    /// Meters that report a sequence this store never sold (another desk?): ids and what they reported.
    public var foreignSequences: [Int64: Int64] = [:]

    public init() {}
}

/// A meter as the gateway needs it: where it is and whether credit waits for it.
public struct GatewayMeter: Hashable, Sendable {
    public var meter: Meter
    /// Queued remote purchases waiting for this meter.
    public var queued: Int

    public init(meter: Meter, queued: Int) {
        self.meter = meter
        self.queued = queued
    }
}

extension BillingDatabase {
    /// Writes one poll cycle's observations in one transaction: readings (a reading already stored for the same
    /// meter and time is skipped, so a re-poll after a crash is harmless), alarm and relay changes (one row when
    /// they change, so an episode is recorded once however often it is polled), and purchases the meters' last
    /// applied sequences confirm.
    public func recordPoll(_ observations: [MeterObservation], by actor: Actor) throws(StoreError) -> PollRecord {
        try self.write { db in
            var record = PollRecord()
            record.readingsInserted = try Self.insertReadings(
                db, observations.map { ReadingInput(meterID: $0.meterID, time: $0.time, register: $0.register,
                                                    credit: $0.credit) },
                source: "poll")
            for o in observations where o.mayHaveChanged {
                if try Self.insertAlarm(db, AlarmInput(meterID: o.meterID, time: o.time, alarms: o.alarms),
                                        source: "poll") {
                    record.alarmChanges[o.meterID] = o.alarms
                }
                if try Self.insertRelayChange(db, o) { record.relayChanges[o.meterID] = o.relay }
                guard let meter = try Meter.fetchOne(db, key: o.meterID),
                      o.lastAppliedSequence > meter.lastAppliedSequence
                else { continue }
                let sold = try Int64.fetchOne(db, sql: "SELECT max(sequence) FROM purchase WHERE meterId = ?",
                                              arguments: [o.meterID]) ?? meter.sequenceBase
                guard o.lastAppliedSequence <= max(sold, meter.sequenceBase) else {
                    // Not ours to confirm: reported, never allowed to block the readings.
                    record.foreignSequences[o.meterID] = o.lastAppliedSequence
                    continue
                }
                record.confirmed += try Self.markApplied(db, meter: meter, upTo: o.lastAppliedSequence,
                                                         source: "reading", by: actor)
            }
            try AuditLog.append(db, operator: actor.name, action: "poll.record", entity: "reading", id: nil,
                                now: actor.now, [("meters", .int(Int64(observations.count))),
                                                 ("inserted", .int(Int64(record.readingsInserted)))])
            return record
        }
    }

    static func insertRelayChange(_ db: Database, _ o: MeterObservation) throws -> Bool {
        let previous = try Row.fetchOne(db, sql: """
            SELECT relay, reason FROM relayChange WHERE meterId = ? AND time < ? ORDER BY time DESC LIMIT 1
            """, arguments: [o.meterID, o.time])
        if let previous, previous["relay"] as String == o.relay, previous["reason"] as Int64 == o.relayReason {
            return false
        }
        // The first observation of a closed relay is the normal state, not a change worth a row.
        if previous == nil && o.relay == "closed" { return false }
        try db.execute(sql: """
            INSERT INTO relayChange (meterId, time, relay, reason, source) VALUES (?, ?, ?, ?, 'poll')
            ON CONFLICT DO NOTHING
            """, arguments: [o.meterID, o.time, o.relay, o.relayReason])
        return db.changesCount > 0
    }

    /// Records that the gateway set a meter's clock (it was `driftSeconds` off).
    public func recordClockCorrection(meterID: Int64, meterTime: Int64, driftSeconds: Int64, by actor: Actor)
        throws(StoreError)
    {
        try self.write { db in
            try db.execute(sql: """
                INSERT INTO clockCorrection (meterId, time, meterTime, driftSeconds) VALUES (?, ?, ?, ?)
                ON CONFLICT DO NOTHING
                """, arguments: [meterID, actor.now, meterTime, driftSeconds])
            try AuditLog.append(db, operator: actor.name, action: "meter.clock-set", entity: "meter", id: meterID,
                                now: actor.now, [("driftSeconds", .int(driftSeconds))])
        }
    }

    /// Every meter with its count of queued remote purchases.
    public func gatewayMeters() throws(StoreError) -> [GatewayMeter] {
        try self.read { db in
            let queued = try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: """
                SELECT meterId, count(*) FROM purchase WHERE state = 'queued' GROUP BY meterId
                """).map { ($0[0] as Int64, $0[1] as Int) })
            return try Meter.order(Column("id")).fetchAll(db).map {
                GatewayMeter(meter: $0, queued: queued[$0.id!] ?? 0)
            }
        }
    }

    /// Queued remote purchases per meter id (only meters that have some): the gateway's cheap look at its queue.
    public func queuedCounts() throws(StoreError) -> [Int64: Int] {
        try self.read { db in
            try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: """
                SELECT meterId, count(*) FROM purchase WHERE state = 'queued' GROUP BY meterId
                """).map { ($0[0] as Int64, $0[1] as Int) })
        }
    }

    /// A meter by its id.
    public func meter(id: Int64) throws(StoreError) -> Meter {
        try self.read { db in
            guard let meter = try Meter.fetchOne(db, key: id) else { throw StoreError.meterNotFound(String(id)) }
            return meter
        }
    }

    /// A meter's purchases in sequence order.
    public func purchases(meterID: Int64) throws(StoreError) -> [Purchase] {
        try self.read { db in
            try Purchase.filter(Column("meterId") == meterID).order(Column("sequence")).fetchAll(db)
        }
    }

    /// Readings of one meter, oldest first (tests, `metergw demo`).
    public func readings(meterID: Int64) throws(StoreError) -> [ReadingInput] {
        try self.read { db in
            try Row.fetchAll(db, sql: "SELECT time, register, credit FROM reading WHERE meterId = ? ORDER BY time",
                             arguments: [meterID]).map {
                ReadingInput(meterID: meterID, time: $0[0], register: $0[1], credit: $0[2])
            }
        }
    }

    /// Relay changes of one meter, oldest first: (time, "open"/"closed", reason code).
    public func relayChanges(meterID: Int64) throws(StoreError) -> [(time: Int64, relay: String, reason: Int64)] {
        try self.read { db in
            try Row.fetchAll(db, sql: "SELECT time, relay, reason FROM relayChange WHERE meterId = ? ORDER BY time",
                             arguments: [meterID]).map { ($0[0], $0[1], $0[2]) }
        }
    }

    /// Alarm changes of one meter, oldest first: (time, bits).
    public func alarmChanges(meterID: Int64) throws(StoreError) -> [(time: Int64, alarms: Int64)] {
        try self.read { db in
            try Row.fetchAll(db, sql: "SELECT time, alarms FROM alarm WHERE meterId = ? ORDER BY time",
                             arguments: [meterID]).map { ($0[0], $0[1]) }
        }
    }
}
