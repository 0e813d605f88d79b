import BillingStore
import Foundation
import MetergwTestSupport
import PostgresNIO
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// Remote credit sold at the centre, fetched by the meter's gateway only, queued once, confirmed through the
/// outbox; and what does not fit becomes a conflict (docs/CENTRAL.md "Downlink").
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct DownlinkTests {
    let cluster: PostgresCluster
    let database: String
    let admin: CentralURL

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.database = try self.cluster.createDatabase(prefix: "downlink")
        self.admin = try CentralURL(parsing: self.cluster.url(database: self.database))
    }

    func name(_ base: String) -> String { "\(base)-\(self.database.replacing("_", with: "-"))" }

    func gatewayURL(_ name: String) -> CentralURL {
        CentralURL(host: "127.0.0.1", port: self.cluster.port, username: CentralDatabase.login(ofGateway: name),
                   password: "password-of-\(name)", database: self.database)
    }

    func value(_ db: CentralDatabase, _ sql: String) async throws -> Int64 {
        try await CentralDatabase.scalar(db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger),
                                         as: Int64.self) ?? -1
    }

    func text(_ db: CentralDatabase, _ sql: String) async throws -> String? {
        try await CentralDatabase.scalar(db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger),
                                         as: String.self)
    }

    /// The centre: gateways, meters under them, and for `withAccounts` an open account per meter.
    func centre(_ gateways: [String: [UInt32]], withAccounts: Bool = true) async throws {
        try await CentralDatabase.with(self.admin) { db in
            try await db.migrate()
            try await db.benchmarkFixture(meterSerials: gateways.values.flatMap { $0 })
            for (gateway, serials) in gateways {
                _ = try await db.addGateway(name: gateway, password: "password-of-\(gateway)", now: 0)
                for serial in serials {
                    try await db.assign(meterSerials: [serial], toGateway: gateway, by: Actor("test", now: 0))
                    guard withAccounts else { continue }
                    try await db.connection.execute("""
                        WITH c AS (INSERT INTO customer (name, created_at) VALUES ('customer', 0) RETURNING id),
                        a AS (INSERT INTO account (customer_id, number, currency, opened_at)
                              SELECT id, \(Int64(serial)), 'CNY', 0 FROM c RETURNING id)
                        UPDATE meter SET account_id = (SELECT id FROM a) WHERE serial = \(Int64(serial))
                        """, logger: db.logger)
                }
            }
        }
    }

    /// A gateway's store with these meters, each with an account of its own.
    func gatewayStore(_ serials: [UInt32]) throws -> BillingDatabase {
        let store = try BillingDatabase.inMemory()
        let actor = Actor("test", now: 0)
        _ = try store.addTariff(try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                                price: Price(majorPerThousandUnits: "0.5000", currency: .cny)!),
                                validFrom: 0, by: actor)
        for serial in serials {
            _ = try store.addMeter(serial: serial, kind: .electricity, tariff: "flat", by: actor)
            let account = try store.openAccount(name: "customer \(serial)", by: actor)
            _ = try store.assignMeter(String(serial), to: String(account.account.id!), by: actor)
        }
        return store
    }

    func sell(_ serial: UInt32, units: UInt64, request: String) async throws -> RemoteOrder {
        try await CentralDatabase.with(self.admin) { db in
            try await db.sellRemote(meterSerial: serial, units: units, amount: .fen(2_500), requestID: request,
                                    operator: "centre", now: 100).order
        }
    }

    func order(_ request: String) async throws -> RemoteOrder {
        try await CentralDatabase.with(self.admin) { try await $0.remoteOrders().first { $0.requestID == request }! }
    }

    @Test func aCentralSaleIsQueuedOnceAndItsConfirmationMarksTheOrderApplied() async throws {
        let north = self.name("north")
        try await self.centre([north: [5_001]])
        let store = try self.gatewayStore([5_001])
        let sync = OutboxSync(store: store, central: self.gatewayURL(north))
        let first = try await self.sell(5_001, units: 4_000, request: "centre-0001")
        #expect(first.state == "pending" && first.gateway == north)
        // The same request again is the same order; other terms under the same id are refused.
        #expect(try await self.sell(5_001, units: 4_000, request: "centre-0001").id == first.id)
        await #expect(throws: CentralError.self) { _ = try await self.sell(5_001, units: 1, request: "centre-0001") }

        let run = try await sync.drain()
        #expect(run.ordersQueued == 1)
        let queued = try #require(try store.queuedPurchases().first)
        #expect(queued.units == 4_000 && queued.sequence == 1)
        // The gateway's answer (queued, as sequence 1) went up in the same round.
        var order = try await self.order("centre-0001")
        #expect(order.state == "accepted" && order.sequence == 1)
        // A second round fetches nothing new and queues nothing twice.
        #expect(try await sync.drain().ordersQueued == 0)
        #expect(try store.queuedPurchases().count == 1)

        // The meter confirms it (CreditDelivery marks it so on the meter's answer).
        let meter = try store.meter("5001")
        _ = try store.markApplied(meter: "5001", upTo: 1, source: "remote", by: Actor("gateway", now: 200))
        try store.insertEvents([EventInput(meterID: meter.id!, index: 0, time: 150, code: 9, value: 1)],
                               by: Actor("gateway", now: 200))
        _ = try store.recordPoll([MeterObservation(meterID: meter.id!, time: 210, register: 3, credit: 4_000,
                                                   alarms: 0, relay: "open", relayReason: 2,
                                                   lastAppliedSequence: 1)], by: Actor("gateway", now: 210))
        let confirm = try await sync.drain()
        #expect(confirm.others == 3)  // the applied state, the event, the relay change
        order = try await self.order("centre-0001")
        #expect(order.state == "applied" && order.deliveredAt == 200)
        let counts = try await CentralDatabase.with(self.admin) { db in
            [try await self.value(db, "SELECT count(*) FROM purchase_change WHERE remote_order_id IS NOT NULL"),
             try await self.value(db, "SELECT count(*) FROM event"),
             try await self.value(db, "SELECT count(*) FROM relay_change"),
             try await self.value(db, "SELECT count(*) FROM conflict")]
        }
        #expect(counts == [2, 1, 1, 0])
        let status = try await CentralDatabase.with(self.admin) { try await $0.gateways() }.first { $0.name == north }
        #expect(status?.reportedBacklog == 0 && status?.openOrders == 0)
    }

    /// A round that stores its orders and then loses the server (before its report) throws, and its `Run` with
    /// it; the orders it stored are still counted once for the metrics (`takeStoredOrders`), and the next round
    /// neither queues nor counts them again.
    @Test func ordersStoredByARoundThatFailsAfterwardsAreCountedOnce() async throws {
        let south = self.name("south")
        try await self.centre([south: [5_101]])
        let store = try self.gatewayStore([5_101])
        let admin = self.admin
        let login = CentralDatabase.login(ofGateway: south)
        // At "sync-received" the gateway's own session is ended by the server, as a restart would.
        let sync = OutboxSync(store: store, central: self.gatewayURL(south), crashHook: { point in
            guard point == "sync-received" else { return }
            let done = DispatchSemaphore(value: 0)
            Task {
                try? await CentralDatabase.with(admin) { db in
                    try await db.connection.execute(PostgresQuery(unsafeSQL: """
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '\(login)'
                        """), logger: db.logger)
                }
                done.signal()
            }
            done.wait()
        })
        _ = try await self.sell(5_101, units: 1_000, request: "centre-0101")
        await #expect(throws: OutboxSync.Failure.self) { _ = try await sync.drain() }
        #expect(try store.queuedPurchases().count == 1)
        let counted = sync.takeStoredOrders()
        #expect(counted.queued == 1 && counted.refused == 0)

        let again = try await sync.drain()
        #expect(again.ordersQueued == 0)
        let recounted = sync.takeStoredOrders()
        #expect(recounted.queued == 0 && recounted.refused == 0)
        #expect(try store.queuedPurchases().count == 1)
        #expect(try await self.order("centre-0101").state == "accepted")
    }

    @Test func aMovedMeterAClosedAccountAndAMeterTheGatewayLacksBecomeConflicts() async throws {
        let north = self.name("north")
        let south = self.name("south")
        try await self.centre([north: [6_001, 6_002, 6_003, 6_004], south: [6_100]])
        // The gateway's store does not have 6003 (the centre is wrong about where it is).
        let store = try self.gatewayStore([6_001, 6_002, 6_004])
        let sync = OutboxSync(store: store, central: self.gatewayURL(north))
        _ = try await self.sell(6_001, units: 100, request: "moved")
        _ = try await self.sell(6_002, units: 100, request: "closed")
        _ = try await self.sell(6_003, units: 100, request: "absent")
        _ = try await self.sell(6_004, units: 100, request: "closed-later")
        try await CentralDatabase.with(self.admin) { db in
            try await db.assign(meterSerials: [6_001], toGateway: south, by: Actor("test", now: 0))
            try await db.connection.execute("""
                UPDATE account SET state = 'closed', closed_at = 150 WHERE number = 6002
                """, logger: db.logger)
        }
        let run = try await sync.drain()
        #expect(run.ordersQueued == 1 && run.ordersRefused == 1)
        #expect(try store.queuedPurchases().map(\.units) == [100])
        #expect(try await self.order("moved").state == "conflict")
        #expect(try await self.order("closed").state == "conflict")
        #expect(try await self.order("absent").state == "refused")
        #expect(try await self.order("closed-later").state == "accepted")
        // The new gateway is not handed the moved meter's order: a person decides.
        #expect(try await OutboxSync(store: try self.gatewayStore([6_100]), central: self.gatewayURL(south))
            .drain().ordersQueued == 0)
        // Closed while its credit waits at the gateway: a conflict too, and the order is not lost.
        let conflicts = try await CentralDatabase.with(self.admin) { db in
            try await db.connection.execute("""
                UPDATE account SET state = 'closed', closed_at = 300 WHERE number = 6004
                """, logger: db.logger)
            return try await db.conflicts()
        }
        #expect(conflicts.map(\.kind).sorted() == ["account-closed", "account-closed", "meter-moved", "meter-moved"])
        #expect(conflicts.allSatisfy { $0.gateway == north && $0.detail.contains("\"order\"") })
        #expect(try await self.order("closed-later").state == "accepted")
        // Selling for a meter without a gateway, or for a closed account, is refused at the desk.
        await #expect(throws: CentralError.self) { _ = try await self.sell(6_002, units: 1, request: "again") }
    }

    @Test func aGatewaysLoginCannotReadOrFetchAnotherGatewaysOrders() async throws {
        let east = self.name("east")
        let west = self.name("west")
        try await self.centre([east: [7_101], west: [7_201]])
        _ = try await self.sell(7_101, units: 10, request: "for-east")
        _ = try await self.sell(7_201, units: 20, request: "for-west")
        try await CentralDatabase.with(self.gatewayURL(west)) { gw in
            await #expect {
                try await gw.run {
                    try await gw.connection.execute("SELECT * FROM remote_order", logger: gw.logger)
                }
            } throws: { error in
                guard case .permissionDenied = error as? CentralError else { return false }
                return true
            }
            await #expect(throws: CentralError.self) {
                try await gw.run {
                    try await gw.connection.execute("UPDATE remote_order SET state = 'applied'", logger: gw.logger)
                }
            }
            let fetched = try await gw.fetchOwnOrders(now: 1)
            #expect(fetched.map(\.requestID) == ["for-west"])
        }
        // A forged confirmation of the other gateway's order in a batch changes nothing.
        try await CentralDatabase.with(self.gatewayURL(west)) { gw in
            let eastOrder = try await self.order("for-east").id
            var extra = SyncBatch.Extra()
            extra.purchases = [.init(meterSerial: 7_201, id: 1, state: "applied", time: 5, requestId: "x",
                                     sequence: 1, mode: "remote", units: 10, unitKind: 1, currency: "CNY",
                                     paidMinor: 2_500, order: eastOrder)]
            extra.refusals = [.init(order: eastOrder, meterSerial: 7_101, refusal: "unknown-meter", time: 5)]
            _ = try await gw.ingest(SyncBatch(fromSequence: 1, toSequence: 1, extra: extra), now: 5)
        }
        #expect(try await self.order("for-east").state == "pending")
        let forged = try await CentralDatabase.with(self.admin) { db in
            try await self.value(db, "SELECT count(*) FROM purchase_change WHERE remote_order_id IS NULL")
        }
        #expect(forged == 1)
    }

    @Test func cardUploadsEventsAndRelayChangesArriveOnceEachAndForeignMetersAreConflicts() async throws {
        let north = self.name("north")
        try await self.centre([north: [8_001]], withAccounts: false)
        var extra = SyncBatch.Extra()
        let image = (0..<256).map { UInt8(truncatingIfNeeded: $0 * 7) }
        extra.uploads = [.init(meterSerial: 8_001, image: image, cardSerial: 100_001, outcome: 0, refusal: 0,
                               refusalDetail: 0, lastApplied: 2, unitsApplied: 300, register: 1_000, credit: 300,
                               meterTime: 50, alarms: 0, uploadedAt: 60, operator: "desk")]
        extra.events = [.init(meterSerial: 8_001, index: 4, time: 40, code: 7, value: -1),
                        .init(meterSerial: 9_999, index: 1, time: 40, code: 7, value: 0)]
        extra.relays = [.init(meterSerial: 8_001, time: 45, relay: "open", reason: 2, source: "poll")]
        try await CentralDatabase.with(self.gatewayURL(north)) { gw in
            let first = try await gw.ingest(SyncBatch(fromSequence: 1, toSequence: 4, extra: extra), now: 70)
            #expect(first.othersInserted == 3 && first.conflicts == 1)
            // The same rows in a later batch (a store restored from a backup): stored once, counted nothing.
            let again = try await gw.ingest(SyncBatch(fromSequence: 5, toSequence: 8, extra: extra), now: 80)
            #expect(again.othersInserted == 0)
        }
        let (stored, code) = try await CentralDatabase.with(self.admin) { db in
            (try await self.value(db, "SELECT count(*) FROM card_upload WHERE length(image) = 256 AND credit = 300"),
             try await self.text(db, "SELECT encode(image, 'hex') FROM card_upload"))
        }
        #expect(stored == 1)
        #expect(code == image.map { String(format: "%02x", $0) }.joined())
    }
}
