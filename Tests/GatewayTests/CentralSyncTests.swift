import BillingStore
import Foundation
import MetergwTestSupport
import Gateway
import PostgresNIO
import StoreSync
import Testing

@testable import CentralStore

/// `metergw serve` with `[central]`: the pollers' readings reach the central PostgreSQL store through the outbox.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralSyncTests {
    func centralCount(_ url: CentralURL, _ sql: String) async throws -> Int64 {
        try await CentralDatabase.with(url) { db in
            try await CentralDatabase.scalar(db.connection.query(PostgresQuery(unsafeSQL: sql), logger: db.logger),
                                             as: Int64.self) ?? -1
        }
    }

    @Test func servePollsIntoTheStoreAndSyncsToTheCentre() async throws {
        let cluster = try PostgresCluster.shared()
        let admin = try CentralURL(parsing: cluster.url(database: try cluster.createDatabase(prefix: "serve")))
        let site = try Site()
        let emulator = try site.addBus("north", meters: 2)
        let serials = (1...2).map { emulator.serial(ofAddress: $0) }
        let name = "serve-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let password = "serve-sync-password"
        try await CentralDatabase.with(admin) { db in
            try await db.migrate()
            try await db.benchmarkFixture(meterSerials: serials)
            _ = try await db.addGateway(name: name, password: password, now: 0)
            try await db.assign(meterSerials: serials, toGateway: name, by: Actor("test", now: 0))
        }
        let login = CentralDatabase.login(ofGateway: name)
        let config = try site.writeConfiguration()
        let passwordFile = site.file("central.password")
        try password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        try ("\n[central]\nurl = \"postgres://\(login)@127.0.0.1:\(cluster.port)/\(admin.database)\"\n"
             + "password_file = \"\(passwordFile)\"\ninterval = \"1s\"\nbatch = 50\n")
            .appendLine(toFile: config)

        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        let deadline = Date().addingTimeInterval(60)  // a failure guard, not a timing
        while try await self.centralCount(admin, "SELECT count(*) FROM reading") < 6 {
            guard Date() < deadline else {
                Issue.record("no readings reached the centre\n\(gateway.log)")
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(gateway.terminate() == 0)
        // What the gateway stored after its last sync goes with one more run; then the centre has every reading
        // of the store exactly once.
        var gatewayURL = admin
        gatewayURL.username = login
        gatewayURL.password = password
        _ = try await OutboxSync(store: site.store, central: gatewayURL).drain()
        let local = try site.store.readings(meterID: try site.meterID("north", 1)).count
            + site.store.readings(meterID: try site.meterID("north", 2)).count
        let central = try await self.centralCount(admin, "SELECT count(*) FROM reading")
        #expect(central == Int64(local))
        #expect(try site.store.syncState().backlog == 0)
    }
}

@Suite struct CentralConfigurationTests {
    @Test func centralSettingsAreCheckedWithTheirLines() throws {
        let text = """
            store = "/tmp/x.sqlite"
            [[bus]]
            name = "a"
            device = "/dev/ttyUSB0"
            meters = [1]
            [central]
            url = "postgres://gw:secret@db/metering"
            interval = "0s"
            batch = 0
            colour = "blue"
            """
        #expect {
            try GatewayConfiguration.parse(text)
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            let keys = Set(error.issues.map(\.key))
            return keys == ["central.url", "central.interval", "central.batch", "central.colour"]
                && error.issues.first { $0.key == "central.url" }?.line == 7
                && error.issues.first { $0.key == "central.url" }!.message.contains("password_file")
        }
        let good = try GatewayConfiguration.parse("""
            store = "/tmp/x.sqlite"
            [[bus]]
            name = "a"
            device = "/dev/ttyUSB0"
            meters = [1]
            [central]
            url = "postgres://metergw_gw_a@db:5432/metering"
            password_file = "/etc/metergw/central.password"
            """)
        #expect(good.central == CentralSyncSettings(url: "postgres://metergw_gw_a@db:5432/metering",
                                                    passwordFile: "/etc/metergw/central.password"))
    }
}

extension String {
    func appendLine(toFile path: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        handle.write(Data(self.utf8))
    }
}
