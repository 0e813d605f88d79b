import BillingStore
import Foundation
import Gateway
import MetergwTestSupport
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// Two substations (`metergw serve` processes over emulated buses) and one billing centre: the link is cut and
/// restored, one gateway is killed and restarted, credit sold at the centre reaches its
/// meter once, and the centre ends with exactly the union of what the gateways stored.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct TwoGatewaySyncTests {
    struct Substation {
        let name: String
        let site: Site
        let bus: String
        let serials: [UInt32]
        let password: String
        var login: String { CentralDatabase.login(ofGateway: self.name) }
    }

    @Test func twoGatewaysSyncThroughAnOutageAndCentralCreditIsAppliedOnce() async throws {
        // Durable: the server is killed mid-run, and must not lose what it acknowledged.
        let cluster = try PostgresCluster.start(durable: true)
        defer { cluster.stop() }
        let admin = try CentralURL(parsing: cluster.url(database: try cluster.createDatabase(prefix: "two")))
        var stations: [Substation] = []
        for (index, name) in ["north-1", "south-2"].enumerated() {
            let site = try Site()
            // Another seed per substation: other serial numbers.
            let emulator = try site.addBus(name, meters: 2, arguments: ["--seed", String(40 + index)])
            stations.append(Substation(name: name, site: site, bus: name,
                                       serials: (1...2).map { emulator.serial(ofAddress: $0) },
                                       password: "\(name)-central-password"))
        }
        #expect(Set(stations.flatMap(\.serials)).count == 4, "the substations' meters have distinct serials")
        try await CentralDatabase.with(admin) { db in
            try await db.migrate()
            try await db.benchmarkFixture(meterSerials: stations.flatMap(\.serials))
            for s in stations {
                _ = try await db.addGateway(name: s.name, password: s.password, now: 0)
                try await db.assign(meterSerials: s.serials, toGateway: s.name, by: Actor("test", now: 0))
            }
        }
        var gateways: [GatewayProcess] = []
        var configs: [String] = []
        for s in stations {
            let config = try s.site.writeConfiguration()
            let passwordFile = s.site.file("central.password")
            try s.password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
            try ("\n[central]\nurl = \"postgres://\(s.login)@127.0.0.1:\(cluster.port)/\(admin.database)\"\n"
                 + "password_file = \"\(passwordFile)\"\ninterval = \"1s\"\nbatch = 20\n")
                .appendLine(toFile: config)
            configs.append(config)
            gateways.append(try GatewayProcess(config: config, logPath: s.site.file("gateway.log")))
        }
        defer { for g in gateways { g.kill() } }
        for (s, g) in zip(stations, gateways) {
            try await Centre.eventually("\(s.name)'s readings at the centre\n\(g.log)") {
                (try? await Centre.query(admin, """
                    SELECT count(*) FROM reading r JOIN gateway g ON g.id = r.gateway_id WHERE g.name = '\(s.name)'
                    """, as: Int64.self).first) ?? 0 > 0
            }
        }

        // Credit sold at the centre, one order for a meter of each substation.
        let before = try stations.map { try $0.site.emulated($0.bus) }
        let sold: [(station: Int, address: Int, units: Int64, request: String)] = [
            (0, 1, 5_000, "centre-north-1"), (1, 2, 7_000, "centre-south-2"),
        ]
        try await CentralDatabase.with(admin) { db in
            for o in sold {
                _ = try await db.sellRemote(meterSerial: stations[o.station].serials[o.address - 1],
                                            units: UInt64(o.units), amount: .fen(2_500), requestID: o.request,
                                            operator: "centre", now: 1)
            }
        }

        // The link goes down: the gateways keep polling into their outboxes.
        try cluster.kill()
        let stored = try stations.map { s in try (1...2).map { try s.site.readingCount(s.bus, $0) }.reduce(0, +) }
        for (i, s) in stations.enumerated() {
            try await eventuallyAsync("\(s.name) polls on while the centre is down") {
                try (1...2).map { try s.site.readingCount(s.bus, $0) }.reduce(0, +) >= stored[i] + 4
            }
        }
        for (s, g) in zip(stations, gateways) {
            try await eventuallyAsync("\(s.name) records the failed sync\n\(g.log)") {
                try s.site.store.syncState().lastError != nil
            }
        }
        // The first substation loses power as the link comes back (whatever it had fetched or queued is in its
        // store), and starts again.
        gateways[0].kill()
        try cluster.restart()
        gateways[0] = try GatewayProcess(config: configs[0], logPath: stations[0].site.file("gateway-after.log"))

        // Each order is fetched by its gateway, applied by its meter and confirmed at the centre.
        for o in sold {
            try await Centre.eventually("order \(o.request) applied at the centre\n\(gateways[o.station].log)") {
                await Centre.orderState(admin, o.request) == "applied"
            }
        }
        // Metrics: the sync's position, backlog, lag and errors (the outage counted).
        let metrics = String(decoding: try StatusClient.get("/metrics", from: stations[1].site.metricsAddress),
                             as: UTF8.self)
        for name in ["metergw_sync_acked_sequence", "metergw_sync_backlog", "metergw_sync_lag_seconds",
                     "metergw_sync_errors_total", "metergw_sync_orders_total"] {
            #expect(metrics.contains(name), "\(name) in /metrics")
        }
        #expect(metrics.contains(#"metergw_sync_orders_total{outcome="queued"} 1"#))
        for g in gateways { #expect(g.terminate() == 0) }

        // The meters got each credit once.
        for o in sold {
            let s = stations[o.station]
            let after = try s.site.emulated(s.bus)[o.address]!
            let was = before[o.station][o.address]!
            let gained = (after["credit"] as! Int64) + (after["register"] as! Int64)
                - (was["credit"] as! Int64) - (was["register"] as! Int64)
            #expect(gained == o.units, "\(o.request)")
            #expect(after["lastAppliedSequence"] as? Int == 1)
        }

        // What the gateways stored after their last round goes with one more; then the centre has each gateway's
        // rows exactly once, and nothing else.
        for s in stations {
            var url = admin
            url.username = s.login
            url.password = s.password
            _ = try await OutboxSync(store: s.site.store, central: url).drain()
            #expect(try s.site.store.syncState().backlog == 0)
            let local = try s.site.syncedRows(s.bus, addresses: 1...2)
            #expect(try await Centre.rows(admin, "reading", "register", gateway: s.name) == local.readings)
            #expect(try await Centre.rows(admin, "alarm", "alarms", gateway: s.name) == local.alarms)
            #expect(try await Centre.rows(admin, "relay_change", "relay", gateway: s.name) == local.relays)
            let purchases = try s.site.store.purchases()
            #expect(try await Centre.purchaseChanges(admin, gateway: s.name)
                        == purchases.flatMap { ["\($0.id!)/applied", "\($0.id!)/queued"] }.sorted())
            #expect(try s.site.store.check().isEmpty)
        }
        let conflicts = try await CentralDatabase.with(admin) { try await $0.conflicts(all: true) }
        #expect(conflicts.isEmpty)
    }
}
