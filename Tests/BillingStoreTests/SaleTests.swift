import BillingStore
import Foundation
import GRDB
import MeterProtocol
import Prepaid
import Testing

/// Selling: units from the tariff, sequences, idempotency, cancelling, conservation of money.
@Suite struct SaleTests {
    @Test func flatSaleMatchesTheWorkedExampleAndLeavesTheAccountConsistent() throws {
        let store = try makeStore()
        let outcome = try store.sell(account: "1", amount: .fen(10000), requestID: "a", mode: .remote, by: desk)
        let p = outcome.purchase
        #expect(!outcome.repeated)
        #expect(p.units == 189_286 && p.valueMinor == 10000 && p.remainderMinor == 0)
        #expect(p.sequence == 1 && p.state == .queued && p.operator == "desk")
        #expect(try store.account("1").account.balanceMinor == 0)
        #expect(try store.movements(account: "1").map(\.amountMinor) == [10000, -10000])
        #expect(try store.count("SELECT count(*) FROM auditLog WHERE action = 'purchase.create'") == 1)
        #expect(try store.check().isEmpty)
    }

    /// CARD.md §2.4 row 4: 150 kWh into the month, 100 yuan buys 30 000 Wh in tier 1 and 145 514 Wh in tier 2.
    @Test func tierPositionComesFromTheLatestReadingInTheBillingPeriod() throws {
        let store = try makeStore(tariff: Tariffs.tiered)
        let meter = try store.meter("20251125").id!
        // 2026-11-01T00:00 in UTC+8 is 2026-10-31T16:00Z = 1793462400. One reading before the month, two in it.
        let monthStart: Int64 = 1_793_462_400
        try store.insertReadings([
            ReadingInput(meterID: meter, time: monthStart - 3600, register: 1_000_000),
            ReadingInput(meterID: meter, time: monthStart + 86400, register: 1_100_000),
            ReadingInput(meterID: meter, time: now - 60, register: 1_150_000),
        ], by: desk)
        let p = try store.sell(account: "1", amount: .fen(10000), requestID: "t", mode: .remote, by: desk).purchase
        #expect(p.tierPosition == 150_000)
        #expect(p.units == 175_514 && p.valueMinor == 10000 && p.remainderMinor == 0)
        let sale = try JSONDecoder().decode(Sale.self, from: Data(p.sale.utf8))
        #expect(sale.segments.map(\.units) == [30_000, 145_514])
        #expect(sale.valueMicroMinor == 9_999_974_620)
    }

    /// Water at 3 fen/L with a 5 yuan monthly fixed charge: the first sale pays it, the remainder stays on the
    /// account and is added to the next sale, which pays no fixed charge in the same month.
    @Test func remaindersAndFixedChargesAreCarriedExactly() throws {
        let store = try makeStore(tariff: Tariffs.water, kind: .water)
        let first = try store.sell(account: "1", amount: .fen(1001), requestID: "w1", mode: .remote, by: desk).purchase
        #expect(first.fixedChargesMinor == 500 && first.units == 167 && first.valueMinor == 501)
        #expect(first.remainderMinor == 0)
        let second = try store.sell(account: "1", amount: .fen(100), requestID: "w2", mode: .remote, by: desk).purchase
        #expect(second.fixedChargesMinor == 0 && second.units == 33 && second.remainderMinor == 1)
        #expect(try store.account("1").account.balanceMinor == 1)
        let third = try store.sell(account: "1", amount: .fen(2), requestID: "w3", mode: .remote, by: desk).purchase
        #expect(third.balanceUsedMinor == 1 && third.units == 1 && third.remainderMinor == 0)
        let total = try store.movements(account: "1").reduce(0) { $0 + $1.amountMinor }
        let balance = try store.account("1").account.balanceMinor
        #expect(total == 0 && balance == 0)
        #expect(try store.check().isEmpty)
    }

