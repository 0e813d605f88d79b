import BillingStore
import Foundation
import Gateway
import MetergwTestSupport
import PostgresNIO
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// Issue 9's kill test: two substations (`metergw serve` over emulated buses) sync into one durable centre while,
/// in a seeded order, the PostgreSQL server is killed with SIGKILL (the postmaster, no shutdown) and started again,
/// gateways are killed with SIGKILL at seeded moments, and gateways kill themselves at exact points of the sync
/// (`METERGW_CRASH_AT`): after the centre committed a batch and before its acknowledgement was recorded
/// (`sync-ingested`), after fetching orders (`sync-fetched`), after storing them (`sync-received`), and after the
/// meter applied a credit and before the gateway marked it (`credit-answered`). Centrally sold credit is added
/// throughout. Afterwards the centre holds exactly the union of the gateways' rows, each once, and every order was
/// applied once by its meter (the emulator's credit and applied sequence are the truth).
///
/// The seed is printed; `METERGW_KILL_SEED=N` replays a run's schedule (what the processes do between the kills
/// is not replayed: the invariants hold whatever they did). Nothing is timed: waits are generous failure guards,
/// and the random pauses only decide where the kills land.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct SeededKillSyncTests {
    struct Station {
        let name: String
        let site: Site
        let serials: [UInt32]
        let password: String
        var config = ""
        var login: String { CentralDatabase.login(ofGateway: self.name) }
        var bus: String { self.name }
    }

    enum Step: CustomStringConvertible {
        /// kill -9 the postmaster after a pause, start it again after another.
        case killServer(sellFirst: Bool)
        /// SIGKILL a gateway after a pause (and sell for it while it is down), start it again.
        case killGateway(Int, sellWhileDown: Bool)
        /// Restart a gateway with `METERGW_CRASH_AT=point`, wait until it killed itself there, start it again.
        case crashAt(Int, String)

        var description: String {
            switch self {
            case .killServer(let sell): "kill -9 the server\(sell ? " (after a sale)" : "")"
            case .killGateway(let i, let sell): "SIGKILL gateway \(i)\(sell ? " (a sale while it is down)" : "")"
            case .crashAt(let i, let point): "gateway \(i) crashes at \(point)"
            }
        }
    }

    struct Sale {
        let station: Int
        let address: Int
        let units: Int64
        let request: String
    }

    @Test func serverAndGatewaysKilledAtSeededPointsLeaveExactlyTheUnionAndEveryCreditOnce() async throws {
        let seed = ProcessInfo.processInfo.environment["METERGW_KILL_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 1...(1 << 48))
        print("SeededKillSyncTests: seed \(seed) (replay the schedule with METERGW_KILL_SEED=\(seed))")
        fflush(nil)
        var random = SeededGenerator(seed: seed)

        let cluster = try PostgresCluster.start(durable: true)
        defer { cluster.stop() }
        let admin = try CentralURL(parsing: cluster.url(database: try cluster.createDatabase(prefix: "kill")))
        var stations: [Station] = []
        for (index, name) in ["east-1", "west-2"].enumerated() {
            let site = try Site()
            let emulator = try site.addBus(name, meters: 2, arguments: ["--seed", String(60 + index)])
            stations.append(Station(name: name, site: site, serials: (1...2).map { emulator.serial(ofAddress: $0) },
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
        for i in stations.indices {
            let s = stations[i]
            let config = try s.site.writeConfiguration()
            let passwordFile = s.site.file("central.password")
            try s.password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
            // Small batches: a round is several batches, so kills land between them.
            try ("\n[central]\nurl = \"postgres://\(s.login)@127.0.0.1:\(cluster.port)/\(admin.database)\"\n"
                 + "password_file = \"\(passwordFile)\"\ninterval = \"1s\"\nbatch = 4\n").appendLine(toFile: config)
            stations[i].config = config
        }
        let before = try stations.map { try $0.site.emulated($0.bus) }
        var runs = 0
        func start(_ i: Int, crashAt point: String? = nil) throws -> GatewayProcess {
            runs += 1
            return try GatewayProcess(config: stations[i].config,
                                      logPath: stations[i].site.file("gateway-\(runs).log"),
                                      environment: point.map { ["METERGW_CRASH_AT": $0] } ?? [:])
        }
        var gateways = try stations.indices.map { try start($0) }
        defer { for g in gateways { g.kill() } }

        var sales: [Sale] = []
        func sell(for station: Int) async throws {
            let sale = Sale(station: station, address: Int.random(in: 1...2, using: &random),
                            units: Int64.random(in: 1...9, using: &random) * 1_000,
                            request: "kill-\(seed)-\(sales.count + 1)")
            let serial = stations[station].serials[sale.address - 1]
            let amount = Money.fen(1_000 + Int64(sales.count))
            try await CentralDatabase.with(admin) { db in
                _ = try await db.sellRemote(meterSerial: serial, units: UInt64(sale.units), amount: amount,
                                            requestID: sale.request, operator: "centre", now: 1)
            }
            sales.append(sale)
        }
        func pause(_ range: ClosedRange<Int>) async throws {
            try await Task.sleep(for: .milliseconds(Int.random(in: range, using: &random)))
        }

        // Both substations are up and syncing before the kills start.
        for s in stations {
            try await Centre.eventually("\(s.name)'s readings at the centre") {
                (try? await Centre.query(admin, """
                    SELECT count(*) FROM reading r JOIN gateway g ON g.id = r.gateway_id WHERE g.name = '\(s.name)'
                    """, as: Int64.self).first) ?? 0 > 0
            }
        }
        for i in stations.indices { try await sell(for: i) }

        // Five server kills, two random kills of each gateway, and each gateway at each crash point once.
        var steps: [Step] = (0..<5).map { _ in .killServer(sellFirst: Bool.random(using: &random)) }
        for i in stations.indices {
            for _ in 0..<2 { steps.append(.killGateway(i, sellWhileDown: Bool.random(using: &random))) }
            for point in ["sync-ingested", "sync-fetched", "sync-received", "credit-answered"] {
                steps.append(.crashAt(i, point))
            }
        }
        steps.shuffle(using: &random)
        print("SeededKillSyncTests: schedule \(steps.map(\.description).joined(separator: "; "))")
        fflush(nil)

        for step in steps {
            switch step {
            case .killServer(let sellFirst):
                if sellFirst { try await sell(for: Int.random(in: stations.indices, using: &random)) }
                try await pause(0...1_500)
                try cluster.crash()
                try await pause(100...1_500)
                try cluster.restartAfterCrash()
            case .killGateway(let i, let sellWhileDown):
                try await pause(0...1_500)
                gateways[i].kill()
                if sellWhileDown { try await sell(for: i) }
                gateways[i] = try start(i)
            case .crashAt(let i, let point):
                gateways[i].kill()
                // The downlink's points are reached only with an order to fetch and deliver.
                if point != "sync-ingested" { try await sell(for: i) }
                gateways[i] = try start(i, crashAt: point)
                let killedItself = try await gateways[i].waitForOwnDeath()
                #expect(killedItself, "gateway \(i) died at \(point)\n\(gateways[i].log)")
                gateways[i] = try start(i)
            }
        }

        // The link and every gateway are back: each order reaches its meter and is confirmed at the centre.
        for sale in sales {
            try await Centre.eventually("order \(sale.request) applied (seed \(seed))\n"
                                        + gateways[sale.station].log.split(separator: "\n").suffix(60)
                                            .joined(separator: "\n"), timeout: 90) {
                await Centre.orderState(admin, sale.request) == "applied"
            }
        }
        for (i, g) in gateways.enumerated() { #expect(g.terminate() == 0, "gateway \(i) stops cleanly") }

        // Every credit was applied once by its meter: the emulator's register plus credit gained exactly the units
        // sold for it, and its last applied sequence counts the orders.
        for (i, s) in stations.enumerated() {
            let after = try s.site.emulated(s.bus)
            for address in 1...2 {
                let mine = sales.filter { $0.station == i && $0.address == address }
                let (now, was) = (after[address]!, before[i][address]!)
                let gained = (now["credit"] as! Int64) + (now["register"] as! Int64)
                    - (was["credit"] as! Int64) - (was["register"] as! Int64)
                #expect(gained == mine.map(\.units).reduce(0, +), "\(s.name) meter \(address), seed \(seed)")
                #expect(now["lastAppliedSequence"] as? Int == mine.count, "\(s.name) meter \(address), seed \(seed)")
            }
        }

        // One last round sends what the gateways stored after theirs; then the centre holds each gateway's rows
        // exactly once, and nothing else.
        for (i, s) in stations.enumerated() {
            var url = admin
            url.username = s.login
            url.password = s.password
            _ = try await OutboxSync(store: s.site.store, central: url).drain()
            #expect(try s.site.store.syncState().backlog == 0)
            let local = try s.site.syncedRows(s.bus, addresses: 1...2)
            #expect(local.readings.count > 20, "\(s.name) polled through the run")
            #expect(try await Centre.rows(admin, "reading", "register", gateway: s.name) == local.readings,
                    "\(s.name) readings, seed \(seed)")
            #expect(try await Centre.rows(admin, "alarm", "alarms", gateway: s.name) == local.alarms,
                    "\(s.name) alarms, seed \(seed)")
            #expect(try await Centre.rows(admin, "relay_change", "relay", gateway: s.name) == local.relays,
                    "\(s.name) relay changes, seed \(seed)")
            // Each order became one local purchase, queued then applied; nothing else was sold here.
            let purchases = try s.site.store.purchases()
            #expect(purchases.count == sales.filter { $0.station == i }.count, "\(s.name), seed \(seed)")
            #expect(purchases.allSatisfy { $0.state == .applied }, "\(s.name), seed \(seed)")
            #expect(try s.site.store.centralOrders().allSatisfy { $0.purchaseID != nil && $0.refusal == nil })
            #expect(try await Centre.purchaseChanges(admin, gateway: s.name)
                        == purchases.flatMap { ["\($0.id!)/applied", "\($0.id!)/queued"] }.sorted(),
                    "\(s.name) purchase changes, seed \(seed)")
            #expect(try s.site.store.check().isEmpty)
        }
        let orderSequences = try await Centre.query(admin, """
            SELECT count(*) FROM remote_order WHERE state = 'applied' AND sequence IS NOT NULL
            """, as: Int64.self).first
        #expect(orderSequences == Int64(sales.count))
        let conflicts = try await CentralDatabase.with(admin) { try await $0.conflicts(all: true) }
        #expect(conflicts.isEmpty, "seed \(seed): \(conflicts)")
    }
}
