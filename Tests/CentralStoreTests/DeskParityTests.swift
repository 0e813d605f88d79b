import BillingStore
import Foundation
import GRDB
import MeterProtocol
import MetergwTestSupport
import PostgresNIO
import Prepaid
import Testing

@testable import CentralStore

/// The desk on both stores (docs/STORE.md "One desk, two stores"): the same operations through `BillingDesk` on a
/// fresh SQLite file and on a fresh central PostgreSQL database give the same records, field by field (prices,
/// units, sequences, balances, states, receipts), the same refusals and the same audit log.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct DeskParityTests {
    let cluster: PostgresCluster
    let url: CentralURL

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.url = try CentralURL(parsing: self.cluster.url(database: try self.cluster.createDatabase(prefix: "desk")))
    }

    static let now: Int64 = 0x6B06_9C88  // 2026-11-25T08:30:00Z
    static let desk = Actor("desk", now: now)

    static let tiered = try! Tariff(
        name: "household", currency: .cny, unitKind: .wattHours, period: .monthly,
        tiers: [.init(upToUnits: 180_000, price: Price(microMinorPerUnit: 52830)),
                .init(upToUnits: 350_000, price: Price(microMinorPerUnit: 57830)),
                .init(upToUnits: nil, price: Price(microMinorPerUnit: 82830))])
    static let tieredNext = try! Tariff(
        name: "household", currency: .cny, unitKind: .wattHours, period: .monthly,
        tiers: [.init(upToUnits: nil, price: Price(microMinorPerUnit: 61000))])
    /// 3 fen per litre and 5.00 a month: sales leave remainders and pay fixed charges.
    static let water = try! Tariff.flat(name: "water", currency: .cny, unitKind: .litres,
                                        price: Price(microMinorPerUnit: 3_000_000), fixedChargePerPeriodMinor: 500)

    /// One step's outcome as text: the value, or the refusal.
    struct Steps {
        var lines: [String] = []

        mutating func add<T>(_ name: String, _ body: () async throws -> T) async {
            do {
                self.lines.append("\(name): \(Self.normalized(try await body()))")
            } catch let error as StoreError {
                self.lines.append("\(name): refused \(error)")
            } catch {
                self.lines.append("\(name): FAILED, not a StoreError: \(error)")
            }
        }

        /// Purchases' sales and tariff versions' definitions are JSON text: jsonb spaces and orders it its own
        /// way, so both are compared as the values they decode to.
        static func normalized<T>(_ value: T) -> String {
            switch value {
            case let p as Purchase: String(describing: Self.purchase(p))
            case let ps as [Purchase]: String(describing: ps.map(Self.purchase))
            case let o as BillingDatabase.SaleOutcome:
                String(describing: BillingDatabase.SaleOutcome(
                    purchase: Self.purchase(o.purchase), repeated: o.repeated, account: o.account, meter: o.meter))
            case let d as BillingDatabase.TariffDetail: String(describing: Self.tariff(d))
            case let ds as [BillingDatabase.TariffDetail]: String(describing: ds.map(Self.tariff))
            case let r as Receipt: r.text
            default: String(describing: value)
            }
        }

        static func purchase(_ p: Purchase) -> Purchase {
            var p = p
            let sale = try! JSONDecoder().decode(Sale.self, from: Data(p.sale.utf8))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            p.sale = String(decoding: try! encoder.encode(sale), as: UTF8.self)
            return p
        }

        static func tariff(_ d: BillingDatabase.TariffDetail) -> BillingDatabase.TariffDetail {
            var d = d
            for i in d.versions.indices {
                d.versions[i].definition = try! TariffJSON.encode(try! d.versions[i].tariff())
            }
            return d
        }
    }

    /// The same desk work on any store; `addReading` puts a meter's reading in (the gateway's part).
    static func script(
        _ db: any BillingDesk, addReading: (_ meterID: Int64, _ time: Int64, _ register: Int64) async throws -> Void
    ) async throws -> [String] {
        let desk = Self.desk
        var s = Steps()
        await s.add("tariff household") {
            try await db.addTariff(Self.tiered, validFrom: 0, utcOffsetSeconds: 28800, by: desk)
        }
        await s.add("tariff water") {
            try await db.addTariff(Self.water, validFrom: 0, utcOffsetSeconds: 28800, by: desk)
        }
        await s.add("tariff household v2 from next month") {
            try await db.addTariff(Self.tieredNext, validFrom: Self.now + 40 * 86400, utcOffsetSeconds: 28800, by: desk)
        }
        await s.add("tariff household again from 0") {
            try await db.addTariff(Self.tiered, validFrom: 0, utcOffsetSeconds: 28800, by: desk)
        }
        await s.add("tariff water in litres per kWh") {
            try await db.addTariff(try Tariff.flat(name: "water", currency: .cny, unitKind: .wattHours,
                                                   price: Price(microMinorPerUnit: 1)),
                                   validFrom: Self.now, utcOffsetSeconds: 28800, by: desk)
        }
        await s.add("open Li Wei") {
            try await db.openAccount(name: " Li Wei ", address: "Beijing", phone: nil, number: nil, currency: .cny,
                                     by: desk)
        }
        await s.add("open Wang Fang") {
            try await db.openAccount(name: "Wang Fang", address: nil, phone: "010-1234", number: 20_000_001,
                                     currency: .cny, by: desk)
        }
        await s.add("open Zhang San") {
            try await db.openAccount(name: "Zhang San", address: nil, phone: nil, number: nil, currency: .cny, by: desk)
        }
        await s.add("open nobody") {
            try await db.openAccount(name: "  ", address: nil, phone: nil, number: nil, currency: .cny, by: desk)
        }
        await s.add("meter electricity") {
            try await db.addMeter(serial: 20_251_125, kind: .electricity, tariff: "household", bus: nil, address: nil,
                                  keyRevision: 1, lastApplied: 0, by: desk)
        }
        await s.add("meter water") {
            try await db.addMeter(serial: 30_000_001, kind: .water, tariff: "water", bus: "/dev/ttyUSB0", address: 5,
                                  keyRevision: 2, lastApplied: 7, by: desk)
        }
        await s.add("meter twice") {
            try await db.addMeter(serial: 20_251_125, kind: .electricity, tariff: "household", bus: nil, address: nil,
                                  keyRevision: 1, lastApplied: 0, by: desk)
        }
        await s.add("meter water on an electricity tariff") {
            try await db.addMeter(serial: 40_000_001, kind: .water, tariff: "household", bus: nil, address: nil,
                                  keyRevision: 1, lastApplied: 0, by: desk)
        }
        await s.add("meter on no tariff") {
            try await db.addMeter(serial: 40_000_002, kind: .water, tariff: "none", bus: nil, address: nil,
                                  keyRevision: 1, lastApplied: 0, by: desk)
        }
        await s.add("assign electricity") { try await db.assignMeter("20251125", to: "1", by: desk) }
        await s.add("assign water") { try await db.assignMeter("30000001", to: "#20000001", by: desk) }
        await s.add("assign again") { try await db.assignMeter("20251125", to: "1", by: desk) }
        await s.add("assign to an account with a meter") { try await db.assignMeter("20251125", to: "2", by: desk) }

        // 150 kWh into this month before the sale: 100.00 crosses from the first tier into the second.
        let meterID = try await db.meter("20251125").id!
        try await addReading(meterID, Self.now - 40 * 86400, 900_000)
        try await addReading(meterID, Self.now - 30 * 86400, 1_000_000)
        try await addReading(meterID, Self.now - 3600, 1_150_000)

        await s.add("sell remote") {
            try await db.sell(account: "1", amount: Money(minor: 10_000, .cny), requestID: "r1", mode: .remote,
                              by: desk)
        }
        await s.add("sell remote repeated") {
            try await db.sell(account: "1", amount: Money(minor: 10_000, .cny), requestID: "r1", mode: .remote,
                              by: desk)
        }
        await s.add("sell with a used request id") {
            try await db.sell(account: "1", amount: Money(minor: 5_000, .cny), requestID: "r1", mode: .remote, by: desk)
        }
        await s.add("sell card water with fixed charges") {
            try await db.sell(account: "#20000001", amount: Money(minor: 2_000, .cny), requestID: "r2", mode: .card,
                              by: desk)
        }
        await s.add("sell card water again") {
            try await db.sell(account: "20000001", amount: Money(minor: 1, .cny), requestID: "r3", mode: .card,
                              by: desk)
        }
        await s.add("sell too little") {
            try await db.sell(account: "#20000001", amount: Money(minor: 1, .cny), requestID: "r3b", mode: .card,
                              by: desk)
        }
        await s.add("sell without a meter") {
            try await db.sell(account: "3", amount: Money(minor: 1_000, .cny), requestID: "r4", mode: .remote, by: desk)
        }
        await s.add("sell in dollars") {
            try await db.sell(account: "1", amount: Money(minor: 1_000, Currency(code: "USD", minorUnitName: "cent",
                                                                              minorDigits: 2)),
                              requestID: "r5", mode: .remote, by: desk)
        }
        await s.add("sell nothing") {
            try await db.sell(account: "1", amount: Money(minor: 0, .cny), requestID: "r6", mode: .remote, by: desk)
        }
        await s.add("sell with an empty request id") {
            try await db.sell(account: "1", amount: Money(minor: 100, .cny), requestID: "", mode: .remote, by: desk)
        }
        await s.add("cancel the remote sale") { try await db.cancel(purchase: 1, by: desk) }
        await s.add("cancel it again") { try await db.cancel(purchase: 1, by: desk) }
        await s.add("cancel no purchase") { try await db.cancel(purchase: 99, by: desk) }
        await s.add("sell after the refund") {
            try await db.sell(account: "1", amount: Money(minor: 3_000, .cny), requestID: "r7", mode: .remote, by: desk)
        }
        await s.add("close with a pending purchase") { try await db.closeAccount("1", payout: false, by: desk) }
        await s.add("close Zhang San") { try await db.closeAccount("3", payout: false, by: desk) }
        await s.add("close Zhang San again") { try await db.closeAccount("3", payout: false, by: desk) }
        await s.add("assign to a closed account") { try await db.assignMeter("20251125", to: "3", by: desk) }
        await s.add("sell to a closed account") {
            try await db.sell(account: "3", amount: Money(minor: 1_000, .cny), requestID: "r8", mode: .remote, by: desk)
        }
        await s.add("cancel the water sale") { try await db.cancel(purchase: 2, by: desk) }
        await s.add("close Wang Fang with a balance") { try await db.closeAccount("2", payout: false, by: desk) }
        await s.add("close Wang Fang paying out") { try await db.closeAccount("2", payout: true, by: desk) }
        await s.add("sell on the balance's remainder") {
            try await db.sell(account: "1", amount: Money(minor: 2_001, .cny), requestID: "r9", mode: .card, by: desk)
        }

        // Bank payments: a top-up, a credit, and each refusal once (none after a row is written, so the two stores'
        // ids stay in step: PostgreSQL's identities do not roll back).
        let payments = try BankPaymentRow.parse(csv: """
            date,reference,account,amount,currency,purpose
            2026-11-25,B-1,1,50.00,CNY,topup
            2026-11-25,B-2,#20000001,10.00,CNY,
            2026-11-25,B-1,1,50.00,CNY,topup
            2026-11-25,B-3,#10000001,1.234,CNY,topup
            2026-11-25,B-4,1,5.00,USD,topup
            2026-11-25,B-5,nobody,5.00,CNY,topup
            2026-11-25,B-6,#10000001,7.00,CNY,savings
            """)
        await s.add("import payments") { await db.importPayments(payments, by: desk) }
        let november = LocalTime.parseMonth("2026-11")!
        await s.add("statement of Li Wei") { try await db.statement(account: "1", monthStartDay: november) }
        await s.add("statement of Wang Fang") { try await db.statement(account: "2", monthStartDay: november) }
        await s.add("statement of October") {
            try await db.statement(account: "1", monthStartDay: LocalTime.parseMonth("2026-10")!)
        }
        await s.add("sales per day and account") {
            try await db.salesReport(fromDay: november, toDay: november + 29, by: .day, perAccount: true)
        }
        await s.add("sales per month") {
            try await db.salesReport(fromDay: november - 31, toDay: november + 29, by: .month, perAccount: false)
        }
        await s.add("accounts") { try await db.accounts() }
        await s.add("account by number") { try await db.account("#10000001") }
        await s.add("account unknown") { try await db.account("nobody") }
        await s.add("movements of Li Wei") { try await db.movements(account: "1") }
        await s.add("movements of Wang Fang") { try await db.movements(account: "#20000001") }
        await s.add("meters") { try await db.meters() }
        await s.add("meter by id") { try await db.meter("id:2") }
        await s.add("meter unknown") { try await db.meter("1") }
        await s.add("pending credit electricity") { try await db.pendingCreditBlock(meter: "20251125") }
        await s.add("pending credit water") { try await db.pendingCreditBlock(meter: "30000001") }
        await s.add("tariffs") { try await db.tariffs() }
        await s.add("tariff by name") { try await db.tariff("water") }
        await s.add("tariff unknown") { try await db.tariff("none") }
        await s.add("purchases") { try await db.purchases(account: nil) }
        await s.add("purchases of Li Wei") { try await db.purchases(account: "1") }
        for id: Int64 in 1...7 {
            await s.add("receipt \(id)") { try await db.receipt(purchase: id) }
        }
        return s.lines
    }

    /// The audit log without ids (identity columns skip numbers on rollback; the order is the same).
    static func audit(_ entries: [AuditEntry]) -> [String] {
        entries.filter { $0.action != "readings.insert" }.map { e in
            let detail = try! JSONSerialization.jsonObject(with: Data(e.detail.utf8))
            let canonical = try! JSONSerialization.data(withJSONObject: detail, options: [.sortedKeys])
            return "\(e.time) \(e.operator) \(e.action) \(e.entity) \(e.entityId.map(String.init) ?? "-") "
                + String(decoding: canonical, as: UTF8.self)
        }
    }

    @Test func theSameDeskWorkGivesTheSameRecordsOnBothStores() async throws {
        let sqlite = try BillingDatabase.open(path: FileManager.default.temporaryDirectory
            .appendingPathComponent("metergw-parity-\(UUID().uuidString).sqlite").path)
        let local = try await Self.script(sqlite) { meterID, time, register in
            _ = try sqlite.insertReadings([ReadingInput(meterID: meterID, time: time, register: register)],
                                          by: Self.desk)
        }
        let localAudit = Self.audit(try await sqlite.writer.read { try AuditEntry.order(Column("id")).fetchAll($0) })

        let (central, centralAudit) = try await CentralDatabase.with(self.url) { db in
            try await db.migrate()
            let lines = try await Self.script(db) { meterID, time, register in
                try await db.connection.execute(
                    "INSERT INTO reading (meter_id, time, register) VALUES (\(meterID), \(time), \(register))",
                    logger: db.logger)
            }
            let audit = try await db.records(db.connection, """
                SELECT (to_jsonb(l) || jsonb_build_object('detail', l.detail::text))::text
                FROM audit_log l ORDER BY l.id
                """, as: AuditEntry.self)
            return (lines, Self.audit(audit))
        }

        #expect(local.count == central.count)
        for (a, b) in zip(local, central) {
            #expect(a == b)
        }
        #expect(localAudit.count == centralAudit.count)
        for (a, b) in zip(localAudit, centralAudit) {
            #expect(a == b)
        }
        // The script did what it says: not only refusals on both sides, and no untyped failure.
        #expect(!(local + central).contains { $0.contains("FAILED") })
        #expect(local.filter { $0.contains(": refused ") }.count < local.count / 2)
        #expect(local.contains { $0.hasPrefix("sell remote repeated: ") && $0.contains("repeated: true") })
        #expect(local.contains { $0.hasPrefix("sell with a used request id: refused requestConflict") })
        #expect(local.contains {
            $0.hasPrefix("statement of Li Wei: ") && $0.contains("consumption: Optional(150000)")
        })
        #expect(local.contains { $0.hasPrefix("import payments: ") && $0.contains("duplicatePayment") })
    }
}