    @Test func aRepeatedRequestReturnsTheFirstPurchaseAndADifferentOneIsAConflict() throws {
        let store = try makeStore()
        let first = try store.sell(account: "1", amount: .fen(5000), requestID: "click", mode: .remote, by: desk)
        let again = try store.sell(account: "1", amount: .fen(5000), requestID: "click", mode: .remote,
                                   by: Actor("desk", now: now + 5))
        #expect(again.repeated && again.purchase == first.purchase)
        #expect(try store.count("SELECT count(*) FROM purchase") == 1)
        #expect(try store.count("SELECT count(*) FROM movement") == 2)
        #expect(throws: StoreError.requestConflict(requestID: "click", purchaseID: 1)) {
            try store.sell(account: "1", amount: .fen(6000), requestID: "click", mode: .remote, by: desk)
        }
    }

    /// Two threads send the same request at once (a double click): one purchase. Two threads each selling twenty
    /// times: forty purchases with sequences 1...40, no gap, no duplicate.
    @Test func concurrentSalesAreIdempotentAndSequencesContiguous() throws {
        let path = temporaryPath()
        let store = try BillingDatabase.open(path: path)
        _ = try store.addTariff(Tariffs.flat, validFrom: 0, by: desk)
        _ = try store.openAccount(name: "A", by: desk)
        _ = try store.addMeter(serial: 1, kind: .electricity, tariff: "flat", by: desk)
        _ = try store.assignMeter("1", to: "1", by: desk)
        // A second connection to the same file, as a second process would have.
        let other = try BillingDatabase.open(path: path)
        let stores = [store, other]
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            _ = try? stores[i].sell(account: "1", amount: .fen(100), requestID: "same", mode: .remote, by: desk)
        }
        #expect(try store.count("SELECT count(*) FROM purchase") == 1)
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            for n in 0..<20 {
                _ = try! stores[i].sell(account: "1", amount: .fen(100), requestID: "t\(i)-\(n)", mode: .remote,
                                        by: desk)
            }
        }
        let sequences = try store.writer.read { try Int64.fetchAll($0, sql: "SELECT sequence FROM purchase ORDER BY 1") }
        #expect(sequences == Array(1...41))
        #expect(try store.check().isEmpty)
    }

    @Test func cancelOnlyBeforeTheCreditLeftTheDeskAndRefundsExactly() throws {
        let store = try makeStore(tariff: Tariffs.water, kind: .water)
        let queued = try store.sell(account: "1", amount: .fen(1000), requestID: "q", mode: .remote, by: desk).purchase
        let cancelled = try store.cancel(purchase: queued.id!, by: desk)
        #expect(cancelled.state == .cancelled)
        #expect(try store.account("1").account.balanceMinor == 1000)  // paid 1000, charged 1000, refunded 1000
        #expect(try store.cancel(purchase: queued.id!, by: desk).state == .cancelled)  // repeat: no second refund
        #expect(try store.account("1").account.balanceMinor == 1000)
        // The next sale uses the balance; its sequence follows the cancelled one (a void the meter still needs).
        let next = try store.sell(account: "1", amount: .fen(3), requestID: "n", mode: .card, by: desk).purchase
        #expect(next.sequence == 2 && next.balanceUsedMinor == 1000)
        // The fixed charge the cancelled sale paid is owed again by the next one.
        #expect(next.fixedChargesMinor == 500)
        let plan = try store.cardPlan(purchase: next.id!, by: desk)
        #expect(plan.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 2, units: UInt32(next.units)))
        _ = try store.markWritten(purchase: next.id!, cardSerial: plan.cardSerial, generation: plan.generation,
                                  by: desk)
        #expect(throws: StoreError.invalidTransition(purchase: 2, from: "written", to: "cancelled")) {
            try store.cancel(purchase: 2, by: desk)
        }
        _ = try store.markApplied(meter: "20251125", upTo: 2, source: "card", by: desk)
        #expect(throws: StoreError.invalidTransition(purchase: 2, from: "applied", to: "cancelled")) {
            try store.cancel(purchase: 2, by: desk)
        }
        #expect(try store.check().isEmpty)
    }

    @Test func markAppliedAppliesEachPurchaseOnceAndIsIdempotent() throws {
        let store = try makeStore(lastApplied: 41)
        for i in 0..<3 {
            _ = try store.sell(account: "1", amount: .fen(1000), requestID: "p\(i)", mode: .remote, by: desk)
        }
        #expect(try store.purchases().map(\.sequence) == [42, 43, 44])
        #expect(try store.markApplied(meter: "20251125", upTo: 43, source: "remote", by: desk).map(\.sequence)
            == [42, 43])
        #expect(try store.markApplied(meter: "20251125", upTo: 43, source: "remote", by: desk).isEmpty)
        #expect(try store.markApplied(meter: "20251125", upTo: 42, source: "card", by: desk).isEmpty)
        #expect(try store.markApplied(meter: "20251125", upTo: 44, source: "reading", by: desk).map(\.sequence) == [44])
        #expect(try store.meter("20251125").lastAppliedSequence == 44)
        #expect(throws: StoreError.self) {
            try store.markApplied(meter: "20251125", upTo: 50, source: "remote", by: desk)
        }
        #expect(try store.count("SELECT count(*) FROM auditLog WHERE action = 'purchase.applied'") == 3)
        #expect(try store.check().isEmpty)
    }

    @Test func badSalesAreTypedErrorsAndChangeNothing() throws {
        let store = try makeStore()
        #expect(throws: StoreError.invalidAmount("1.005", reason: "CNY has 2 decimal places (1 fen is the smallest amount)")) {
            try Amount.parse("1.005", currency: .cny)
        }
        #expect(try Amount.parse("100.5", currency: .cny) == .fen(10050))
        #expect(try Amount.parse("0.07", currency: .cny) == .fen(7))
        for bad in ["", "1e3", "1,000.00", "12.", ".5", "abc", "99999999999999999999"] {
            #expect(throws: StoreError.self, "\(bad)") { try Amount.parse(bad, currency: .cny) }
        }
        #expect(throws: StoreError.amountNotPositive) {
            try store.sell(account: "1", amount: .fen(0), requestID: "z", mode: .remote, by: desk)
        }
        #expect(throws: StoreError.amountNotPositive) {
            try store.sell(account: "1", amount: .fen(-100), requestID: "n", mode: .remote, by: desk)
        }
        #expect(throws: StoreError.accountNotFound("9")) {
            try store.sell(account: "9", amount: .fen(100), requestID: "u", mode: .remote, by: desk)
        }
        _ = try store.openAccount(name: "No meter", by: desk)
        #expect(throws: StoreError.accountHasNoMeter(2)) {
            try store.sell(account: "2", amount: .fen(100), requestID: "m", mode: .remote, by: desk)
        }
        _ = try store.closeAccount("2", by: desk)
        #expect(throws: StoreError.accountClosed(2)) {
            try store.sell(account: "2", amount: .fen(100), requestID: "c", mode: .remote, by: desk)
        }
        #expect(try store.count("SELECT count(*) FROM purchase") == 0)
        #expect(try store.count("SELECT count(*) FROM movement") == 0)
    }

    @Test func closingAnAccountNeedsNoPendingPurchaseAndNoBalanceUnlessPaidOut() throws {
        let store = try makeStore(tariff: Tariffs.water, kind: .water)
        let p = try store.sell(account: "1", amount: .fen(1001), requestID: "x", mode: .remote, by: desk).purchase
        #expect(throws: StoreError.accountHasPendingPurchases(1, count: 1)) { try store.closeAccount("1", by: desk) }
        _ = try store.cancel(purchase: p.id!, by: desk)
        #expect(throws: StoreError.accountHasBalance(1, balanceMinor: 1001)) { try store.closeAccount("1", by: desk) }
        let closed = try store.closeAccount("1", payout: true, by: desk)
        #expect(closed.account.state == .closed && closed.account.balanceMinor == 0 && closed.meter == nil)
        #expect(try store.movements(account: "1").last?.kind == .payout)
        #expect(try store.check().isEmpty)
    }

    @Test func aLockedDatabaseIsATypedErrorAndNothingChanges() throws {
        let path = temporaryPath()
        let setup = try BillingDatabase.open(path: path)
        _ = try setup.addTariff(Tariffs.flat, validFrom: 0, by: desk)
        _ = try setup.openAccount(name: "A", by: desk)
        var config = BillingDatabase.configuration(busyTimeout: 0.2)
        config.label = "impatient"
        let impatient = try BillingDatabase(try DatabasePool(path: path, configuration: config))
        let holder = try DatabaseQueue(path: path)
        try holder.writeWithoutTransaction { db in
            try db.execute(sql: "BEGIN IMMEDIATE")
            #expect {
                try impatient.openAccount(name: "B", by: desk)
            } throws: { error in
                if case .databaseLocked = error as? StoreError { return true }
                return false
            }
            try db.execute(sql: "ROLLBACK")
        }
        #expect(try impatient.accounts().count == 1)
    }
}

