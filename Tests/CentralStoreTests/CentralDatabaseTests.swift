import BillingStore
import Foundation
import MetergwTestSupport
import PostgresNIO
import Testing

@testable import CentralStore

/// Against a real PostgreSQL cluster started for the test process (MetergwTestSupport.PostgresCluster).
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralDatabaseTests {
    let cluster: PostgresCluster
    let database: String
    let adminURL: CentralURL

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.database = try self.cluster.createDatabase()
        self.adminURL = try CentralURL(parsing: self.cluster.url(database: self.database))
    }

    func gatewayURL(_ name: String) -> CentralURL {
        CentralURL(host: "127.0.0.1", port: self.cluster.port, username: CentralDatabase.login(ofGateway: name),
                   password: "password-of-\(name)", database: self.database)
    }

    /// A unique gateway name per test (logins are per cluster, shared by the tests' databases).
    func uniqueName(_ base: String) -> String { "\(base)-\(self.database.replacing("_", with: "-"))" }

    /// The desk's part, done directly as the owner: a tariff and meters.
    func addMeters(_ db: CentralDatabase, serials: [UInt32]) async throws {
        try await db.connection.execute("""
            INSERT INTO tariff (name, currency, unit_kind, created_at) VALUES ('flat', 'CNY', 1, 0)
            ON CONFLICT DO NOTHING
            """, logger: db.logger)
        for serial in serials {
            try await db.connection.execute("""
                INSERT INTO meter (serial, kind, unit_kind, tariff_id, created_at)
                SELECT \(Int64(serial)), 'electricity', 1, id, 0 FROM tariff WHERE name = 'flat'
                """, logger: db.logger)
        }
    }

    func count(_ db: CentralDatabase, _ sql: String) async throws -> Int64 {
        try await CentralDatabase.scalar(db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger),
                                         as: Int64.self) ?? -1
    }

    @Test func migratesOnceAndKnowsWhatItApplied() async throws {
        try await CentralDatabase.with(self.adminURL) { db in
            #expect(try await db.appliedMigrations().isEmpty)
            await #expect(throws: CentralError.self) { try await db.requireCurrentSchema() }
            let first = try await db.migrate()
            #expect(first == CentralDatabase.knownMigrations)
            let second = try await db.migrate()
            #expect(second.isEmpty)
            #expect(try await db.appliedMigrations() == CentralDatabase.knownMigrations)
            try await db.requireCurrentSchema()
        }
    }

    @Test func twoMigratorsAtOnceApplyEachMigrationOnce() async throws {
        let url = self.adminURL
        async let ranA = CentralDatabase.with(url) { try await $0.migrate() }
        async let ranB = CentralDatabase.with(url) { try await $0.migrate() }
        let (x, y) = try await (ranA, ranB)
        #expect((x + y).sorted() == CentralDatabase.knownMigrations.sorted())
        let applied = try await CentralDatabase.with(url) { try await $0.appliedMigrations() }
        #expect(applied == CentralDatabase.knownMigrations)
    }

    @Test func constraintsHoldTheInvariants() async throws {
        try await CentralDatabase.with(self.adminURL) { db in
            try await db.migrate()
            try await db.connection.execute(
                "INSERT INTO customer (name, created_at) VALUES ('Wang Fang', 0)", logger: db.logger)
            // A negative balance, a closed account with money, an edited audit line: each refused, typed.
            await #expect(throws: CentralError.self) {
                try await db.run {
                    try await db.connection.execute("""
                        INSERT INTO account (customer_id, number, currency, balance_minor, opened_at)
                        SELECT id, 1, 'CNY', -1, 0 FROM customer
                        """, logger: db.logger)
                }
            }
            try await db.connection.execute("""
                INSERT INTO account (customer_id, number, currency, balance_minor, opened_at)
                SELECT id, 2, 'CNY', 500, 0 FROM customer
                """, logger: db.logger)
            do {
                _ = try await db.run {
                    try await db.connection.execute("UPDATE account SET state = 'closed', closed_at = 1",
                                                  logger: db.logger)
                }
                Issue.record("an account with money was closed")
            } catch {
                guard case .constraint = error as? CentralError else { throw error }
            }
            try await db.connection.execute("""
                INSERT INTO audit_log (time, operator, action, entity) VALUES (0, 'test', 'a', 'b')
                """, logger: db.logger)
            do {
                _ = try await db.run {
                    try await db.connection.execute("UPDATE audit_log SET action = 'x'", logger: db.logger)
                }
                Issue.record("the audit log was edited")
            } catch {
                guard case .constraint(let message) = error as? CentralError else { throw error }
                #expect(message.contains("append-only"))
            }
        }
    }

    @Test func aGatewaySendsItsOwnReadingsExactlyOnceAndInOrder() async throws {
        try await CentralDatabase.with(self.adminURL) { admin in
            try await admin.migrate()
            try await self.addMeters(admin, serials: [1001, 1002, 2001])
            let north = self.uniqueName("north")
            let south = self.uniqueName("south")
            _ = try await admin.addGateway(name: north, password: "password-of-\(north)", now: 100)
            _ = try await admin.addGateway(name: south, password: "password-of-\(south)", now: 100)
            try await admin.assign(meterSerials: [1001], toGateway: north, by: Actor("test", now: 0))
            try await admin.assign(meterSerials: [1002], toGateway: north, by: Actor("test", now: 0))
            try await admin.assign(meterSerials: [2001], toGateway: south, by: Actor("test", now: 0))

            try await CentralDatabase.with(self.gatewayURL(north)) { gw in
                let batch = SyncBatch(fromSequence: 1, toSequence: 3, readings: [
                    .init(meterSerial: 1001, time: 1000, registerUnits: 5_000, creditUnits: 12_000),
                    .init(meterSerial: 1002, time: 1000, registerUnits: 7_000, creditUnits: nil),
                ], alarms: [.init(meterSerial: 1001, time: 1000, alarms: 1)])
                let receipt = try await gw.ingest(batch, now: 1010)
                #expect(receipt == SyncReceipt(outcome: .applied, ackedSequence: 3, readingsInserted: 2,
                                               alarmsInserted: 1, conflicts: 0))
                // The acknowledgement was lost: the same batch again writes nothing twice.
                let again = try await gw.ingest(batch, now: 1020)
                #expect(again.outcome == .alreadyApplied && again.ackedSequence == 3)
                #expect(try await self.count(admin, "SELECT count(*) FROM reading") == 2)
                #expect(try await self.count(admin, "SELECT count(*) FROM alarm") == 1)
                #expect(try await self.count(admin, "SELECT credit FROM reading WHERE register = 5000") == 12_000)
                #expect(try await self.count(admin, "SELECT count(*) FROM reading WHERE credit IS NULL") == 1)

                // A gap (entries 4...5 never arrived) is refused with where to resume.
                await #expect(throws: CentralError.outOfOrder(gateway: CentralDatabase.login(ofGateway: north),
                                                              expected: 4, got: 6)) {
                    try await gw.ingest(SyncBatch(fromSequence: 6, toSequence: 6, readings: [
                        .init(meterSerial: 1001, time: 2000, registerUnits: 5_100, creditUnits: 11_900),
                    ]), now: 1030)
                }
                // Readings for the other gateway's meter, and for a meter nobody knows, are not taken: each
                // becomes a conflict for a person.
                let stray = try await gw.ingest(SyncBatch(fromSequence: 4, toSequence: 4, readings: [
                    .init(meterSerial: 2001, time: 3000, registerUnits: 1, creditUnits: 1),
                    .init(meterSerial: 9999, time: 3000, registerUnits: 1, creditUnits: 1),
                ]), now: 1040)
                #expect(stray.readingsInserted == 0 && stray.conflicts == 2)
                #expect(try await self.count(admin, "SELECT count(*) FROM reading WHERE meter_id = "
                                             + "(SELECT id FROM meter WHERE serial = 2001)") == 0)
                #expect(try await self.count(admin, "SELECT count(*) FROM conflict WHERE meter_serial = 2001 "
                                             + "AND kind = 'meter-moved'") == 1)
                #expect(try await self.count(admin, "SELECT count(*) FROM conflict WHERE meter_serial = 9999 "
                                             + "AND kind = 'unknown-meter'") == 1)
                let gateways = try await admin.gateways()
                #expect(gateways.first { $0.name == north }?.ackedSequence == 4)
                #expect(gateways.first { $0.name == south }?.ackedSequence == 0)
            }
        }
    }

    @Test func aGatewaysLoginIsRefusedEverythingElse() async throws {
        try await CentralDatabase.with(self.adminURL) { admin in
            try await admin.migrate()
            try await self.addMeters(admin, serials: [3001, 4001])
            let east = self.uniqueName("east")
            let west = self.uniqueName("west")
            _ = try await admin.addGateway(name: east, password: "password-of-\(east)", now: 0)
            _ = try await admin.addGateway(name: west, password: "password-of-\(west)", now: 0)
            try await admin.assign(meterSerials: [3001], toGateway: east, by: Actor("test", now: 0))
            try await admin.assign(meterSerials: [4001], toGateway: west, by: Actor("test", now: 0))
            try await CentralDatabase.with(self.gatewayURL(west)) { westGateway in
                _ = try await westGateway.ingest(SyncBatch(fromSequence: 1, toSequence: 1, readings: [
                    .init(meterSerial: 4001, time: 10, registerUnits: 10, creditUnits: 10),
                ]), now: 10)
            }

            try await CentralDatabase.with(self.gatewayURL(east)) { gw in
                // Desk tables: refused outright.
                for table in ["account", "customer", "movement", "audit_log", "bank_payment", "gateway"] {
                    await #expect(throws: CentralError.self, "SELECT from \(table)") {
                        try await gw.run {
                            try await gw.connection.execute(PostgresQuery(unsafeSQL: "SELECT * FROM \(table)"),
                                                          logger: gw.logger)
                        }
                    }
                }
                // The other gateway's rows are invisible, and writing them in its name is refused.
                #expect(try await self.count(gw, "SELECT count(*) FROM reading") == 0)
                #expect(try await self.count(gw, "SELECT count(*) FROM meter") == 1)
                let ids = try await admin.gateways()
                let eastID = ids.first { $0.name == east }!.id
                let westID = ids.first { $0.name == west }!.id
                let westMeter = try await self.count(admin, "SELECT id FROM meter WHERE serial = 4001")
                for sql in [
                    // Its own meter's reading in the other gateway's name.
                    "INSERT INTO reading (meter_id, time, register, gateway_id) "
                        + "SELECT id, 20, 20, \(westID) FROM meter",
                    // The other gateway's meter in its own name.
                    "INSERT INTO reading (meter_id, time, register, gateway_id) "
                        + "VALUES (\(westMeter), 21, 21, \(eastID))",
                ] {
                    do {
                        _ = try await gw.run {
                            try await gw.connection.execute(PostgresQuery(unsafeSQL: sql), logger: gw.logger)
                        }
                        Issue.record("a gateway wrote a reading it does not own: \(sql)")
                    } catch {
                        guard case .permissionDenied = error as? CentralError else { throw error }
                    }
                }
                // Not even its own acknowledgement can it move outside a batch.
                do {
                    try await gw.run {
                        try await gw.connection.execute("UPDATE gateway_sync SET acked_sequence = 99",
                                                        logger: gw.logger)
                    }
                    Issue.record("a gateway moved its acknowledgement by hand")
                } catch {
                    guard case .permissionDenied = error as? CentralError else { throw error }
                }
                #expect(try await self.count(admin, "SELECT max(acked_sequence) FROM gateway_sync") == 1)
            }
        }
    }

    @Test func connectionFailuresSayWhatToDo() async throws {
        let nobody = CentralURL(host: "127.0.0.1", port: 1, username: "x", password: "y", database: "z")
        await #expect {
            try await CentralDatabase.with(nobody) { _ in }
        } throws: { error in
            guard case .unreachable = error as? CentralError else { return false }
            return String(describing: error).contains("check that PostgreSQL runs there")
        }
        var wrongPassword = self.adminURL
        wrongPassword.password = "wrong"
        await #expect {
            try await CentralDatabase.with(wrongPassword) { _ in }
        } throws: { error in
            guard case .authenticationFailed = error as? CentralError else { return false }
            return true
        }
        var missing = self.adminURL
        missing.database = "no_such_database"
        await #expect {
            try await CentralDatabase.with(missing) { _ in }
        } throws: { error in
            guard case .noDatabase = error as? CentralError else { return false }
            return true
        }
    }
}
