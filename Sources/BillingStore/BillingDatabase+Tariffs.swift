import Foundation
import GRDB
import MeterProtocol
import Prepaid

/// `Prepaid.Tariff` stored as JSON text: prices are integers (µminor per unit), so the text is exact.
public enum TariffJSON {
    public static func encode(_ tariff: Tariff) throws(StoreError) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return String(decoding: try encoder.encode(tariff), as: UTF8.self)
        } catch {
            throw .invalidTariff("\(error)")
        }
    }

    public static func decode(_ text: String) throws(StoreError) -> Tariff {
        do {
            return try JSONDecoder().decode(Tariff.self, from: Data(text.utf8))
        } catch {
            throw .invalidTariff("stored definition unreadable: \(error)")
        }
    }
}

extension BillingDatabase {
    /// A tariff with its versions, newest last.
    public struct TariffDetail: Hashable, Sendable {
        public var tariff: TariffRecord
        public var versions: [TariffVersion]

        public init(tariff: TariffRecord, versions: [TariffVersion]) {
            self.tariff = tariff
            self.versions = versions
        }
    }

    /// Adds a tariff, or a new version of the tariff of that name valid from `validFrom` (later than every
    /// earlier version's start; same currency and unit). Versions are never changed.
    public func addTariff(
        _ tariff: Tariff, validFrom: Int64, utcOffsetSeconds: Int32 = 28800, by actor: Actor
    ) throws(StoreError) -> TariffDetail {
        let definition = try TariffJSON.encode(tariff)
        return try self.write { db in
            var record = try TariffRecord.filter(Column("name") == tariff.name).fetchOne(db)
            if let existing = record {
                let latest = try Int64.fetchOne(
                    db, sql: "SELECT max(validFrom) FROM tariffVersion WHERE tariffId = ?", arguments: [existing.id])
                try DeskRules.checkNewVersion(tariff, of: existing, validFrom: validFrom, latestValidFrom: latest)
            } else {
                var new = TariffRecord(id: nil, name: tariff.name, currency: tariff.currency.code,
                                       unitKind: Int64(tariff.unitKind.rawValue), createdAt: actor.now)
                try new.insert(db)
                record = new
                try AuditLog.append(db, operator: actor.name, action: "tariff.add", entity: "tariff", id: new.id,
                                    now: actor.now, [("name", .string(tariff.name))])
            }
            let tariffID = record!.id!
            let next = (try Int64.fetchOne(
                db, sql: "SELECT max(version) FROM tariffVersion WHERE tariffId = ?", arguments: [tariffID]) ?? 0) + 1
            var version = TariffVersion(id: nil, tariffId: tariffID, version: next, validFrom: validFrom,
                                        utcOffsetSeconds: Int64(utcOffsetSeconds), definition: definition,
                                        createdAt: actor.now)
            try version.insert(db)
            try AuditLog.append(db, operator: actor.name, action: "tariff.version", entity: "tariffVersion",
                                id: version.id, now: actor.now,
                                [("tariff", .string(tariff.name)), ("version", .int(next)),
                                 ("validFrom", .int(validFrom))])
            return TariffDetail(tariff: record!, versions: try Self.versions(db, tariffID))
        }
    }

    public func tariffs() throws(StoreError) -> [TariffDetail] {
        try self.read { db in
            try TariffRecord.order(Column("name")).fetchAll(db).map {
                TariffDetail(tariff: $0, versions: try Self.versions(db, $0.id!))
            }
        }
    }

    public func tariff(_ reference: String) throws(StoreError) -> TariffDetail {
        try self.read { db in
            let record = try Self.findTariff(db, reference)
            return TariffDetail(tariff: record, versions: try Self.versions(db, record.id!))
        }
    }

    static func versions(_ db: Database, _ tariffID: Int64) throws -> [TariffVersion] {
        try TariffVersion.filter(Column("tariffId") == tariffID).order(Column("version")).fetchAll(db)
    }

    static func findTariff(_ db: Database, _ reference: String) throws -> TariffRecord {
        if let record = try TariffRecord.filter(Column("name") == reference).fetchOne(db) { return record }
        if let id = Int64(reference), let record = try TariffRecord.fetchOne(db, key: id) { return record }
        throw StoreError.tariffNotFound(reference)
    }

    /// The version in force at `time`: the latest whose `validFrom` is not after it.
    static func versionInForce(_ db: Database, tariffID: Int64, at time: Int64) throws -> TariffVersion {
        if let version = try Self.versionInForceIfAny(db, tariffID: tariffID, at: time) { return version }
        throw StoreError.noTariffInForce(tariff: try Self.tariffName(db, tariffID), time: time)
    }

    static func versionInForceIfAny(_ db: Database, tariffID: Int64, at time: Int64) throws -> TariffVersion? {
        try TariffVersion.filter(Column("tariffId") == tariffID && Column("validFrom") <= time)
            .order(Column("validFrom").desc).fetchOne(db)
    }

    static func tariffName(_ db: Database, _ tariffID: Int64) throws -> String {
        try String.fetchOne(db, sql: "SELECT name FROM tariff WHERE id = ?", arguments: [tariffID]) ?? "?"
    }

    static func symbol(_ unitKind: Int64) -> String { (UnitKind(rawValue: UInt8(unitKind)) ?? .wattHours).symbol }
}