/// SQLITE_FULL, as a full disk gives it, made real by capping the file's size with `max_page_count`.
@Suite struct DiskFullTests {
    @Test func aFullDiskIsATypedErrorAndTheStoreStaysWhole() throws {
        let store = try makeStore(file: true)
        let meter = try store.meter("20251125").id!
        try store.insertReadings([ReadingInput(meterID: meter, time: 0, register: 0)], by: desk)
        let pages = try store.count("PRAGMA page_count")
        try store.writer.writeWithoutTransaction { try $0.execute(sql: "PRAGMA max_page_count = \(pages)") }
        let batch = (1...20_000).map { ReadingInput(meterID: meter, time: Int64($0) * 60, register: Int64($0)) }
        #expect {
            try store.insertReadings(batch, by: desk)
        } throws: { error in
            guard let error = error as? StoreError, case .diskFull = error else { return false }
            return error.explanation.contains("free space and retry")
        }
        // Nothing of the batch, its outbox entries or its audit line was kept, and the invariants hold.
        #expect(try store.count("SELECT count(*) FROM reading") == 1)
        #expect(try store.count("SELECT count(*) FROM outbox") == 1)
        #expect(try store.check().isEmpty)
        // Space again: the same batch goes in whole.
        try store.writer.writeWithoutTransaction { try $0.execute(sql: "PRAGMA max_page_count = 1073741823") }
        #expect(try store.insertReadings(batch, by: desk) == 20_000)
        #expect(try store.count("SELECT count(*) FROM outbox") == 20_001)
    }
}
