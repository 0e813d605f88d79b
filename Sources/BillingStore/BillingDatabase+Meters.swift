import GRDB
import MeterProtocol
import Prepaid

extension BillingDatabase {
    /// Registers a meter with its tariff. `lastApplied` is the meter's last applied purchase sequence at
    /// commissioning (0 for a new meter): this store's sequences for it start above it.
    public func addMeter(
        serial: UInt32, kind: DeviceKind, tariff: String, bus: String? = nil, address: UInt8? = nil,
        keyRevision: UInt8 = 1, lastApplied: UInt32 = 0, by actor: Actor
    ) throws(StoreError) -> Meter {
        let unit = try DeskRules.checkNewMeter(serial: serial, kind: kind)
        return try self.write { db in
            let record = try Self.findTariff(db, tariff)
            try DeskRules.checkTariff(record, forMeterUnit: Int64(unit.rawValue))
            if try Meter.filter(Column("serial") == Int64(serial)).fetchCount(db) > 0 {
                throw StoreError.meterExists(serial: Int64(serial))
            }
            var meter = Meter(id: nil, serial: Int64(serial), kind: kind.name, unitKind: Int64(unit.rawValue), bus: bus,
                              address: address.map(Int64.init), tariffId: record.id!, keyRevision: Int64(keyRevision),
                              accountId: nil, sequenceBase: Int64(lastApplied), lastAppliedSequence: Int64(lastApplied),
                              fixedChargesFrom: 0, createdAt: actor.now)
            try meter.insert(db)
            try AuditLog.append(db, operator: actor.name, action: "meter.add", entity: "meter", id: meter.id,
                                now: actor.now, [("serial", .int(Int64(serial))), ("kind", .string(kind.name)),
                                                 ("tariff", .string(record.name))])
            return meter
        }
    }

    /// Assigns a meter to an open account (one meter per account, one account per meter). Moving a meter to another
    /// account is refused while it has purchases that have not reached it. Fixed charges are owed from the period
    /// of the assignment.
    public func assignMeter(_ meterReference: String, to accountReference: String, by actor: Actor)
        throws(StoreError) -> Meter
    {
        try self.write { db in
            var meter = try Self.findMeter(db, meterReference)
            let account = try Self.findAccount(db, accountReference)
            let pending = try Int.fetchOne(db, sql: """
                SELECT count(*) FROM purchase WHERE meterId = ? AND state IN ('created', 'written', 'queued')
                """, arguments: [meter.id]) ?? 0
            guard try DeskRules.checkAssign(
                meter: meter, account: account,
                accountsMeter: try Meter.filter(Column("accountId") == account.id).fetchOne(db), pending: pending)
            else { return meter }
            let previous = meter.accountId
            let version = try Self.versionInForce(db, tariffID: meter.tariffId, at: actor.now)
            meter.accountId = account.id
            meter.fixedChargesFrom = try DeskRules.fixedChargesFrom(version: version, now: actor.now)
            try meter.update(db)
            try db.execute(sql: "UPDATE card SET state = 'replaced' WHERE meterId = ? AND state = 'active'",
                           arguments: [meter.id])
            try AuditLog.append(db, operator: actor.name, action: "meter.assign", entity: "meter", id: meter.id,
                                now: actor.now, [("account", .int(account.id!)),
                                                 ("previousAccount", previous.map { .int($0) } ?? .null)])
            return meter
        }
    }

    /// Changes a meter's tariff (for its next sales).
    public func setTariff(_ meterReference: String, tariff: String, by actor: Actor) throws(StoreError) -> Meter {
        try self.write { db in
            var meter = try Self.findMeter(db, meterReference)
            let record = try Self.findTariff(db, tariff)
            try DeskRules.checkTariff(record, forMeterUnit: meter.unitKind)
            meter.tariffId = record.id!
            try meter.update(db)
            try AuditLog.append(db, operator: actor.name, action: "meter.tariff", entity: "meter", id: meter.id,
                                now: actor.now, [("tariff", .string(record.name))])
            return meter
        }
    }

    public func meters() throws(StoreError) -> [Meter] {
        try self.read { db in try Meter.order(Column("serial")).fetchAll(db) }
    }

    /// A meter by serial (or "id:N").
    public func meter(_ reference: String) throws(StoreError) -> Meter {
        try self.read { db in try Self.findMeter(db, reference) }
    }

    static func findMeter(_ db: Database, _ reference: String) throws -> Meter {
        let text = reference.trimmedBlanks
        if text.hasPrefix("id:"), let id = Int64(text.dropFirst(3)), let meter = try Meter.fetchOne(db, key: id) {
            return meter
        }
        if let serial = Int64(text), let meter = try Meter.filter(Column("serial") == serial).fetchOne(db) {
            return meter
        }
        throw StoreError.meterNotFound(reference)
    }
}
