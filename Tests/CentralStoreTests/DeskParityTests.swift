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
            case let u as BillingDatabase.UploadOutcome:
                String(describing: BillingDatabase.UploadOutcome(
                    upload: u.upload, applied: u.applied.map(Self.purchase), repeated: u.repeated))
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

    // MARK: Cards

    static let keys = IssuerKeys(systemKey: SystemKey(bytes: Array(0..<32))!, issuerID: 1)
    static let issuer = CardIssuer(keys: keys)

    /// `image` held to a fresh model of meter `serial`: what it writes back.
    static func carried(_ image: [UInt8], toMeter serial: UInt32, at time: Int64) throws -> [UInt8] {
        var meter = PrepaidMeter(serial: serial, kind: .electricity, issuerID: 1, now: UInt32(time))
        return try #require(meter.insertCard(image, keys: Self.keys.meter(serial: serial, revision: 1),
                                             now: UInt32(time)).writtenImage)
    }

    /// The card flows and a meter's tariff on any store (docs/STORE.md "Card sales", "Cards brought back").
    static func cardScript(_ db: any BillingDesk) async throws -> [String] {
        let desk = Self.desk
        var s = Steps()
        let flat = try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                   price: Price(microMinorPerUnit: 500_000))
        await s.add("tariff household") {
            try await db.addTariff(Self.tiered, validFrom: 0, utcOffsetSeconds: 28800, by: desk)
        }
        await s.add("tariff flat") { try await db.addTariff(flat, validFrom: 0, utcOffsetSeconds: 28800, by: desk) }
        await s.add("tariff water") {
            try await db.addTariff(Self.water, validFrom: 0, utcOffsetSeconds: 28800, by: desk)
        }
        for (name, number) in [("Li Wei", 10_000_001), ("Wang Fang", 10_000_002)] as [(String, Int64)] {
            await s.add("open \(name)") {
                try await db.openAccount(name: name, address: nil, phone: nil, number: number, currency: .cny,
                                         by: desk)
            }
        }
        for serial: UInt32 in [20_251_125, 20_251_126, 20_251_127] {
            await s.add("meter \(serial)") {
                try await db.addMeter(serial: serial, kind: .electricity, tariff: "household", bus: nil, address: nil,
                                      keyRevision: 1, lastApplied: 0, by: desk)
            }
        }
        await s.add("assign 20251125") { try await db.assignMeter("20251125", to: "1", by: desk) }
        await s.add("assign 20251126") { try await db.assignMeter("20251126", to: "2", by: desk) }

        // The meter's tariff: changed for its next sales; a tariff of another unit, or none, is refused.
        await s.add("set tariff flat") { try await db.setTariff("20251125", tariff: "flat", by: desk) }
        await s.add("set tariff again") { try await db.setTariff("20251125", tariff: "flat", by: desk) }
        await s.add("set tariff water") { try await db.setTariff("20251125", tariff: "water", by: desk) }
        await s.add("set tariff none") { try await db.setTariff("20251125", tariff: "none", by: desk) }
        await s.add("set tariff of no meter") { try await db.setTariff("1", tariff: "flat", by: desk) }

        // A card sale: the plan issues card 100001, the write is marked; a second sale joins the block.
        await s.add("sell card 1") {
            try await db.sell(account: "1", amount: Money(minor: 1_000, .cny), requestID: "c1", mode: .card, by: desk)
        }
        await s.add("plan 1") { try await db.cardPlan(purchase: 1, by: desk) }
        await s.add("plan 1 again") { try await db.cardPlan(purchase: 1, by: desk) }
        await s.add("written on no card") {
            try await db.markWritten(purchase: 1, cardSerial: 999, generation: 1, by: desk)
        }
        await s.add("written on another generation") {
            try await db.markWritten(purchase: 1, cardSerial: 100_001, generation: 2, by: desk)
        }
        await s.add("written 1") { try await db.markWritten(purchase: 1, cardSerial: 100_001, generation: 1, by: desk) }
        await s.add("written 1 again") {
            try await db.markWritten(purchase: 1, cardSerial: 100_001, generation: 1, by: desk)
        }
        await s.add("sell remote 2") {
            try await db.sell(account: "1", amount: Money(minor: 700, .cny), requestID: "c2", mode: .remote, by: desk)
        }
        await s.add("plan a remote purchase") { try await db.cardPlan(purchase: 2, by: desk) }
        await s.add("plan no purchase") { try await db.cardPlan(purchase: 99, by: desk) }
        await s.add("cancel the remote purchase") { try await db.cancel(purchase: 2, by: desk) }
        await s.add("sell card 3") {
            try await db.sell(account: "1", amount: Money(minor: 500, .cny), requestID: "c3", mode: .card, by: desk)
        }
        let plan3 = try await db.cardPlan(purchase: 3, by: desk)
        await s.add("plan 3") { plan3 }
        await s.add("written 3") { try await db.markWritten(purchase: 3, cardSerial: 100_001, generation: 1, by: desk) }
        await s.add("the other meter's card") {
            _ = try await db.sell(account: "2", amount: Money(minor: 300, .cny), requestID: "c4", mode: .card,
                                  by: desk)
            return try await db.cardPlan(purchase: 4, by: desk)
        }
        await s.add("active plan of an unassigned meter") { try await db.activeCardPlan(meter: "20251127", by: desk) }
        await s.add("active plan") { try await db.activeCardPlan(meter: "20251125", by: desk) }
        await s.add("written on the other meter's card") {
            try await db.markWritten(purchase: 3, cardSerial: 100_002, generation: 1, by: desk)
        }

        // The card comes back from its meter: the upload confirms 1 and 3 (2 was cancelled: a void), once.
        let image = plan3.image(issuer: Self.issuer, issueTime: UInt32(Self.now))
        let back = try Self.carried(image, toMeter: 20_251_125, at: Self.now + 3600)
        await s.add("upload without a write-back") { try await db.recordUpload(image: image, issuer: Self.issuer,
                                                                                 by: desk) }
        await s.add("upload") { try await db.recordUpload(image: back, issuer: Self.issuer, by: desk) }
        await s.add("upload repeated") { try await db.recordUpload(image: back, issuer: Self.issuer, by: desk) }
        var forged = back
        forged[176 + 3] = 9
        await s.add("upload forged") { try await db.recordUpload(image: forged, issuer: Self.issuer, by: desk) }
        await s.add("upload of another issuer's card") {
            let stranger = CardIssuer(keys: IssuerKeys(systemKey: SystemKey(bytes: Array(repeating: 7, count: 32))!,
                                                       issuerID: 1))
            return try await db.recordUpload(image: back, issuer: stranger, by: desk)
        }
        // Card 100001 is 20251125's: a card of that serial made for 20251126 and written back there is refused.
        let misfit = Self.issuer.userCard(cardSerial: 100_001, generation: 1, meterSerial: 20_251_126, revision: 1,
                                          accountNumber: 10_000_002, unitKind: .wattHours, credit: .none,
                                          issueTime: UInt32(Self.now))
        let misfitBack = try Self.carried(misfit, toMeter: 20_251_126, at: Self.now + 3700)
        await s.add("upload for another meter") {
            try await db.recordUpload(image: misfitBack, issuer: Self.issuer, by: desk)
        }

        // Lost: a replacement (next generation, new serial) carries what is pending; writing it again reuses it.
        await s.add("sell card 5") {
            try await db.sell(account: "1", amount: Money(minor: 400, .cny), requestID: "c5", mode: .card, by: desk)
        }
        await s.add("replace") { try await db.replaceCard(meter: "20251125", by: desk) }
        await s.add("resume") { try await db.activeCardPlan(meter: "20251125", by: desk) }
        await s.add("written 5 on the old card") {
            try await db.markWritten(purchase: 5, cardSerial: 100_001, generation: 1, by: desk)
        }
        await s.add("written 5") { try await db.markWritten(purchase: 5, cardSerial: 100_003, generation: 2, by: desk) }
        await s.add("replace an unassigned meter") { try await db.replaceCard(meter: "20251127", by: desk) }
        await s.add("replace no meter") { try await db.replaceCard(meter: "1", by: desk) }
        await s.add("meters") { try await db.meters() }
        await s.add("pending credit") { try await db.pendingCreditBlock(meter: "20251125") }
        await s.add("purchases") { try await db.purchases(account: nil) }
        for id: Int64 in [1, 3, 5] {
            await s.add("receipt \(id)") { try await db.receipt(purchase: id) }
        }
        await s.add("consumption") {
            try await db.consumptionRows(fromDay: 20_000, toDay: 21_000, by: .day, progress: nil)
        }
        await s.add("alarms") {
            try await db.alarmEpisodes(fromDay: 20_000, toDay: 21_000, now: Self.now, progress: nil)
        }
        return s.lines
    }

    @Test func theCardFlowsGiveTheSameRecordsOnBothStores() async throws {
        let sqlite = try BillingDatabase.open(path: FileManager.default.temporaryDirectory
            .appendingPathComponent("metergw-parity-\(UUID().uuidString).sqlite").path)
        let local = try await Self.cardScript(sqlite)
        let localAudit = Self.audit(try await sqlite.writer.read { try AuditEntry.order(Column("id")).fetchAll($0) })
        let localUploads = try await sqlite.writer.read { try CardUpload.order(Column("id")).fetchAll($0) }
        let (central, centralAudit, centralUploads) = try await CentralDatabase.with(self.url) { db in
            try await db.migrate()
            let lines = try await Self.cardScript(db)
            let audit = try await db.records(db.connection, """
                SELECT (to_jsonb(l) || jsonb_build_object('detail', l.detail::text))::text
                FROM audit_log l ORDER BY l.id
                """, as: AuditEntry.self)
            let uploads = try await db.records(db.connection, """
                SELECT (to_jsonb(u) || jsonb_build_object(
                    'image', translate(encode(u.image, 'base64'), E'\\n', '')))::text
                FROM card_upload u ORDER BY u.id
                """, as: CardUpload.self)
            return (lines, Self.audit(audit), uploads)
        }
        #expect(local.count == central.count)
        for (a, b) in zip(local, central) {
            #expect(a == b)
        }
        #expect(localAudit.count == centralAudit.count)
        for (a, b) in zip(localAudit, centralAudit) {
            #expect(a == b)
        }
        #expect(localUploads == centralUploads)
        // The script did what it says, on both.
        #expect(!(local + central).contains { $0.contains("FAILED") })
        func line(_ name: String) -> String { local.first { $0.hasPrefix(name + ": ") } ?? "missing \(name)" }
        #expect(line("plan 3").contains("cardSerial: 100001, generation: 1"))
        #expect(line("plan 3").contains("firstSequence: 1, lastSequence: 3"))
        #expect(line("the other meter's card").contains("cardSerial: 100002"))
        #expect(line("replace").contains("cardSerial: 100003, generation: 2"))
        #expect(line("resume").contains("cardSerial: 100003, generation: 2"))
        #expect(line("upload").contains("repeated: false") && line("upload").contains("lastAppliedSequence: 3"))
        #expect(line("upload repeated").contains("repeated: true"))
        #expect(line("upload forged").contains("refused forgedWriteBack"))
        #expect(line("upload for another meter").contains("refused cardForAnotherMeter"))
        #expect(line("set tariff water").contains("refused unitKindMismatch"))
        #expect(line("written on another generation").contains("refused cardForAnotherMeter"))
        #expect(line("alarms").hasPrefix("alarms: ["))
        #expect(localAudit.contains { $0.contains("purchase.void-confirmed") })
        #expect(localAudit.contains { $0.contains("meter.tariff") })
        #expect(localUploads.count == 1)
        let refusals = Set(local.filter { $0.contains(": refused ") }.map { String($0.prefix { $0 != ":" }) })
        #expect(refusals == ["set tariff water", "set tariff none", "set tariff of no meter", "written on no card",
                             "written on another generation", "plan a remote purchase", "plan no purchase",
                             "active plan of an unassigned meter", "written on the other meter's card",
                             "upload without a write-back", "upload forged", "upload of another issuer's card",
                             "upload for another meter", "written 5 on the old card", "replace an unassigned meter",
                             "replace no meter"], "\(local.joined(separator: "\n"))")
        if ProcessInfo.processInfo.environment["METERGW_SHOW_PARITY"] == "1" { print(local.joined(separator: "\n")) }
    }
}
