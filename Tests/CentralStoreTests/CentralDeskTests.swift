import BillingStore
import Foundation
import MetergwTestSupport
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// The desk on the central store where SQLite's single writer did the ordering: desks selling at once on separate
/// connections (docs/CENTRAL.md "The desk on the central store").
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralDeskTests {
    let url: CentralURL

    init() throws {
        let cluster = try PostgresCluster.shared()
        self.url = try CentralURL(parsing: cluster.url(database: try cluster.createDatabase(prefix: "desk")))
    }

    static let desk = Actor("desk", now: 0x6B06_9C88)

    /// The tariff of these tests: 0.5283 CNY a kWh.
    static func flatTariff() throws -> Tariff {
        try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                        price: Price(majorPerThousandUnits: "0.5283", currency: .cny)!)
    }

    /// A flat tariff, one account with meter 20251125.
    static func setUp(_ db: CentralDatabase) async throws {
        try await db.migrate()
        _ = try await db.addTariff(try Self.flatTariff(), validFrom: 0, utcOffsetSeconds: 28800, by: Self.desk)
        _ = try await db.openAccount(name: "Li Wei", address: nil, phone: nil, number: nil, currency: .cny,
                                     by: Self.desk)
        _ = try await db.addMeter(serial: 20_251_125, kind: .electricity, tariff: "flat", bus: nil, address: nil,
                                  keyRevision: 1, lastApplied: 0, by: Self.desk)
        _ = try await db.assignMeter("20251125", to: "1", by: Self.desk)
    }

    @Test func desksSellingAtOnceTakeEachSequenceOnceAndARepeatedRequestOnce() async throws {
        try await CentralDatabase.with(self.url) { try await Self.setUp($0) }
        let url = self.url
        // Two desks, each with its own connection: eight sales each, interleaved by the server, and the same
        // request from both (a double click that reached two desks).
        @Sendable func desk(_ name: String) async throws -> [BillingDatabase.SaleOutcome] {
            try await CentralDatabase.with(url) { db in
                var out: [BillingDatabase.SaleOutcome] = []
                for i in 0..<8 {
                    out.append(try await db.sell(account: "1", amount: Money(minor: 1_000 + Int64(i), .cny),
                                                 requestID: "\(name)-\(i)", mode: .remote, by: Self.desk))
                    if i == 4 {
                        out.append(try await db.sell(account: "1", amount: Money(minor: 777, .cny),
                                                     requestID: "both", mode: .remote, by: Self.desk))
                    }
                }
                return out
            }
        }
        async let a = desk("a")
        async let b = desk("b")
        let all = try await a + b
        let both = all.filter { $0.purchase.requestId == "both" }
        #expect(both.count == 2)
        #expect(Set(both.map { $0.purchase.id }).count == 1, "the repeated request sold twice")
        #expect(both.filter { !$0.repeated }.count == 1)

        let (purchases, detail, movements) = try await CentralDatabase.with(self.url) { db in
            (try await db.purchases(account: "1"), try await db.account("1"), try await db.movements(account: "1"))
        }
        #expect(purchases.count == 17)
        #expect(purchases.map(\.sequence).sorted() == Array(1...17))
        #expect(Set(purchases.map(\.requestId)).count == 17)
        // The balance is the sum of its movements, and each sale's remainder is carried into the next one.
        #expect(detail.account.balanceMinor == movements.reduce(0) { $0 + $1.amountMinor })
        #expect(detail.account.balanceMinor == purchases.max { $0.id! < $1.id! }!.remainderMinor)
        #expect(detail.pendingPurchases == 17)
    }

    /// Two desks issuing cards at once, for the same meters in opposite orders: each meter gets one card (one
    /// generation), both desks plan that same card, and every serial is given once across meters.
    @Test func desksIssuingCardsAtOnceGiveEachSerialOnceAndEachMeterOneCard() async throws {
        let meters: [UInt32] = (0..<8).map { 30_000_001 + $0 }
        try await CentralDatabase.with(self.url) { db in
            try await Self.setUp(db)
            for (i, serial) in meters.enumerated() {
                _ = try await db.openAccount(name: "Customer \(i)", address: nil, phone: nil, number: nil,
                                             currency: .cny, by: Self.desk)
                _ = try await db.addMeter(serial: serial, kind: .electricity, tariff: "flat", bus: nil, address: nil,
                                          keyRevision: 1, lastApplied: 0, by: Self.desk)
                _ = try await db.assignMeter(String(serial), to: String(i + 2), by: Self.desk)
                _ = try await db.sell(account: String(i + 2), amount: Money(minor: 1_000, .cny),
                                      requestID: "card-\(serial)", mode: .card, by: Self.desk)
            }
        }
        let url = self.url
        @Sendable func desk(_ order: [UInt32]) async throws -> [UInt32: BillingDatabase.CardPlan] {
            try await CentralDatabase.with(url) { db in
                var plans: [UInt32: BillingDatabase.CardPlan] = [:]
                for serial in order {
                    plans[serial] = try await db.activeCardPlan(meter: String(serial), by: Self.desk)
                }
                return plans
            }
        }
        async let a = desk(meters)
        async let b = desk(meters.reversed())
        let (first, second) = try await (a, b)
        #expect(first == second, "two desks planned different cards for one meter")
        #expect(Set(first.values.map(\.cardSerial)).count == meters.count, "a serial was given twice")
        #expect(first.values.allSatisfy { $0.generation == 1 })
        #expect(Set(first.values.map(\.cardSerial)) == Set((0..<UInt32(meters.count)).map { 100_001 + $0 }))
        let issued = try await CentralDatabase.with(self.url) { db in
            try await db.count(db.connection, "SELECT count(*) FROM card")
        }
        #expect(issued == Int64(meters.count))
    }

    @Test func aFailureOfTheCentreIsAStoreErrorThatSaysWhatToDo() async throws {
        let errors: [CentralError] = [
            .unreachable(url: "postgres://desk@127.0.0.1:1/billing", detail: "connection refused"),
            .permissionDenied("permission denied for table account"),
            .schema("the central store's schema is behind this build: run metergw central migrate"),
            .constraint("duplicate key"),
            .server(sqlState: "40P01", message: "deadlock detected"),
        ]
        let mapped = errors.map(\.storeError)
        #expect(mapped.map(\.explanation) == [
            errors[0].description, errors[1].description, errors[2].description,
            "refused by a store constraint: duplicate key",
            "the database is locked by another process (\(errors[4].description)): retry in a moment",
        ])
        guard case .unreachable = mapped[0], case .permissionDenied = mapped[1], case .schema = mapped[2] else {
            Issue.record("mapped to the wrong cases: \(mapped)")
            return
        }
    }

    @Test func aGatewaysLoginCannotWorkTheDesk() async throws {
        try await CentralDatabase.with(self.url) { try await Self.setUp($0) }
        let name = "desk-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        _ = try await CentralDatabase.with(self.url) {
            try await $0.addGateway(name: name, password: "gateway-password-1", now: 1)
        }
        let gateway = CentralURL(host: self.url.host, port: self.url.port,
                                 username: CentralDatabase.login(ofGateway: name), password: "gateway-password-1",
                                 database: self.url.database)
        let refusal = try await CentralDatabase.with(gateway) { db -> StoreError? in
            do {
                _ = try await db.sell(account: "1", amount: Money(minor: 1_000, .cny), requestID: "gw", mode: .remote,
                                      by: Self.desk)
                return nil
            } catch {
                return error as? StoreError
            }
        }
        guard case .permissionDenied(let message) = refusal else {
            Issue.record("a gateway's login sold at the desk: \(String(describing: refusal))")
            return
        }
        #expect(message.contains("permission denied"))
    }
}

