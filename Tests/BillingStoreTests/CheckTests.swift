import BillingStore
import Foundation
import GRDB
import Testing

/// `db check` finds what raw SQL (bypassing the API, as a bad script or a bug would) broke; `db backup` copies a
/// store that is being written.
@Suite struct CheckTests {
    func storeWithSales() throws -> BillingDatabase {
        let store = try makeStore(file: true)
        for i in 0..<3 {
            _ = try store.sell(account: "1", amount: .fen(1000), requestID: "s\(i)", mode: .remote, by: desk)
        }
        _ = try store.markApplied(meter: "20251125", upTo: 1, source: "remote", by: desk)
        #expect(try store.check().isEmpty)
        return store
    }

    @Test(arguments: [
        ("balance-equals-movements", "UPDATE account SET balanceMinor = balanceMinor + 1 WHERE id = 1"),
        ("sequences-contiguous", """
            INSERT INTO purchase SELECT NULL, 'gap', accountId, meterId, 9, mode, state, currency, paidMinor,
            balanceUsedMinor, fixedChargesMinor, valueMinor, remainderMinor, units, unitKind, tierPosition,
            unpaidFixedCharges, fixedPaidThrough, tariffVersionId, sale, cardId, paymentId, createdAt, writtenAt,
            appliedAt, appliedSource, cancelledAt, operator FROM purchase WHERE id = 3
            """),
        ("applied-once", """
            INSERT INTO auditLog (time, operator, action, entity, entityId) VALUES (1, 'x', 'purchase.applied', 'purchase', 1)
            """),
        ("applied-matches-meter", "UPDATE meter SET lastAppliedSequence = 2"),
        ("purchase-movements", "INSERT INTO movement (accountId, time, kind, amountMinor, purchaseId) VALUES (1, 1, 'refund', 5, 2)"),
        ("daily-summary", "INSERT INTO reading (meterId, time, register) VALUES (1, 100, 5)"),
    ])
    func checkReportsABrokenInvariant(_ invariant: String, _ sql: String) throws {
        let store = try storeWithSales()
        try store.writer.write { try $0.execute(sql: sql) }
        let violations = try store.check(full: true)
        #expect(violations.contains { $0.invariant == invariant }, "\(violations)")
    }

    @Test func backupWhileWritingIsAConsistentStore() throws {
        let store = try storeWithSales()
        let meter = try store.meter("20251125").id!
        let target = temporaryPath("backup.sqlite")
        let writer = Thread {
            for i in 0..<200 {
                _ = try? store.insertReadings([ReadingInput(meterID: meter, time: Int64(i) * 900, register: Int64(i))],
                                              by: desk)
            }
        }
        writer.start()
        try store.backup(to: target)
        while !writer.isFinished { usleep(1000) }
        let copy = try BillingDatabase.open(path: target)
        #expect(try copy.check(full: true).isEmpty)
        #expect(try copy.purchases().count == 3)
        let copied = try copy.count("SELECT count(*) FROM reading")
        #expect((0...200).contains(copied))
        #expect(try store.count("SELECT count(*) FROM reading") == 200)
    }
}
