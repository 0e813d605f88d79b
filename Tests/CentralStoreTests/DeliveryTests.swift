import BillingStore
import Foundation
import MetergwTestSupport
import PostgresNIO
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// The downlink's loose ends (docs/CENTRAL.md): the centre's own ledger for meters no gateway serves (what
/// `topup --remote --url` confirms), assigning such a meter to a gateway, confirmations from gateways advancing
/// the centre's last applied sequence, one space of request ids, and an older gateway's plain cancellation.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct DeliveryTests {
    let cluster: PostgresCluster
    let database: String
    let url: CentralURL
    let north: String

    /// Meter 7001 (account 1) no gateway serves; meter 7002 (account 2) gateway `north` serves.
    static let unserved: UInt32 = 7_001
    static let served: UInt32 = 7_002
    static let desk = Actor("desk", now: 0x6B06_9C88)
    static let flat = try! Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                       price: Price(majorPerThousandUnits: "0.5000", currency: .cny)!)

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.database = try self.cluster.createDatabase(prefix: "delivery")
        self.url = try CentralURL(parsing: self.cluster.url(database: self.database))
        self.north = "north-\(self.database.replacing("_", with: "-"))"
    }

    var gatewayURL: CentralURL {
        CentralURL(host: "127.0.0.1", port: self.cluster.port, username: CentralDatabase.login(ofGateway: self.north),
                   password: "password-of-\(self.north)", database: self.database)
    }

    func setUp() async throws {
        try await CentralDatabase.with(self.url) { db in
            try await db.migrate()
            _ = try await db.addTariff(Self.flat, validFrom: 0, utcOffsetSeconds: 28800, by: Self.desk)
            for (i, serial) in [Self.unserved, Self.served].enumerated() {
                _ = try await db.openAccount(name: "customer \(serial)", address: nil, phone: nil, number: nil,
                                             currency: .cny, by: Self.desk)
                _ = try await db.addMeter(serial: serial, kind: .electricity, tariff: "flat", bus: nil, address: nil,
                                          keyRevision: 1, lastApplied: 0, by: Self.desk)
                _ = try await db.assignMeter(String(serial), to: String(i + 1), by: Self.desk)
            }
            _ = try await db.addGateway(name: self.north, password: "password-of-\(self.north)", now: 0)
            try await db.assign(meterSerials: [Self.served], toGateway: self.north, by: Self.desk)
        }
    }

    func value(_ sql: String) async throws -> Int64 {
        try await CentralDatabase.with(self.url) { db in
            try await CentralDatabase.scalar(db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger),
                                             as: Int64.self) ?? -1
        }
    }

    func lastApplied(_ serial: UInt32) async throws -> Int64 {
        try await self.value("SELECT last_applied_sequence FROM meter WHERE serial = \(serial)")
    }

    func sell(_ account: String, _ fen: Int64, _ request: String) async throws -> Purchase {
        try await CentralDatabase.with(self.url) { db in
            try await db.sell(account: account, amount: Money(minor: fen, .cny), requestID: request, mode: .remote,
                              by: Self.desk).purchase
        }
    }

    /// What `topup --remote --url` confirms through `CreditDelivery`: the centre numbered them, the meter's answer
    /// marks them applied with the audit entries SQLite writes, the meter's last applied sequence only rises.
    @Test func theCentreMarksItsOwnPurchasesAppliedAndRefusesAServedMeter() async throws {
        try await self.setUp()
        let first = try await self.sell("1", 1_000, "u-1")
        let second = try await self.sell("1", 2_000, "u-2")
        let third = try await self.sell("1", 3_000, "u-3")
        #expect([first.sequence, second.sequence, third.sequence] == [1, 2, 3])
        #expect([first.state, second.state, third.state] == [.queued, .queued, .queued])
        let later = Actor("technician", now: 0x6B06_A000)
        let (applied, again, cancelled, rest, beyond, listed) = try await CentralDatabase.with(self.url) { db
            -> ([Purchase], [Purchase], Purchase, [Purchase], StoreError?, [Purchase]) in
            let applied = try await db.markApplied(meter: String(Self.unserved), upTo: 1, source: "remote", by: later)
            let again = try await db.markApplied(meter: String(Self.unserved), upTo: 1, source: "remote", by: later)
            let cancelled = try await db.cancel(purchase: second.id!, by: Self.desk)
            let rest = try await db.markApplied(meter: String(Self.unserved), upTo: 3, source: "reading", by: later)
            var beyond: StoreError?
            do {
                _ = try await db.markApplied(meter: String(Self.unserved), upTo: 9, source: "remote", by: later)
            } catch {
                beyond = error as? StoreError
            }
            let meter = try await db.meter(String(Self.unserved))
            return (applied, again, cancelled, rest, beyond, try await db.purchases(meterID: meter.id!))
        }
        #expect(applied.map(\.id) == [first.id] && applied.first?.state == .applied)
        #expect(applied.first?.appliedAt == later.now && applied.first?.appliedSource == "remote")
        #expect(again.isEmpty)
        #expect(cancelled.state == .cancelled)
        #expect(rest.map(\.id) == [third.id] && rest.first?.appliedSource == "reading")
        guard case .invalidArgument(let why) = beyond else {
            Issue.record("a sequence beyond what the centre sold was accepted: \(String(describing: beyond))")
            return
        }
        #expect(why.contains("sold only up to 3"))
        #expect(listed.map(\.sequence) == [1, 2, 3] && listed.map(\.state) == [.applied, .cancelled, .applied])
        #expect(try await self.lastApplied(Self.unserved) == 3)
        let audit = try await self.value("""
            SELECT count(*) FROM audit_log WHERE operator = 'technician'
                AND ((action = 'purchase.applied' AND entity_id IN (\(first.id!), \(third.id!)))
                     OR (action = 'purchase.void-confirmed' AND entity_id = \(second.id!)))
            """)
        #expect(audit == 3)

        // A meter its gateway serves: the centre does not confirm its credit, the gateway does.
        let refused = try await CentralDatabase.with(self.url) { db -> (String?, StoreError?) in
            let gateway = try await db.servingGateway(meter: String(Self.served))
            do {
                _ = try await db.markApplied(meter: String(Self.served), upTo: 0, source: "remote", by: later)
                return (gateway, nil)
            } catch {
                return (gateway, error as? StoreError)
            }
        }
        #expect(refused.0 == self.north)
        #expect(refused.1 == .deliveredByGateway(serial: Int64(Self.served), gateway: self.north))
        #expect(refused.1?.explanation.contains("sync status --url") == true)
    }

    /// A meter whose centre-numbered credit has not reached it cannot go under a gateway, which would number its
    /// purchases from its own sequence; once delivered (or cancelled), it can.
    @Test func assigningAMeterWithTheCentresQueuedCreditToAGatewayIsRefused() async throws {
        try await self.setUp()
        let sold = try await self.sell("1", 1_000, "queued-1")
        let refusal = try await CentralDatabase.with(self.url) { db -> CentralError? in
            do {
                _ = try await db.assign(meterSerials: [Self.unserved], toGateway: self.north, by: Self.desk)
                return nil
            } catch {
                return error as? CentralError
            }
        }
        guard case .constraint(let why) = refusal else {
            Issue.record("the meter went under a gateway with queued credit: \(String(describing: refusal))")
            return
        }
        #expect(why.contains("\(sold.id!) (sequence 1, queued)") && why.contains("topup --remote --url"))
        #expect(why.contains("purchase cancel"))
        #expect(try await self.value("SELECT count(*) FROM meter WHERE gateway_id IS NOT NULL") == 1)
        // Moving it to no gateway is always allowed (the centre numbers it then).
        let none = try await CentralDatabase.with(self.url) { db in
            try await db.assign(meterSerials: [Self.unserved], toGateway: nil, by: Self.desk)
        }
        #expect(none.first?.gateway == nil)

        // Delivered: the meter may go under the gateway.
        let moved = try await CentralDatabase.with(self.url) { db in
            _ = try await db.markApplied(meter: String(Self.unserved), upTo: 1, source: "remote", by: Self.desk)
            return try await db.assign(meterSerials: [Self.unserved], toGateway: self.north, by: Self.desk)
        }
        #expect(moved.first?.gateway == self.north)
    }

    /// A gateway's confirmations (its own desk's purchases, the centre's orders, a card's write-back) advance the
    /// centre's last applied sequence of the meter, never back.
    @Test func confirmationsFromAGatewayAdvanceTheCentresLastAppliedSequence() async throws {
        try await self.setUp()
        #expect(try await self.lastApplied(Self.served) == 0)
        // The gateway's store: the same meter, its own desk selling two remote purchases (1, 2).
        let store = try BillingDatabase.inMemory()
        let local = Actor("gateway", now: 0x6B06_9C88)
        _ = try store.addTariff(Self.flat, validFrom: 0, by: local)
        _ = try store.addMeter(serial: Self.served, kind: .electricity, tariff: "flat", by: local)
        _ = try store.openAccount(name: "customer", by: local)
        _ = try store.assignMeter(String(Self.served), to: "1", by: local)
        for request in ["g-1", "g-2"] {
            _ = try store.sell(account: "1", amount: Money(minor: 1_000, .cny), requestID: request, mode: .remote,
                               by: local)
        }
        let sync = OutboxSync(store: store, central: self.gatewayURL)
        _ = try await sync.drain()
        #expect(try await self.lastApplied(Self.served) == 0)  // queued is no confirmation
        _ = try store.markApplied(meter: String(Self.served), upTo: 2, source: "remote", by: local)
        _ = try await sync.drain()
        #expect(try await self.lastApplied(Self.served) == 2)

        // The centre's own sale for it, numbered 3 by the gateway, applied.
        let order = try await self.sell("2", 2_000, "c-3")
        _ = try await sync.drain()
        #expect(try await CentralDatabase.with(self.url) { try await $0.purchase(order.id!) }.sequence == 3)
        #expect(try await self.lastApplied(Self.served) == 2)
        _ = try store.markApplied(meter: String(Self.served), upTo: 3, source: "remote", by: local)
        _ = try await sync.drain()
        #expect(try await self.lastApplied(Self.served) == 3)
        #expect(try await CentralDatabase.with(self.url) { try await $0.purchase(order.id!) }.state == .applied)

        // An older confirmation arriving late does not move it back; a card's write-back moves it on.
        try await CentralDatabase.with(self.gatewayURL) { gw in
            let acked = try await gw.ownAcknowledgement()
            var late = SyncBatch.Extra()
            late.purchases = [.init(meterSerial: Self.served, id: 99, state: "applied", time: 5, requestId: "old",
                                    sequence: 1, mode: "remote", units: 10, unitKind: 1, currency: "CNY",
                                    paidMinor: 100, order: nil)]
            let receipt = try await gw.ingest(SyncBatch(fromSequence: acked + 1, toSequence: acked + 1, extra: late),
                                              now: 6)
            #expect(receipt.outcome == .applied)
        }
        #expect(try await self.lastApplied(Self.served) == 3)
        try await CentralDatabase.with(self.gatewayURL) { gw in
            let acked = try await gw.ownAcknowledgement()
            var card = SyncBatch.Extra()
            card.uploads = [.init(meterSerial: Self.served, image: [UInt8](repeating: 0xA5, count: 256),
                                  cardSerial: 1, outcome: 0, refusal: 0, refusalDetail: 0, lastApplied: 5,
                                  unitsApplied: 0, register: 0, credit: 0, meterTime: 7, alarms: 0,
                                  uploadedAt: 7, operator: "clerk")]
            _ = try await gw.ingest(SyncBatch(fromSequence: acked + 1, toSequence: acked + 1, extra: card), now: 7)
        }
        #expect(try await self.lastApplied(Self.served) == 5)
        #expect(try await self.lastApplied(Self.unserved) == 0)
    }

    /// Desk sales and `central sell` share one space of request ids: reusing another kind's id is a typed refusal,
    /// never a raw constraint error, and never a silent repeat of the other kind's sale.
    @Test func aRequestIdIsOneSaleWhicheverKindSoldIt() async throws {
        try await self.setUp()
        let (order, deskAfterOrder) = try await CentralDatabase.with(self.url) { db -> (RemoteOrder, StoreError?) in
            let order = try await db.sellRemote(meterSerial: Self.served, units: 1_000, amount: .fen(500),
                                                requestID: "shared-1", operator: "centre", now: 1).order
            do {
                _ = try await db.sell(account: "2", amount: Money(minor: 500, .cny), requestID: "shared-1",
                                      mode: .remote, by: Self.desk)
                return (order, nil)
            } catch {
                return (order, error as? StoreError)
            }
        }
        #expect(deskAfterOrder == .requestUsedByOrder(requestID: "shared-1", orderID: order.id))
        #expect(deskAfterOrder?.explanation.contains("new request id") == true)

        // The other way: a desk sale's id (a meter no gateway serves: a purchase only; a gateway's meter: a
        // purchase with its order) refused for `central sell`, even with the same terms.
        let unservedSale = try await self.sell("1", 500, "shared-2")
        let servedSale = try await self.sell("2", 500, "shared-3")
        for (request, sale) in [("shared-2", unservedSale), ("shared-3", servedSale)] {
            let refusal = try await CentralDatabase.with(self.url) { db -> CentralError? in
                do {
                    _ = try await db.sellRemote(meterSerial: Self.served, units: UInt64(sale.units), amount: .fen(500),
                                                requestID: request, operator: "centre", now: 2)
                    return nil
                } catch {
                    return error as? CentralError
                }
            }
            guard case .constraint(let why) = refusal else {
                Issue.record("\(request): central sell reused a desk sale's id: \(String(describing: refusal))")
                continue
            }
            #expect(why.contains("purchase \(sale.id!)") && why.contains("new request id"), "\(why)")
        }
        #expect(try await self.value("SELECT count(*) FROM remote_order") == 2)
        #expect(try await self.value("SELECT count(*) FROM purchase") == 2)
        // The schema holds it too, whatever the code does (the backstop of c6-delivery).
        let backstop = try await CentralDatabase.with(self.url) { db -> CentralError? in
            do {
                try await db.run {
                    try await db.connection.execute("""
                        INSERT INTO remote_order (request_id, meter_id, gateway_id, units, unit_kind, amount_minor,
                                                  currency, created_at, operator)
                        SELECT 'shared-2', m.id, m.gateway_id, 1, 1, 1, 'CNY', 0, 'x' FROM meter m
                        WHERE m.serial = \(Int64(Self.served))
                        """, logger: db.logger)
                }
                return nil
            } catch {
                return error as? CentralError
            }
        }
        guard case .constraint(let why) = backstop else {
            Issue.record("the schema let an order reuse a purchase's id: \(String(describing: backstop))")
            return
        }
        #expect(why.contains("shared-2"))
    }

    /// A gateway before `v6-refusals` reports a centre's order's purchase plainly `cancelled`, without a refusal.
    /// The centre refuses the order (`cancelled-at-gateway`) with an `order-refused` conflict for a person, never a
    /// silent `cancelled`; the centre's own purchase of a desk sale stays queued, and the desk may cancel it then
    /// (refunded once). Through the real ingest of batches.
    @Test func anOlderGatewaysPlainCancellationIsARefusalForAPerson() async throws {
        try await self.setUp()
        let deskSale = try await self.sell("2", 1_000, "old-gw-1")
        let order = try await CentralDatabase.with(self.url) { db in
            try await db.sellRemote(meterSerial: Self.served, units: 700, amount: .fen(350), requestID: "old-gw-2",
                                    operator: "centre", now: 1).order
        }
        let (deskOrder, fetched) = try await CentralDatabase.with(self.gatewayURL) { gw in
            let fetched = try await gw.fetchOwnOrders(now: 2)
            return (fetched.first { $0.requestID == "old-gw-1" }!.orderID, fetched.map(\.requestID))
        }
        #expect(fetched == ["old-gw-1", "old-gw-2"])
        func change(_ local: Int64, _ request: String, _ state: String, sequence: Int64, order: Int64, units: Int64)
            -> SyncBatch.Extra.Purchase
        {
            .init(meterSerial: Self.served, id: local, state: state, time: 10, requestId: request, sequence: sequence,
                  mode: "remote", units: units, unitKind: 1, currency: "CNY", paidMinor: 0, order: order)
        }
        try await CentralDatabase.with(self.gatewayURL) { gw in
            var accepted = SyncBatch.Extra()
            accepted.purchases = [change(1, "central-order-\(deskOrder)", "queued", sequence: 1, order: deskOrder,
                                         units: deskSale.units),
                                  change(2, "central-order-\(order.id)", "queued", sequence: 2, order: order.id,
                                         units: 700)]
            _ = try await gw.ingest(SyncBatch(fromSequence: 1, toSequence: 2, extra: accepted), now: 10)
            // The old gateway cancels both at its desk: plain `cancelled`, no refusal rows.
            var cancelled = SyncBatch.Extra()
            cancelled.purchases = [change(1, "central-order-\(deskOrder)", "cancelled", sequence: 1, order: deskOrder,
                                          units: deskSale.units),
                                   change(2, "central-order-\(order.id)", "cancelled", sequence: 2, order: order.id,
                                          units: 700)]
            let receipt = try await gw.ingest(SyncBatch(fromSequence: 3, toSequence: 4, extra: cancelled), now: 20)
            #expect(receipt.outcome == .applied && receipt.conflicts == 2)
            // Sent again after a lost acknowledgement: nothing more.
            let again = try await gw.ingest(SyncBatch(fromSequence: 3, toSequence: 4, extra: cancelled), now: 21)
            #expect(again.outcome == .alreadyApplied)
        }
        let (orders, conflicts, purchase) = try await CentralDatabase.with(self.url) { db in
            (try await db.remoteOrders(), try await db.conflicts(), try await db.purchase(deskSale.id!))
        }
        #expect(orders.map(\.state) == ["refused", "refused"])
        #expect(orders.map(\.refusal) == ["cancelled-at-gateway", "cancelled-at-gateway"])
        #expect(conflicts.map(\.kind) == ["order-refused", "order-refused"])
        #expect(conflicts.allSatisfy { $0.detail.contains("cancelled-at-gateway") })
        #expect(purchase.state == .queued && purchase.sequence == 1)
        // The desk settles its own sale: cancelled and refunded once; the order stays refused with its reason.
        let (refunded, balance) = try await CentralDatabase.with(self.url) { db in
            (try await db.cancel(purchase: deskSale.id!, by: Self.desk), try await db.account("2"))
        }
        #expect(refunded.state == .cancelled)
        #expect(balance.account.balanceMinor == deskSale.chargedMinor + deskSale.remainderMinor)
        #expect(try await self.value("SELECT count(*) FROM remote_order WHERE state = 'refused'") == 2)
        #expect(try await self.lastApplied(Self.served) == 0)
    }
}
