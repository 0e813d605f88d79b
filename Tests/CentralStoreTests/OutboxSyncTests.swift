import BillingStore
import Foundation
import MeterProtocol
import MetergwTestSupport
import PostgresNIO
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// A gateway's SQLite store syncing into a real PostgreSQL cluster of the test's own (it is stopped and started).
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct OutboxSyncTests {
    static let serials: [UInt32] = [7_001, 7_002]

    func count(_ db: CentralDatabase, _ sql: String) async throws -> Int64 {
        try await CentralDatabase.scalar(db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger),
                                         as: Int64.self) ?? -1
    }

    func localStore() throws -> BillingDatabase {
        let store = try BillingDatabase.inMemory()
        let actor = Actor("test", now: 0)
        let tariff = try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                     price: Price(majorPerThousandUnits: "0.5283", currency: .cny)!)
        _ = try store.addTariff(tariff, validFrom: 0, by: actor)
        for serial in Self.serials {
            _ = try store.addMeter(serial: serial, kind: .electricity, tariff: "flat", by: actor)
        }
        return store
    }

    func addReadings(_ store: BillingDatabase, from: Int64, count: Int) throws {
        let ids = try store.meterIDs()
        let rows = (0..<count).map { i in
            let serial = Int64(Self.serials[i % Self.serials.count])
            let slot = from + Int64(i / Self.serials.count)
            return ReadingInput(meterID: ids[serial]!, time: slot * 900, register: slot * 10, credit: 1_000_000 - slot)
        }
        try store.insertReadings(rows, by: Actor("poller", now: 0))
    }

    @Test func everyReadingArrivesOnceThroughCrashesAndAnOutage() async throws {
        // Durable: a server that acknowledged commits it had not written would lose them when killed, and the
        // gateway, told they were committed, would have pruned them.
        let cluster = try PostgresCluster.start(durable: true)
        defer { cluster.stop() }
        let admin = try CentralURL(parsing: cluster.url(database: try cluster.createDatabase(prefix: "sync")))
        try await CentralDatabase.with(admin) { db in
            try await db.migrate()
            try await db.benchmarkFixture(meterSerials: Self.serials)
            _ = try await db.addGateway(name: "substation-7", password: "substation-7-password", now: 0)
            try await db.assign(meterSerials: Self.serials, toGateway: "substation-7", by: Actor("test", now: 0))
        }
        var gatewayURL = admin
        gatewayURL.username = CentralDatabase.login(ofGateway: "substation-7")
        gatewayURL.password = "substation-7-password"
        let store = try self.localStore()
        var options = OutboxSync.Options()
        options.batchSize = 1_000
        options.maxBatchesPerSecond = 1_000
        let sync = OutboxSync(store: store, central: gatewayURL, options: options)

        try self.addReadings(store, from: 0, count: 4_500)
        try store.recordAlarms(AlarmInput(meterID: try store.meterIDs()[7_001]!, time: 450, alarms: 1),
                               by: Actor("poller", now: 0))
        let first = try await sync.drain()
        #expect(first.readings == 4_500 && first.alarms == 1 && first.batches == 5 && first.conflicts == 0)
        #expect(try store.syncState().backlog == 0)

        // The centre committed a batch, but the gateway died before it recorded the answer: the next run learns the
        // acknowledgement from the centre and sends nothing twice.
        try self.addReadings(store, from: 10_000, count: 300)
        let pending = try #require(try store.outboxBatch(after: first.ackedSequence, limit: 1_000))
        _ = try await CentralDatabase.with(gatewayURL) { gw in
            try await gw.ingest(SyncBatch(fromSequence: pending.fromSequence, toSequence: pending.toSequence,
                                          readings: pending.readings.map {
                                              .init(meterSerial: $0.meterSerial, time: $0.time,
                                                    registerUnits: $0.register, creditUnits: $0.credit)
                                          }), now: 0)
        }
        let afterCrash = try await sync.drain()
        #expect(afterCrash.batches == 0 && afterCrash.ackedSequence == pending.toSequence)
        #expect(try store.syncState().backlog == 0)

        // The centre goes away: the run fails with what to do, the backlog stays, and it all arrives once the
        // centre is back.
        try cluster.kill()
        try self.addReadings(store, from: 20_000, count: 2_000)
        await #expect {
            try await sync.drain()
        } throws: { error in
            guard case .central(.unreachable) = error as? OutboxSync.Failure else { return false }
            return true
        }
        let down = try store.syncState()
        #expect(down.backlog == 2_000 && down.lastError?.contains("cannot reach the central store") == true)
        try cluster.restart()
        let resumed = try await sync.drain()
        #expect(resumed.readings == 2_000 && resumed.batches == 2)
        #expect(try store.syncState().backlog == 0 && store.syncState().lastError == nil)

        let (readings, alarms, duplicates) = try await CentralDatabase.with(admin) { db in
            (try await self.count(db, "SELECT count(*) FROM reading"),
             try await self.count(db, "SELECT count(*) FROM alarm"),
             try await self.count(db, """
                 SELECT count(*) FROM (SELECT meter_id, time FROM reading GROUP BY 1, 2 HAVING count(*) > 1) d
                 """))
        }
        // Every local reading exactly once at the centre.
        #expect(readings == 4_500 + 300 + 2_000 && alarms == 1 && duplicates == 0)

        // The centre comes back from an old backup: it acknowledges less than it did. Sending on would skip the
        // lost entries silently, so the run refuses and says so.
        try await CentralDatabase.with(admin) { db in
            try await db.connection.execute("UPDATE gateway_sync SET acked_sequence = 100", logger: db.logger)
        }
        try self.addReadings(store, from: 30_000, count: 10)
        await #expect {
            try await sync.drain()
        } throws: { error in
            guard case .centreBehind(centre: 100, local: let local) = error as? OutboxSync.Failure else { return false }
            return local > 100
        }
        #expect(try store.syncState().backlog == 10)
    }
}
