import GRDB

/// A run of outbox entries, with the rows they name, ready to send to the centre.
public struct OutboxBatch: Sendable, Equatable {
    public struct Reading: Sendable, Equatable {
        public var meterSerial: UInt32
        public var time: Int64
        public var register: Int64
        public var credit: Int64?
        public var source: String

        public init(meterSerial: UInt32, time: Int64, register: Int64, credit: Int64?, source: String) {
            self.meterSerial = meterSerial
            self.time = time
            self.register = register
            self.credit = credit
            self.source = source
        }
    }

    public struct Alarm: Sendable, Equatable {
        public var meterSerial: UInt32
        public var time: Int64
        public var alarms: Int64
        public var source: String

        public init(meterSerial: UInt32, time: Int64, alarms: Int64, source: String) {
            self.meterSerial = meterSerial
            self.time = time
            self.alarms = alarms
            self.source = source
        }
    }

    public struct Event: Sendable, Equatable {
        public var meterSerial: UInt32
        public var index: Int64
        public var time: Int64
        public var code: Int64
        public var value: Int64

        public init(meterSerial: UInt32, index: Int64, time: Int64, code: Int64, value: Int64) {
            (self.meterSerial, self.index, self.time, self.code, self.value) = (meterSerial, index, time, code, value)
        }
    }

    public struct RelayChange: Sendable, Equatable {
        public var meterSerial: UInt32
        public var time: Int64
        public var relay: String
        public var reason: Int64
        public var source: String

        public init(meterSerial: UInt32, time: Int64, relay: String, reason: Int64, source: String) {
            (self.meterSerial, self.time, self.relay, self.reason, self.source) =
                (meterSerial, time, relay, reason, source)
        }
    }

    public struct CardUpload: Sendable, Equatable {
        public var meterSerial: UInt32
        public var upload: BillingStore.CardUpload
    }

    /// A purchase as it was at one change of state; `centralOrderID` when it delivers an order sold at the centre.
    public struct PurchaseChange: Sendable, Equatable {
        public var meterSerial: UInt32
        public var time: Int64
        public var state: String
        public var purchase: Purchase
        public var centralOrderID: Int64?
    }

    /// A centrally sold order this gateway could not take, and why.
    public struct OrderRefusal: Sendable, Equatable {
        public var orderID: Int64
        public var meterSerial: UInt32
        public var refusal: String
        public var time: Int64

        public init(orderID: Int64, meterSerial: UInt32, refusal: String, time: Int64) {
            (self.orderID, self.meterSerial, self.refusal, self.time) = (orderID, meterSerial, refusal, time)
        }
    }

    /// First and last outbox sequence covered (entries may be missing in between only if never committed).
    public var fromSequence: Int64
    public var toSequence: Int64
    public var readings: [Reading]
    public var alarms: [Alarm]
    public var events: [Event] = []
    public var relayChanges: [RelayChange] = []
    public var cardUploads: [CardUpload] = []
    public var purchases: [PurchaseChange] = []
    public var orderRefusals: [OrderRefusal] = []
    /// Entries after this batch still waiting, when it was read: the centre shows it as the gateway's backlog.
    public var backlogAfter: Int64 = 0

    /// Rows carried (entries whose row is gone count nothing).
    public var rowCount: Int {
        self.readings.count + self.alarms.count + self.events.count + self.relayChanges.count
            + self.cardUploads.count + self.purchases.count + self.orderRefusals.count
    }
}

/// Where sync stands, from the gateway's side.
public struct SyncState: Sendable, Equatable {
    public var ackedSequence: Int64
    /// Entries written and not yet acknowledged.
    public var backlog: Int64
    /// Time of the oldest unacknowledged reading or alarm (its lag behind now), nil when nothing waits.
    public var oldestPendingTime: Int64?
    public var lastSentAt: Int64?
    public var lastError: String?
}