/// Remote credit sold at the centre's desk for a meter a gateway serves (docs/CENTRAL.md "Selling at the centre"):
/// priced by the centre's tariff like any sale, delivered once by the gateway, numbered by it.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralRemoteSaleTests {
    let cluster: PostgresCluster
    let database: String
    let url: CentralURL

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.database = try self.cluster.createDatabase(prefix: "desksale")
        self.url = try CentralURL(parsing: self.cluster.url(database: self.database))
    }

    static let desk = Actor("desk", now: 0x6B06_9C88)

    /// `CentralDeskTests.setUp`'s centre, with meter 20251125 served by the gateway `name`.
    func centre(servedBy name: String) async throws {
        try await CentralDatabase.with(self.url) { db in
            try await CentralDeskTests.setUp(db)
            _ = try await db.addGateway(name: name, password: "password-of-\(name)", now: 0)
            try await db.assign(meterSerials: [20_251_125], toGateway: name, by: Actor("test", now: 0))
        }
    }

    func gatewayURL(_ name: String) -> CentralURL {
        CentralURL(host: "127.0.0.1", port: self.cluster.port, username: CentralDatabase.login(ofGateway: name),
                   password: "password-of-\(name)", database: self.database)
    }

    @Test func aRemoteSaleIsPricedHereDeliveredOnceByTheGatewayAndNumberedByIt() async throws {
        let north = "north-\(self.database.replacing("_", with: "-"))"
        try await self.centre(servedBy: north)
        let (sold, again, card, orders) = try await CentralDatabase.with(self.url) { db in
            let sold = try await db.sell(account: "1", amount: Money(minor: 10_000, .cny), requestID: "centre-1",
                                         mode: .remote, by: Self.desk)
            let again = try await db.sell(account: "1", amount: Money(minor: 10_000, .cny), requestID: "centre-1",
                                          mode: .remote, by: Self.desk)
            var card: StoreError?
            do {
                _ = try await db.sell(account: "1", amount: Money(minor: 1_000, .cny), requestID: "centre-card",
                                      mode: .card, by: Self.desk)
            } catch {
                card = error as? StoreError
            }
            return (sold, again, card, try await db.remoteOrders())
        }
        // Priced as SQLite prices it (189.286 kWh for 100.00 at 0.5283), not yet numbered, and sold once.
        #expect(sold.purchase.units == 189_286 && sold.purchase.valueMinor == 10_000 && sold.purchase.sequence == 0)
        #expect(sold.purchase.state == .queued && !sold.repeated)
        #expect(again.repeated && again.purchase.id == sold.purchase.id)
        #expect(card == .meterServedByGateway(serial: 20_251_125, gateway: north))
        #expect(orders.count == 1)
        let order = try #require(orders.first)
        #expect(order.units == 189_286 && order.amountMinor == 10_000 && order.state == "pending")

        // The gateway fetches it, queues it with its own next sequence, and reports that in the same round.
        let store = try BillingDatabase.inMemory()
        let local = Actor("gateway", now: 0x6B06_9C88)
        _ = try store.addTariff(try CentralDeskTests.flatTariff(), validFrom: 0, by: local)
        _ = try store.addMeter(serial: 20_251_125, kind: .electricity, tariff: "flat", lastApplied: 3, by: local)
        _ = try store.openAccount(name: "Li Wei", by: local)
        _ = try store.assignMeter("20251125", to: "1", by: local)
        let sync = OutboxSync(store: store, central: self.gatewayURL(north))
        #expect(try await sync.drain().ordersQueued == 1)
        let queued = try #require(try store.queuedPurchases().first)
        #expect(queued.units == 189_286 && queued.sequence == 4)
        var purchase = try await CentralDatabase.with(self.url) { try await $0.purchase(sold.purchase.id!) }
        #expect(purchase.sequence == 4 && purchase.state == .queued)
        let receipt = try await CentralDatabase.with(self.url) { try await $0.receipt(purchase: sold.purchase.id!) }
        #expect(receipt.text.contains("sequence    4\n"), "\(receipt.text)")

        // The meter confirms it: the centre's purchase is applied, once.
        _ = try store.markApplied(meter: "20251125", upTo: 4, source: "remote", by: Actor("gateway", now: 0x6B06_9D00))
        _ = try await sync.drain()
        purchase = try await CentralDatabase.with(self.url) { try await $0.purchase(sold.purchase.id!) }
        #expect(purchase.state == .applied && purchase.appliedSource == "remote" && purchase.appliedAt == 0x6B06_9D00)

        // A sale cancelled before its gateway fetched it: withdrawn, refunded. One fetched already: refused.
        let (withdrawn, handedOut, detail) = try await CentralDatabase.with(self.url) { db in
            let early = try await db.sell(account: "1", amount: Money(minor: 2_000, .cny), requestID: "centre-2",
                                          mode: .remote, by: Self.desk)
            let withdrawn = try await db.cancel(purchase: early.purchase.id!, by: Self.desk)
            let late = try await db.sell(account: "1", amount: Money(minor: 3_000, .cny), requestID: "centre-3",
                                         mode: .remote, by: Self.desk)
            return (withdrawn, late, try await db.account("1"))
        }
        #expect(withdrawn.state == .cancelled)
        #expect(try await sync.drain().ordersQueued == 1)
        let lateRefusal = try await CentralDatabase.with(self.url) { db -> StoreError? in
            do {
                _ = try await db.cancel(purchase: handedOut.purchase.id!, by: Self.desk)
                return nil
            } catch {
                return error as? StoreError
            }
        }
        guard case .invalidTransition(_, let from, "cancelled") = lateRefusal else {
            Issue.record("a purchase at its gateway was cancelled: \(String(describing: lateRefusal))")
            return
        }
        #expect(from.contains(north) && from.contains("accepted"))
        let states = try await CentralDatabase.with(self.url) { try await $0.remoteOrders().map(\.state) }
        #expect(states == ["applied", "cancelled", "accepted"])
        #expect(try store.queuedPurchases().map(\.units) == [handedOut.purchase.units])
        #expect(detail.account.balanceMinor == handedOut.purchase.remainderMinor)
    }

    /// A meter a gateway serves keeps its cards at that gateway: an image the gateway synced is the same upload
    /// at the centre (UNIQUE image: repeated, nothing changes), and a new one is refused with where to take it.
    @Test func aServedMetersCardUploadIsTheGatewaysAndAnImageItSyncedIsRepeatedHere() async throws {
        let north = "cards-\(self.database.replacing("_", with: "-"))"
        let keys = IssuerKeys(systemKey: SystemKey(bytes: Array(0..<32))!, issuerID: 1)
        let issuer = CardIssuer(keys: keys)
        func broughtBack(cardSerial: UInt32, at time: UInt32) throws -> [UInt8] {
            let image = issuer.userCard(cardSerial: cardSerial, generation: 1, meterSerial: 20_251_125, revision: 1,
                                        accountNumber: 10_000_001, unitKind: .wattHours, credit: .none,
                                        issueTime: time)
            var meter = PrepaidMeter(serial: 20_251_125, kind: .electricity, issuerID: 1, now: time)
            return try #require(meter.insertCard(image, keys: keys.meter(serial: 20_251_125, revision: 1),
                                                 now: time).writtenImage)
        }
        let synced = try broughtBack(cardSerial: 7, at: 1_795_000_000)
        let fresh = try broughtBack(cardSerial: 7, at: 1_795_100_000)
        try await self.centre(servedBy: north)
        let back = try CardImage(bytes: synced).writeBack!
        var extra = SyncBatch.Extra()
        extra.uploads = [.init(meterSerial: 20_251_125, image: synced, cardSerial: 7,
                               outcome: Int64(back.outcome.rawValue), refusal: Int64(back.refusalCode),
                               refusalDetail: Int64(back.refusalDetail), lastApplied: 0, unitsApplied: 0,
                               register: Int64(back.registerUnits), credit: back.creditUnits,
                               meterTime: Int64(back.meterTime), alarms: Int64(back.alarms.rawValue),
                               uploadedAt: 1_795_000_100, operator: "gateway-clerk")]
        _ = try await CentralDatabase.with(self.gatewayURL(north)) { gw in
            try await gw.ingest(SyncBatch(fromSequence: 1, toSequence: 1, extra: extra), now: 1_795_000_200)
        }
        let (repeated, refusal, rows) = try await CentralDatabase.with(self.url) { db in
            let repeated = try await db.recordUpload(image: synced, issuer: issuer, by: Self.desk)
            var refusal: StoreError?
            do {
                _ = try await db.recordUpload(image: fresh, issuer: issuer, by: Self.desk)
            } catch {
                refusal = error as? StoreError
            }
            return (repeated, refusal, try await db.count(db.connection, "SELECT count(*) FROM card_upload"))
        }
        #expect(repeated.repeated && repeated.applied.isEmpty)
        #expect(repeated.upload.image == Data(synced) && repeated.upload.operator == "gateway-clerk")
        #expect(refusal == .meterServedByGateway(serial: 20_251_125, gateway: north))
        #expect(rows == 1)
    }
}
