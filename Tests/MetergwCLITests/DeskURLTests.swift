import BillingStore
import CentralStore
import Foundation
import MeterProtocol
import MetergwTestSupport
import Prepaid
import Testing

/// The desk commands on the central store (`--url`) as a separate process: the same commands print the same
/// words and exit with the same statuses on a fresh SQLite file (`--db`) and on a fresh central database
/// (docs/STORE.md "One desk, two stores").
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct DeskURLTests {
    let cluster: PostgresCluster
    let url: String
    let db: String

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.url = self.cluster.url(database: try self.cluster.createDatabase(prefix: "deskcli"))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-desk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        self.db = dir.appendingPathComponent("billing.sqlite").path
    }

    /// The desk's day: tariff, account, meter, sales (one repeated, one refused), receipt, cancel, lists.
    static let commands: [[String]] = [
        ["tariff", "add", "--name", "household", "--tier", "180000:0.5283", "--tier", "350000:0.5783",
         "--tier", "0.8283", "--valid-from", "2026-01-01"],
        ["tariff", "add", "--name", "water", "--unit", "L", "--price", "3", "--fixed", "5.00",
         "--valid-from", "2026-01-01", "--json"],
        ["account", "add", "--name", "Li Wei", "--phone", "010-5555"],
        ["account", "add", "--name", "Wang Fang", "--number", "20000001", "--json"],
        ["meter", "add", "20251125", "--tariff", "household"],
        ["meter", "add", "30000001", "--kind", "water", "--tariff", "water", "--last-applied", "4", "--json"],
        ["meter", "assign", "20251125", "--account", "1"],
        ["meter", "assign", "30000001", "--account", "#20000001", "--json"],
        ["sell", "--account", "1", "--amount", "100.00", "--remote", "--request-id", "desk-1"],
        ["sell", "--account", "1", "--amount", "100.00", "--remote", "--request-id", "desk-1"],
        ["sell", "--account", "1", "--amount", "50.00", "--remote", "--request-id", "desk-1"],
        ["sell", "--account", "#20000001", "--amount", "20.00", "--remote", "--request-id", "desk-2", "--json"],
        ["sell", "--account", "2", "--amount", "20.001", "--remote"],
        ["report", "receipt", "1"],
        ["purchase", "show", "2"],
        ["purchase", "cancel", "1"],
        ["purchase", "cancel", "1", "--json"],
        ["purchase", "list"],
        ["purchase", "list", "--account", "1", "--json"],
        ["account", "show", "1"],
        ["account", "show", "#20000001", "--json"],
        ["account", "list"],
        ["account", "close", "2"],
        ["meter", "show", "30000001"],
        ["meter", "list", "--json"],
        ["tariff", "list"],
        ["tariff", "show", "water", "--json"],
        ["report", "balances", "--csv"],
        ["account", "show", "7"],
        ["meter", "assign", "20251125", "--account", "2"],
        ["payments", "import", DeskURLTests.bankFile],
        ["report", "statement", "--account", "1", "--month", "2026-11"],
        ["report", "statement", "--account", "#20000001", "--month", "2026-11", "--json"],
        ["report", "sales", "--from", "2026-11-01", "--to", "2026-11-30", "--per-account"],
        ["report", "sales", "--from", "2026-10-01", "--to", "2026-11-30", "--by", "month", "--json"],
        ["report", "consumption", "--from", "2026-11-01", "--to", "2026-11-30"],
        ["report", "consumption", "--from", "2026-10-01", "--to", "2026-11-30", "--by", "month", "--csv"],
        ["report", "consumption", "--from", "2026-11-01", "--to", "2026-11-30", "--json"],
        ["report", "meters", "--from", "2026-11-01", "--to", "2026-11-30"],
        ["report", "meters", "--from", "2026-11-01", "--to", "2026-11-30", "--json"],
        ["report", "alarms", "--from", "2026-11-01", "--to", "2026-11-30", "--csv"],
    ]

    /// A bank's file: a top-up, a credit, a reference seen before (the import exits 76, the others stand).
    static let bankFile: String = {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("metergw-bank-\(UUID().uuidString).csv")
        try! """
            date,reference,account,amount,currency,purpose
            2026-11-25,B-1,1,50.00,CNY,topup
            2026-11-25,B-2,#20000001,10.00,CNY,savings
            2026-11-25,B-1,1,50.00,CNY,topup
            """.write(to: path, atomically: true, encoding: .utf8)
        return path.path
    }()

    func run(_ arguments: [String], store: [String]) throws -> CLI.Result {
        try CLI.run(arguments + store, environment: ["METERGW_NOW": "1795595400", "USER": "clerk"])
    }

    @Test func theDeskCommandsSayTheSameOnBothStores() async throws {
        let migrated = try CLI.run(["central", "migrate", "--url", self.url])
        #expect(migrated.status == 0, "\(migrated.stderr)")
        var statuses: [Int32] = []
        for arguments in Self.commands {
            let local = try self.run(arguments, store: ["--db", self.db])
            let central = try self.run(arguments, store: ["--url", self.url])
            #expect(local.status == central.status, "\(arguments): \(local.stderr) | \(central.stderr)")
            #expect(local.stdout == Self.withoutDelivery(central.stdout), "\(arguments)")
            #expect(local.stderr == central.stderr, "\(arguments)")
            if arguments.first == "sell" && central.status == 0 {
                #expect(central.stdout.contains(arguments.contains("--json")
                    ? "\"deliveredBy\":\"metergw topup --remote --url\"" : "no gateway serves meter"), "\(arguments)")
            }
            statuses.append(local.status)
        }
        // The day went as a desk's day goes: the sales sold, the refusals refused with their own statuses.
        #expect(statuses.filter { $0 == 0 }.count == Self.commands.count - 6, "\(statuses)")
        #expect(statuses[10] == 76 && statuses[12] == 64 && statuses[22] == 76 && statuses[28] == 66)
        #expect(statuses[30] == 76)
        let receipt = try self.run(["report", "receipt", "1"], store: ["--url", self.url])
        #expect(receipt.stdout.contains("units       188483 Wh (188.483 kWh)"), "\(receipt.stdout)")
        let repeated = try self.run(Self.commands[9], store: ["--url", self.url])
        #expect(repeated.stdout.hasPrefix("request desk-1 was sold before: this is purchase 1, nothing new"))

        // The reports again once both stores hold the same readings and alarms (the gateway's part): SQLite
        // through its own API, the centre through a gateway's ingest of a sync batch.
        try await self.addMeterData()
        for arguments in Self.reportCommands {
            let local = try self.run(arguments, store: ["--db", self.db])
            let central = try self.run(arguments, store: ["--url", self.url])
            #expect(local.status == 0 && central.status == 0, "\(arguments): \(local.stderr) | \(central.stderr)")
            #expect(local.stdout == central.stdout, "\(arguments)")
            #expect(local.stderr == central.stderr, "\(arguments)")
        }
        let consumption = try self.run(Self.reportCommands[0], store: ["--url", self.url])
        #expect(consumption.stdout.contains("-100"), "\(consumption.stdout)")
        let alarms = try self.run(Self.reportCommands[3], store: ["--url", self.url])
        #expect(alarms.stdout.contains("tamper"), "\(alarms.stdout)")
    }

    /// The centre says who delivers a remote sale (no gateway serves these meters: `topup --remote --url`); a
    /// SQLite store has nobody else to name. The rest is word for word.
    static func withoutDelivery(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix("no gateway serves meter ") }.joined(separator: "\n")
            .replacing(/,"delivery":\{[^}]*\}/, with: "")
    }

    static let reportCommands: [[String]] = [
        ["report", "consumption", "--from", "2026-11-01", "--to", "2026-11-30"],
        ["report", "consumption", "--from", "2026-10-01", "--to", "2026-11-30", "--by", "month", "--json"],
        ["report", "meters", "--from", "2026-11-01", "--to", "2026-11-30", "--csv"],
        ["report", "alarms", "--from", "2026-11-01", "--to", "2026-11-30"],
    ]

    /// November 2026 in UTC+8: readings of the electricity meter (one with credit, the register going back once)
    /// and a tamper episode.
    static let nov1: Int64 = 20758 * 86400 - 28800
    static let readings: [(Int64, Int64, Int64?)] = [
        (nov1 + 3600, 1_000, 5_000), (nov1 + 3 * 86400, 1_500, nil), (nov1 + 10 * 86400, 1_400, nil),
    ]
    static let alarms: [(Int64, Int64)] = [(nov1 + 2 * 86400, Int64(Alarms.tamper.rawValue)), (nov1 + 4 * 86400, 0)]

    func addMeterData() async throws {
        let serial: UInt32 = 20_251_125
        let store = try BillingDatabase.open(path: self.db)
        let meter = try store.meter(String(serial)).id!
        let actor = Actor("gateway", now: 1_795_595_400)
        _ = try store.insertReadings(Self.readings.map {
            ReadingInput(meterID: meter, time: $0.0, register: $0.1, credit: $0.2)
        }, by: actor)
        for (time, bits) in Self.alarms {
            _ = try store.recordAlarms(AlarmInput(meterID: meter, time: time, alarms: bits), by: actor)
        }
        let admin = try CentralURL(parsing: self.url)
        let name = "deskcli-\(admin.database.replacing("_", with: "-"))"
        // The centre numbered this meter's credit: it reaches the meter (as `topup --remote` would confirm it, on
        // both stores alike) before a gateway may serve the meter.
        let last = UInt32(try store.purchases(meterID: meter).map(\.sequence).max() ?? 0)
        _ = try store.markApplied(meter: String(serial), upTo: last, source: "remote", by: actor)
        try await CentralDatabase.with(admin) { db in
            _ = try await db.markApplied(meter: String(serial), upTo: last, source: "remote", by: actor)
            _ = try await db.addGateway(name: name, password: "password-of-\(name)", now: 100)
            try await db.assign(meterSerials: [serial], toGateway: name, by: Actor("test", now: 0))
        }
        var gateway = admin
        gateway.username = CentralDatabase.login(ofGateway: name)
        gateway.password = "password-of-\(name)"
        let receipt = try await CentralDatabase.with(gateway) { gw in
            try await gw.ingest(SyncBatch(
                fromSequence: 1, toSequence: Int64(Self.readings.count + Self.alarms.count),
                readings: Self.readings.map {
                    .init(meterSerial: serial, time: $0.0, registerUnits: $0.1, creditUnits: $0.2)
                },
                alarms: Self.alarms.map { .init(meterSerial: serial, time: $0.0, alarms: Int32($0.1)) }), now: 200)
        }
        #expect(receipt.readingsInserted == Self.readings.count && receipt.alarmsInserted == Self.alarms.count)
    }

    /// The card writer's flows on both stores, each store with its own emulated meter and card writer on a
    /// pseudo-terminal (the same seed: the same meter serial): a sale onto a blank card, its repeat, the card held
    /// to the meter and uploaded (twice), a sale over the card with the meter's write-back, a replacement and its
    /// resume, and the lists after them print the same and exit alike on --db and --url.
    @Test func theCardCommandsSayTheSameOnBothStores() async throws {
        #expect(try CLI.run(["central", "migrate", "--url", self.url]).status == 0)
        // No consumption (--speed 0): the meters' registers and credit depend on nothing but the cards.
        let sites = [(try DeskFlowTests.Desk(emulatorArguments: ["--speed", "0"]), ["--db", self.db]),
                     (try DeskFlowTests.Desk(emulatorArguments: ["--speed", "0"]), ["--url", self.url])]
        var outputs: [[String]] = []
        for (desk, store) in sites {
            let serial = String(desk.meterSerial)
            var out: [String] = []
            func run(_ arguments: [String]) throws {
                let r = try self.run(arguments, store: store)
                // The emulators' pseudo-terminals are in different folders: their paths are the only difference.
                out.append("\(arguments.prefix(2).joined(separator: " ")): \(r.status)\n\(r.stdout)\(r.stderr)"
                    .replacing(desk.bus, with: "BUS"))
            }
            let writer = ["--port", desk.bus, "--keys", desk.keys]
            let sell = ["sell", "--account", "1", "--writer", desk.bus, "--keys", desk.keys]
            try run(["tariff", "add", "--name", "tier", "--tier", "10000:0.50", "--tier", "1.00",
                     "--valid-from", "2020-01-01"])
            try run(["tariff", "add", "--name", "flat", "--price", "0.50", "--valid-from", "2020-01-01"])
            try run(["account", "add", "--name", "Li Wei"])
            try run(["meter", "add", serial, "--tariff", "tier", "--address", "1"])
            try run(["meter", "assign", serial, "--account", "1"])
            try run(["meter", "set-tariff", serial, "--tariff", "flat"])
            try run(["meter", "set-tariff", serial, "--tariff", "none"])
            try run(sell + ["--amount", "10.00", "--request-id", "c-1"])  // no card in the writer: nothing sold
            try desk.insertBlankCard()
            try run(sell + ["--amount", "10.00", "--request-id", "c-1"])
            try run(sell + ["--amount", "10.00", "--request-id", "c-1", "--json"])
            _ = try desk.carryCardToMeterAndBack("visit")
            try run(["card", "upload"] + writer)
            try run(["card", "upload"] + writer)
            try run(sell + ["--amount", "6.00", "--request-id", "c-2"])
            try run(["purchase", "list"])
            try desk.emulate(["card", "remove", "--out", desk.file("lost.bin")])
            try run(["card", "replace", "--account", "1"] + writer)  // no card in the writer: nothing issued
            try desk.insertBlankCard()
            try run(["card", "replace", "--account", "1"] + writer)
            try run(["card", "replace", "--account", "1", "--resume", "--json"] + writer)
            try run(["meter", "show", serial, "--json"])
            try run(["purchase", "list", "--json"])
            try run(["account", "show", "1"])
            outputs.append(out)
        }
        #expect(outputs[0].count == outputs[1].count)
        for (local, central) in zip(outputs[0], outputs[1]) {
            #expect(local == central)
        }
        // The flows did what they say (on both, being equal): sold, written, uploaded once, replaced.
        let local = outputs[0]
        #expect(local[7].hasPrefix("sell --account: 66") && local[7].contains("no card in the writer"), "\(local[7])")
        #expect(local[8].contains("wrote card 100001 (generation 1): purchases 1...1, 20000 units"), "\(local[8])")
        #expect(local[9].contains("\"repeated\":true"), "\(local[9])")
        #expect(local[10].contains("credit-applied") && local[10].contains("confirmed purchase 1"), "\(local[10])")
        #expect(local[11].contains("uploaded before"), "\(local[11])")
        #expect(local[12].contains("wrote card 100001 (generation 1): purchases 2...2"), "\(local[12])")
        #expect(local[14].hasPrefix("card replace: 66") && local[14].contains("no card"), "\(local[14])")
        #expect(local[15].contains("wrote replacement card 100002 (generation 2)") && local[15].contains("2...2"),
                "\(local[15])")
        #expect(local[16].contains("\"card\":100002") && local[16].contains("\"generation\":2"), "\(local[16])")
        #expect(local[18].contains("\"state\":\"written\"") && local[18].contains("\"state\":\"applied\""))

        // At the centre, the replacement is held to the meter and uploaded: the last purchase is applied, so the
        // meter may go to a gateway (not before); then its card sale is the gateway's.
        let (desk, _) = sites[1]
        _ = try desk.carryCardToMeterAndBack("replacement")
        let uploaded = try self.run(["card", "upload", "--port", desk.bus, "--keys", desk.keys, "--json"],
                                    store: ["--url", self.url])
        #expect(uploaded.status == 0 && uploaded.stdout.contains("\"applied\":[2]"), "\(uploaded.stdout)")
        let admin = try CentralURL(parsing: self.url)
        let name = "cards-\(admin.database.replacing("_", with: "-"))"
        let serial = desk.meterSerial
        try await CentralDatabase.with(admin) { db in
            _ = try await db.addGateway(name: name, password: "password-of-\(name)", now: 100)
            try await db.assign(meterSerials: [serial], toGateway: name, by: Actor("test", now: 0))
        }
        let served = try self.run(["sell", "--account", "1", "--writer", desk.bus, "--keys", desk.keys,
                                   "--amount", "5.00"], store: ["--url", self.url])
        #expect(served.status == 76 && served.stderr.contains("served by gateway \(name)"), "\(served.stderr)")
    }

    /// SIGKILL at every step of a card sale on the central store: the retry with the same request id completes
    /// the sale once, with the credit block on the card once; an upload killed after it was recorded is repeated.
    @Test(arguments: ["card-sold", "card-planned", "card-written", "card-verified", "card-marked"])
    func aCardSaleAtTheCentreKilledAtAnyStepIsCompletedOnceByItsRetry(_ point: String) throws {
        #expect(try CLI.run(["central", "migrate", "--url", self.url]).status == 0)
        let desk = try DeskFlowTests.Desk(emulatorArguments: ["--speed", "0"])
        let serial = String(desk.meterSerial)
        func run(_ arguments: [String], crashAt: String? = nil) throws -> CLI.Result {
            var environment = ["METERGW_NOW": "1795595400", "USER": "clerk"]
            if let crashAt { environment["METERGW_CRASH_AT"] = crashAt }
            return try CLI.run(arguments + ["--url", self.url], environment: environment)
        }
        for arguments in [["tariff", "add", "--name", "flat", "--price", "0.50", "--valid-from", "2020-01-01"],
                          ["account", "add", "--name", "Li Wei"], ["meter", "add", serial, "--tariff", "flat"],
                          ["meter", "assign", serial, "--account", "1"]] {
            let r = try run(arguments)
            #expect(r.status == 0, "\(arguments): \(r.stderr)")
        }
        try desk.insertBlankCard()
        let sale = ["sell", "--account", "1", "--amount", "10.00", "--writer", desk.bus, "--keys", desk.keys,
                    "--request-id", "crash-1", "--json"]
        let killed = try run(sale, crashAt: point)
        #expect(killed.status == 9, "\(point): the hook did not fire: \(killed.status) \(killed.stderr)")
        let retry = try run(sale)
        #expect(retry.status == 0, "\(point): \(retry.stderr)")
        let sold = try DeskFlowTests.object(retry)
        #expect(sold["id"] as? Int == 1 && sold["sequence"] as? Int == 1 && sold["state"] as? String == "written")
        let list = try run(["purchase", "list", "--json"])
        let purchases = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [Any])
        #expect(purchases.count == 1, "\(point): \(list.stdout)")
        let card = try desk.cardInWriter()
        #expect(card.cardSerial == 100_001 && card.generation == 1, "\(point)")
        #expect(card.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1, units: 20_000), "\(point)")
        let back = try desk.carryCardToMeterAndBack("crash")
        #expect(back.writeBack?.unitsApplied == 20_000, "\(point)")
        let upload = ["card", "upload", "--port", desk.bus, "--keys", desk.keys, "--json"]
        #expect(try run(upload, crashAt: "upload-recorded").status == 9)
        let again = try DeskFlowTests.object(try run(upload))
        #expect(again["repeated"] as? Bool == true && again["applied"] as? [Int] == [], "\(point): \(again)")
        let account = try DeskFlowTests.object(try run(["account", "show", "1", "--json"]))
        #expect((account["movements"] as? [Any])?.count == 2, "\(point): \(account)")
    }

    @Test func theCentralURLComesFromTheEnvironmentAndFailuresSayWhatToDo() throws {
        #expect(try CLI.run(["central", "migrate", "--url", self.url]).status == 0)
        let added = try CLI.run(["account", "add", "--name", "Li Wei"],
                                environment: ["METERGW_CENTRAL_URL": self.url, "METERGW_DB": ""])
        #expect(added.status == 0 && added.stdout == "opened account 1 (number 10000001): Li Wei\n", "\(added.stderr)")
        // METERGW_DB names the SQLite store and wins over the central URL from the environment.
        let local = try CLI.run(["account", "list", "--json"],
                                environment: ["METERGW_CENTRAL_URL": self.url, "METERGW_DB": self.db])
        #expect(local.status == 0 && local.stdout == "[]\n", "\(local.stderr)")

        let both = try CLI.run(["account", "list", "--db", self.db, "--url", self.url])
        #expect(both.status == 64 && both.stderr.contains("not both"), "\(both.stderr)")
        let unreachable = try CLI.run(["account", "list", "--url", "postgres://desk:secret@127.0.0.1:1/billing"])
        #expect(unreachable.status == 69 && unreachable.stderr.contains("cannot reach the central store"),
                "\(unreachable.stderr)")
        #expect(!unreachable.stderr.contains("secret"))
        // A card sale works on the central store too: this account has no meter, and the centre says so.
        let card = try CLI.run(["sell", "--account", "1", "--amount", "10", "--writer", "/dev/null", "--url", self.url])
        #expect(card.status == 76 && card.stderr.contains("has no meter"), "\(card.stderr)")
    }

    @Test func anUnmigratedCentralStoreIsRefusedWithWhatToRun() throws {
        let fresh = self.cluster.url(database: try self.cluster.createDatabase(prefix: "deskcli"))
        let r = try CLI.run(["account", "list", "--url", fresh])
        #expect(r.status != 0 && r.stderr.contains("metergw central migrate"), "\(r.stderr)")
    }
}