extension BillingDatabase {
    /// The next entries after `ackedSequence`, at most `limit`, with their rows: what one batch carries.
    /// nil when nothing waits.
    public func outboxBatch(after ackedSequence: Int64, limit: Int) throws(StoreError) -> OutboxBatch? {
        precondition(limit > 0)
        return try self.read { db in
            let entries = try Row.fetchAll(db, sql: """
                SELECT o.sequence, o.kind, o.meterId, o.ref, o.state, m.serial, o.time,
                       r.register, r.credit, r.source, a.alarms, a.source AS alarmSource
                FROM outbox o
                LEFT JOIN meter m ON m.id = o.meterId
                LEFT JOIN reading r ON o.kind = 'reading' AND r.meterId = o.meterId AND r.time = o.time
                LEFT JOIN alarm a ON o.kind = 'alarm' AND a.meterId = o.meterId AND a.time = o.time
                WHERE o.sequence > ?
                ORDER BY o.sequence
                LIMIT ?
                """, arguments: [ackedSequence, limit])
            guard let last = entries.last else { return nil }
            var batch = OutboxBatch(fromSequence: ackedSequence + 1, toSequence: last["sequence"], readings: [],
                                    alarms: [])
            for row in entries {
                let serial = UInt32(truncatingIfNeeded: (row["serial"] as Int64?) ?? 0)
                let meterID: Int64 = row["meterId"]
                let time: Int64 = row["time"]
                switch row["kind"] as String {
                case "reading":
                    guard let register: Int64 = row["register"] else { continue }  // see below
                    batch.readings.append(.init(meterSerial: serial, time: time, register: register,
                                                credit: row["credit"], source: row["source"]))
                case "alarm":
                    guard let alarms: Int64 = row["alarms"] else { continue }
                    batch.alarms.append(.init(meterSerial: serial, time: time, alarms: alarms,
                                              source: row["alarmSource"]))
                case "event":
                    guard let e = try Row.fetchOne(db, sql: """
                        SELECT eventIndex, time, code, value FROM event WHERE meterId = ? AND eventIndex = ?
                        """, arguments: [meterID, row["ref"] as Int64?]) else { continue }
                    batch.events.append(.init(meterSerial: serial, index: e[0], time: e[1], code: e[2], value: e[3]))
                case "relay":
                    guard let r = try Row.fetchOne(db, sql: """
                        SELECT relay, reason, source FROM relayChange WHERE meterId = ? AND time = ?
                        """, arguments: [meterID, time]) else { continue }
                    batch.relayChanges.append(.init(meterSerial: serial, time: time, relay: r[0], reason: r[1],
                                                    source: r[2]))
                case "card-upload":
                    guard let u = try BillingStore.CardUpload.fetchOne(db, key: row["ref"] as Int64?) else {
                        continue
                    }
                    batch.cardUploads.append(.init(meterSerial: serial, upload: u))
                case "purchase":
                    guard let p = try Purchase.fetchOne(db, key: row["ref"] as Int64?) else { continue }
                    let order = try Int64.fetchOne(db, sql: "SELECT orderId FROM centralOrder WHERE purchaseId = ?",
                                                   arguments: [p.id])
                    batch.purchases.append(.init(meterSerial: serial, time: time, state: row["state"], purchase: p,
                                                 centralOrderID: order))
                default:  // order
                    // Refused at receipt, or later (v6-refusals: the meter refused it, a person cancelled it).
                    guard let o = try Row.fetchOne(db, sql: """
                        SELECT c.meterSerial, coalesce(r.reason, c.refusal) FROM centralOrder c
                        LEFT JOIN centralOrderRefusal r ON r.orderId = c.orderId WHERE c.orderId = ?
                        """, arguments: [row["ref"] as Int64?]), let _: String = o[1] else { continue }
                    batch.orderRefusals.append(.init(orderID: row["ref"], meterSerial: UInt32(truncatingIfNeeded:
                        o[0] as Int64), refusal: o[1], time: time))
                }
            }
            batch.backlogAfter = try Int64.fetchOne(db, sql: "SELECT count(*) FROM outbox WHERE sequence > ?",
                                                    arguments: [batch.toSequence]) ?? 0
            // A row that is gone (none are deleted today) leaves its entry empty: the range still covers it, so
            // the centre's acknowledgement moves past it.
            return batch
        }
    }

    /// Records the centre's acknowledgement up to `sequence` and prunes the acknowledged entries, in one
    /// transaction. An acknowledgement below the one recorded is ignored (the centre is ahead of a crashed
    /// gateway's memory, never behind).
    public func acknowledgeOutbox(upTo sequence: Int64, now: Int64) throws(StoreError) {
        try self.write { db in
            try db.execute(sql: """
                UPDATE syncState SET ackedSequence = max(ackedSequence, ?), lastSentAt = ?, lastError = NULL
                WHERE id = 1
                """, arguments: [sequence, now])
            try db.execute(sql: "DELETE FROM outbox WHERE sequence <= ?", arguments: [sequence])
        }
    }

    /// Notes a failed attempt (shown by status and metrics); the backlog stays.
    public func recordSyncError(_ message: String, now: Int64) throws(StoreError) {
        try self.write { db in
            try db.execute(sql: "UPDATE syncState SET lastError = ?, lastSentAt = ? WHERE id = 1",
                           arguments: [message, now])
        }
    }

    public func syncState() throws(StoreError) -> SyncState {
        try self.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT s.ackedSequence, s.lastSentAt, s.lastError,
                       (SELECT count(*) FROM outbox WHERE sequence > s.ackedSequence) AS backlog,
                       (SELECT min(time) FROM outbox WHERE sequence > s.ackedSequence) AS oldest
                FROM syncState s WHERE s.id = 1
                """)!
            return SyncState(ackedSequence: row["ackedSequence"], backlog: row["backlog"],
                             oldestPendingTime: row["oldest"], lastSentAt: row["lastSentAt"],
                             lastError: row["lastError"])
        }
    }
}
