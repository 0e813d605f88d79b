import BillingStore
import Foundation
import GRDB
import Testing

/// The migrator, connection settings and the constraints that guard the invariants when the API is bypassed.
@Suite struct SchemaTests {
    @Test func migrationsAreNamedAndAppliedOnceOnAFileInWALMode() throws {
        let path = temporaryPath()
        let store = try BillingDatabase.open(path: path)
        #expect(try store.appliedMigrations()
                    == ["v1-billing", "v2-readings", "v3-gateway", "v4-outbox", "v5-sync", "v6-refusals"])
        let again = try BillingDatabase.open(path: path, migrate: false)
        #expect(try again.migrate().applied.isEmpty)
        let (mode, keys, tables) = try store.writer.read { db in
            (try String.fetchOne(db, sql: "PRAGMA journal_mode"), try Int.fetchOne(db, sql: "PRAGMA foreign_keys"),
             try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'"))
        }
        #expect(mode == "wal" && keys == 1)
        for table in ["account", "customer", "movement", "meter", "card", "tariff", "tariffVersion", "purchase",
                      "reading", "dailyConsumption", "event", "alarm", "cardUpload", "bankPayment", "auditLog",
                      "relayChange", "clockCorrection"] {
            #expect(tables.contains(table), "missing \(table)")
        }
    }

    @Test func migrateOnAnEmptyFileAppliesEveryMigrationInOrder() throws {
        let store = try BillingDatabase.open(path: temporaryPath(), migrate: false)
        let result = try store.migrate()
        #expect(result.applied == ["v1-billing", "v2-readings", "v3-gateway", "v4-outbox", "v5-sync", "v6-refusals"])
        #expect(result.all == result.applied)
    }

    /// Raw SQL that breaks an invariant is refused by the schema itself.
    @Test(arguments: [
        ("negative balance", "UPDATE account SET balanceMinor = -1 WHERE id = 1"),
        ("unknown purchase state", "UPDATE purchase SET state = 'lost' WHERE id = 1"),
        ("written to cancelled", "UPDATE purchase SET state = 'cancelled', cancelledAt = 1 WHERE id = 1"),
        ("purchase terms", "UPDATE purchase SET units = units + 1 WHERE id = 1"),
        ("deleting a purchase", "DELETE FROM purchase WHERE id = 1"),
        ("editing the audit log", "UPDATE auditLog SET operator = 'someone else'"),
        ("deleting the audit log", "DELETE FROM auditLog"),
        ("editing a movement", "UPDATE movement SET amountMinor = 1"),
        ("duplicate sequence", """
            INSERT INTO purchase SELECT NULL, 'other', accountId, meterId, sequence, mode, state, currency, paidMinor,
            balanceUsedMinor, fixedChargesMinor, valueMinor, remainderMinor, units, unitKind, tierPosition,
            unpaidFixedCharges, fixedPaidThrough, tariffVersionId, sale, cardId, paymentId, createdAt, writtenAt,
            appliedAt, appliedSource, cancelledAt, operator FROM purchase WHERE id = 1
            """),
        ("unbalanced purchase", """
            INSERT INTO purchase SELECT NULL, 'other', accountId, meterId, 3, mode, state, currency, paidMinor + 1,
            balanceUsedMinor, fixedChargesMinor, valueMinor, remainderMinor, units, unitKind, tierPosition,
            unpaidFixedCharges, fixedPaidThrough, tariffVersionId, sale, cardId, paymentId, createdAt, writtenAt,
            appliedAt, appliedSource, cancelledAt, operator FROM purchase WHERE id = 1
            """),
        ("second meter for an account", """
            INSERT INTO meter (serial, kind, unitKind, tariffId, accountId, createdAt) VALUES (7, 'electricity', 1, 1, 1, 0)
            """),
        ("water meter on an electricity tariff", """
            INSERT INTO meter (serial, kind, unitKind, tariffId, createdAt) VALUES (8, 'water', 2, 1, 0)
            """),
        ("last applied going back", "UPDATE meter SET lastAppliedSequence = 0"),
        ("unknown meter", "INSERT INTO reading (meterId, time, register) VALUES (99, 1, 1)"),
        ("tariff version edit", "UPDATE tariffVersion SET validFrom = 5"),
        ("closing with a balance", "UPDATE account SET state = 'closed', closedAt = 1, balanceMinor = 5"),
    ])
    func constraintsRefuseBadRows(_ name: String, _ sql: String) throws {
        let store = try makeStore()
        let sale = try store.sell(account: "1", amount: .fen(10000), requestID: "r1", mode: .card, by: desk)
        let plan = try store.cardPlan(purchase: sale.purchase.id!, by: desk)
        _ = try store.markWritten(purchase: sale.purchase.id!, cardSerial: plan.cardSerial, generation: 1, by: desk)
        _ = try store.markApplied(meter: "20251125", upTo: 1, source: "card", by: Actor("desk", now: now + 1))
        _ = try store.sell(account: "1", amount: .fen(500), requestID: "r2", mode: .card, by: desk)
        let plan2 = try store.cardPlan(purchase: 2, by: desk)
        _ = try store.markWritten(purchase: 2, cardSerial: plan2.cardSerial, generation: 1, by: desk)
        // purchase 1 is applied; use a written one for the transition case.
        let target = name == "written to cancelled" ? sql.replacingOccurrences(of: "id = 1", with: "id = 2") : sql
        #expect(throws: DatabaseError.self, "\(name) was accepted") {
            try store.writer.write { try $0.execute(sql: target) }
        }
        #expect(try store.check().isEmpty)
    }
}
