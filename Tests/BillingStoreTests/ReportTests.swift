import BillingStore
import Foundation
import GRDB
import Testing

/// Bank payments and reports on a small dataset whose numbers are worked out by hand.
@Suite struct ReportTests {
    @Test func bankPaymentsImportOnceAsPurchasesOrCredits() throws {
        let store = try makeStore()
        _ = try store.openAccount(name: "No meter", by: desk)
        let csv = """
            date,reference,account,amount,currency,purpose
            2026-11-24,BK-1,1,100.00,CNY,topup
            2026-11-24,BK-2,2,20.50,CNY,topup
            2026-11-24,BK-3,1,5.00,CNY,credit
            2026-11-24,BK-1,1,100.00,CNY,topup
            2026-11-24,BK-4,1,1.001,CNY,topup
            2026-11-24,BK-5,9,1.00,CNY,topup

            """
        let rows = try BankPaymentRow.parse(csv: csv)
        let results = store.importPayments(rows, by: desk)
        #expect(results[0] == .purchase(line: 2, reference: "BK-1", purchaseID: 1))
        #expect(results[1] == .credit(line: 3, reference: "BK-2", amountMinor: 2050))
        #expect(results[2] == .credit(line: 4, reference: "BK-3", amountMinor: 500))
        #expect(results[3] == .refused(line: 5, reference: "BK-1", .duplicatePayment(reference: "BK-1")))
        guard case .refused(_, _, .invalidAmount) = results[4] else { Issue.record("\(results[4])"); return }
        #expect(results[5] == .refused(line: 7, reference: "BK-5", .accountNotFound("9")))
        // Importing the same file again changes nothing.
        #expect(store.importPayments(rows, by: desk).allSatisfy { if case .refused = $0 { true } else { false } })
        #expect(try store.count("SELECT count(*) FROM bankPayment") == 3)
        #expect(try store.purchase(1).requestId == "bank:BK-1" && store.purchase(1).state == .queued)
        #expect(try store.account("1").account.balanceMinor == 500)
        #expect(try store.account("2").account.balanceMinor == 2050)
        #expect(try store.check().isEmpty)
        #expect(throws: StoreError.self) { try BankPaymentRow.parse(csv: "when,ref\n") }
    }

    @Test func salesConsumptionAndStatementOnAKnownDataset() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        let offset: Int64 = 28800
        let nov1 = LocalTime.parseDate("2026-11-01")!
        func t(_ day: Int64, _ hour: Int64) -> Int64 { (nov1 + day) * 86400 - offset + hour * 3600 }
        // Registers: 1000 Wh at Oct 31 23:00, then Nov 1: 1100 (01:00), 1400 (23:00); Nov 2: 1500; Dec 1: 2000.
        try store.insertReadings([
            ReadingInput(meterID: meter, time: t(-1, 23), register: 1000),
            ReadingInput(meterID: meter, time: t(0, 1), register: 1100),
            ReadingInput(meterID: meter, time: t(0, 23), register: 1400),
            ReadingInput(meterID: meter, time: t(1, 12), register: 1500),
            ReadingInput(meterID: meter, time: t(30, 12), register: 2000),
        ], by: desk)
        let days = try store.consumptionReport(fromDay: nov1, toDay: nov1 + 30, by: .day)
        #expect(days.map(\.units) == [400, 100, 500])
        #expect(days.map(\.period) == ["2026-11-01", "2026-11-02", "2026-12-01"])
        let months = try store.consumptionReport(fromDay: nov1 - 1, toDay: nov1 + 30, by: .month)
        #expect(months.map(\.period) == ["2026-10", "2026-11", "2026-12"])
        #expect(months.map(\.units) == [0, 500, 500])

        _ = try store.sell(account: "1", amount: .fen(10000), requestID: "a", mode: .remote,
                           by: Actor("desk", now: t(2, 9)))
        _ = try store.sell(account: "1", amount: .fen(5000), requestID: "b", mode: .remote,
                           by: Actor("desk", now: t(2, 10)))
        _ = try store.sell(account: "1", amount: .fen(2000), requestID: "c", mode: .remote,
                           by: Actor("desk", now: t(3, 10)))
        _ = try store.cancel(purchase: 3, by: Actor("desk", now: t(3, 11)))
        let sales = try store.salesReport(fromDay: nov1, toDay: nov1 + 29, by: .day, perAccount: true)
        #expect(sales.count == 1 && sales[0].period == "2026-11-03" && sales[0].purchases == 2)
        #expect(sales[0].paidMinor == 15000 && sales[0].valueMinor == 15000 && sales[0].units == 189_286 + 94_643)
        let statement = try store.statement(account: "1", monthStartDay: nov1)
        #expect(statement.openingBalanceMinor == 0 && statement.depositsMinor == 17000)
        #expect(statement.chargedMinor == 17000 && statement.refundsMinor == 2000)
        #expect(statement.closingBalanceMinor == 2000 && statement.purchases == 2)
        #expect(statement.consumption == 500)
        #expect(try store.account("1").account.balanceMinor == statement.closingBalanceMinor)
    }
}
