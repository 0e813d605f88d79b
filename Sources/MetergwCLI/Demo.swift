import ArgumentParser
import BillingStore
import Foundation
import Gateway
import KeyStore
import MeterProtocol

#if canImport(Glibc)
import Glibc
#endif

/// `metergw demo`: the whole product in under a minute, on emulated hardware (README "Try it").
///
/// Two emulated buses on pseudo-terminals (meters and a card writer), a fresh store, accounts, a sale on a card
/// and a remote one, the gateway polling both buses, a meter running into its low-credit cut-off and coming back
/// when remote credit arrives, the status table and a report. Every step prints the command a person would type.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway over emulated buses: sales, readings, alarms, a cut-off and its restore.",
        discussion: """
            Starts meter-emulator buses on pseudo-terminals in a temporary folder, creates a billing store, opens \
            accounts, sells credit on a card and remotely, runs metergw serve, and shows what it does. Cleans up \
            at the end; with --keep it leaves everything running and prints how to look around.
            """)

    @Flag(help: "Leave the emulators and the gateway running, and print how to look around.")
    var keep = false

    @Option(help: "Folder for the demo's files (default: a new temporary folder).")
    var dir: String?

    @Option(help: "Port of the gateway's loopback metrics and status endpoint.")
    var port: Int = 9464

    func run() throws {
        let folder = self.dir ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("metergw-demo-\(UUID().uuidString.prefix(6))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let run = DemoRun(folder: folder, port: self.port)
        do {
            try run.go()
        } catch {
            run.stopAll()
            throw error
        }
        if self.keep {
            run.printHowToLookAround()
        } else {
            run.section("cleaning up")
            run.stopAll()
            try? FileManager.default.removeItem(atPath: folder)
            Output.line("done: everything above ran on emulated hardware; see README and docs/OPERATIONS.md")
        }
    }
}

/// One demo's processes and files.
final class DemoRun {
    let folder: String
    let port: Int
    let binaries: URL
    var children: [(name: String, process: Process)] = []
    var serials: [String: [Int: UInt32]] = [:]

    init(folder: String, port: Int) {
        self.folder = folder
        self.port = port
        self.binaries = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            .deletingLastPathComponent()
    }

    func path(_ name: String) -> String { self.folder + "/" + name }
    var keys: String { self.path("keys") }
    var store: String { self.path("billing.sqlite") }
    var config: String { self.path("gateway.toml") }
    var north: String { self.path("north") }
    var south: String { self.path("south") }

    func section(_ title: String) { Output.line("\n== \(title)") }

    func go() throws {
        self.section("emulated hardware in \(self.folder)")
        _ = try KeyFile.create(at: self.keys, issuerID: 7)
        Output.line("key file \(self.keys) (shared by the desk, the gateway and the emulated meters)")
        // North: three meters (the third low on credit, with a slow clock) and the desk's card writer.
        let devices = """
            {"meters": [
              {"address": 1, "serial": 20251101, "kind": "electricity", "creditUnits": 5000, "peakDemand": 4000},
              {"address": 2, "serial": 20251102, "kind": "electricity", "creditUnits": 30000, "peakDemand": 3000},
              {"address": 3, "serial": 20251103, "kind": "electricity", "creditUnits": 7900,
               "alarmThresholdUnits": 8000, "cutoffThresholdUnits": 1000, "clockOffsetSeconds": -95}],
             "cardWriters": [{"address": 100, "serial": 90000001}]}
            """
        try devices.write(toFile: self.path("north.json"), atomically: true, encoding: .utf8)
        try self.startEmulator(link: self.north, ["--config", self.path("north.json"), "--speed", "60"])
        try self.startEmulator(link: self.south, ["--meters", "4", "--seed", "42", "--speed", "60"])

        self.section("the billing store: a tariff, accounts, meters")
        let env = ["METERGW_DB": self.store, "USER": "demo"]
        try self.metergw(["tariff", "add", "--name", "household", "--price", "0.50", "--valid-from", "2020-01-01"], env)
        var account = 0
        for (bus, meters) in [("north", [1, 2, 3]), ("south", [1, 2, 3, 4])] {
            for address in meters {
                account += 1
                let serial = String(self.serials[bus]![address]!)
                try self.metergw(["account", "add", "--name", "Customer \(account)"], env, quiet: account > 1)
                try self.metergw(["meter", "add", serial, "--tariff", "household", "--address", String(address)], env,
                                 quiet: account > 1)
                try self.metergw(["meter", "assign", serial, "--account", String(account)], env, quiet: account > 1)
            }
        }
        Output.line("(7 accounts, one meter each: north 1-3 are accounts 1-3, south 1-4 accounts 4-7)")

        self.section("a sale on a card: written by the card writer, carried to north meter 1")
        let blank = self.path("blank.bin")
        try Data(repeating: 0xFF, count: 256).write(to: URL(fileURLWithPath: blank))
        try self.emulator(["card", "insert", "--link", self.north, "--file", blank])
        try self.metergw(["sell", "--account", "1", "--amount", "20.00", "--writer", self.north, "--keys", self.keys,
                          "--request-id", "demo-card-1"], env)
        try self.emulator(["card", "remove", "--link", self.north, "--out", self.path("card.bin")])
        try self.emulator(["card", "insert", "--link", self.north, "--device", "1", "--file", self.path("card.bin"),
                           "--out", self.path("card-back.bin")])

        self.section("a remote sale: queued for the gateway")
        try self.metergw(["sell", "--account", "5", "--amount", "10.00", "--remote", "--request-id", "demo-remote-1"],
                         env)

        self.section("the gateway")
        let configuration = """
            store = "\(self.store)"
            keys = "\(self.keys)"
            metrics = "127.0.0.1:\(self.port)"
            clock_drift_limit = "60s"

            [[bus]]
            name = "north"
            device = "\(self.north)"
            line = "9600:8N1"
            poll_interval = "1s"
            meters = [1, 2, 3]

            [[bus]]
            name = "south"
            device = "\(self.south)"
            line = "9600:8N1"
            poll_interval = "1s"
            discover = true
            """
        try configuration.write(toFile: self.config, atomically: true, encoding: .utf8)
        Output.line(configuration.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        try self.metergw(["serve", "--config", self.config, "--check"], env)
        try self.startGateway()
        let db = try BillingDatabase.open(path: self.store)
        let ids = try db.meterIDs()
        try self.wait("readings from all 7 meters") {
            try ids.values.allSatisfy { try db.readings(meterID: $0).count >= 2 }
        }
        try self.wait("the remote sale applied") { try db.purchase(requestID: "demo-remote-1")?.state == .applied }
        try self.wait("the card sale confirmed") { try db.purchase(requestID: "demo-card-1")?.state == .applied }
        try self.wait("north meter 3's clock set") {
            try String(contentsOfFile: self.path("gateway.log"), encoding: .utf8).contains("meter clock set")
        }
        Output.line("readings are in the store; the card purchase is confirmed by meter 1's last applied sequence, "
                    + "the remote one by its meter's answer; north meter 3's clock was 95 s slow and has been set")

        self.section("north meter 3 runs low: the alarm, then the cut-off")
        let meter3 = ids[Int64(self.serials["north"]![3]!)]!
        try self.wait("the low-credit alarm recorded") {
            try db.alarmChanges(meterID: meter3).contains { $0.alarms & 1 != 0 }
        }
        try self.emulator(["consume", "--link", self.north, "--device", "3", "8500"])
        try self.wait("the relay opening recorded") {
            try db.relayChanges(meterID: meter3).last?.relay == "open"
        }
        Output.line(self.eventsText(db, meter3))

        self.section("remote credit for account 3: the relay closes again")
        try self.metergw(["sell", "--account", "3", "--amount", "15.00", "--remote", "--request-id", "demo-remote-2"],
                         env)
        try self.wait("the relay closing recorded") {
            try db.purchase(requestID: "demo-remote-2")?.state == .applied
                && db.relayChanges(meterID: meter3).last?.relay == "closed"
        }
        Output.line(self.eventsText(db, meter3))

        self.section("the gateway's status")
        try self.metergw(["status", "--address", "127.0.0.1:\(self.port)"], env)

        self.section("a report: today's sales per account")
        let today = Self.day(Date())
        try self.metergw(["report", "sales", "--from", today, "--to", today, "--per-account"], env)
        try self.metergw(["db", "check"], env)
    }

    func eventsText(_ db: BillingDatabase, _ meter: Int64) -> String {
        var lines: [String] = []
        for a in (try? db.alarmChanges(meterID: meter)) ?? [] {
            let names = Alarms(rawValue: UInt16(truncatingIfNeeded: a.alarms)).names
            lines.append("  \(Self.clock(a.time))  alarms  \(names.isEmpty ? "cleared" : names.joined(separator: ","))")
        }
        for r in (try? db.relayChanges(meterID: meter)) ?? [] {
            lines.append("  \(Self.clock(r.time))  relay   \(r.relay)")
        }
        return "store, north meter 3:\n" + lines.sorted().joined(separator: "\n")
    }

    static func clock(_ time: Int64) -> String {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f.string(from: Date(timeIntervalSince1970: TimeInterval(time)))
    }

    static func day(_ date: Date) -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd"
        f.timeZone = TimeZone(secondsFromGMT: 28800)
        return f.string(from: date)
    }

    // MARK: Processes

    func startEmulator(link: String, _ arguments: [String]) throws {
        let name = URL(fileURLWithPath: link).lastPathComponent
        let args = ["--link", link, "--keys", self.keys, "--state", link + "-state.json", "--json"] + arguments
        Output.line("$ meter-emulator \(args.joined(separator: " ")) &")
        let process = Process()
        process.executableURL = self.binaries.appendingPathComponent("meter-emulator")
        process.arguments = args
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.children.append((name, process))
        let first = try Self.firstLine(out.fileHandleForReading)
        guard let object = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any],
              let devices = object["devices"] as? [[String: Any]]
        else { throw CLIError(.failure, "meter-emulator did not start: \(first)") }
        var serials: [Int: UInt32] = [:]
        for d in devices {
            if let a = d["address"] as? Int, let s = d["serial"] as? Int { serials[a] = UInt32(s) }
        }
        self.serials[name] = serials
        Output.line("  \(name): " + devices.map { d in
            "\(d["kind"] ?? "?") \(d["address"] ?? "?") (serial \(d["serial"] ?? "?"))"
        }.joined(separator: ", "))
    }

    func startGateway() throws {
        Output.line("$ metergw serve --config \(self.config) 2> \(self.path("gateway.log")) &")
        let process = Process()
        process.executableURL = self.binaries.appendingPathComponent("metergw")
        process.arguments = ["serve", "--config", self.config]
        FileManager.default.createFile(atPath: self.path("gateway.log"), contents: nil)
        let log = FileHandle(forWritingAtPath: self.path("gateway.log"))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        self.children.append(("gateway", process))
    }

    static func firstLine(_ handle: FileHandle) throws -> String {
        var bytes: [UInt8] = []
        while true {
            let data = handle.readData(ofLength: 1)
            guard let byte = data.first else { throw CLIError(.failure, "meter-emulator exited before it started") }
            if byte == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }

    /// Runs a command and shows it with its output.
    func metergw(_ arguments: [String], _ environment: [String: String], quiet: Bool = false) throws {
        try self.show("metergw", arguments, environment: environment, quiet: quiet)
    }

    func emulator(_ arguments: [String]) throws {
        try self.show("meter-emulator", arguments, environment: [:], quiet: true)
    }

    private func show(_ tool: String, _ arguments: [String], environment: [String: String], quiet: Bool) throws {
        if !quiet { Output.line("$ \(tool) \(arguments.joined(separator: " "))") }
        let process = Process()
        process.executableURL = self.binaries.appendingPathComponent(tool)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if !quiet && !trimmed.isEmpty {
            Output.line(trimmed.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        }
        guard process.terminationStatus == 0 else {
            throw CLIError(.failure, "the demo's step `\(tool) \(arguments.joined(separator: " "))` failed: \(text)")
        }
    }

    /// Waits for what the gateway does (30 s guard: on a healthy machine each takes a second or two).
    func wait(_ what: String, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if (try? condition()) == true { return }
            usleep(100_000)
        }
        throw CLIError(.failure, "the demo waited 30 s for \(what) and gave up; the gateway's log is "
                       + "\(self.path("gateway.log"))")
    }

    func stopAll() {
        // The gateway first (it commits), then the buses (they save their state).
        for (_, p) in self.children.reversed() where p.isRunning {
            p.terminate()
            p.waitUntilExit()
        }
    }

    func printHowToLookAround() {
        let pids = self.children.map { "\($0.process.processIdentifier)" }.joined(separator: " ")
        Output.line("""

            == still running (--keep): look around
              metergw status --address 127.0.0.1:\(self.port)          # buses and meters
              curl -s http://127.0.0.1:\(self.port)/metrics | grep metergw_   # Prometheus metrics
              tail -f \(self.path("gateway.log"))                      # one line per event
              METERGW_DB=\(self.store) metergw report balances
              metergw sell --db \(self.store) --account 6 --amount 5.00 --remote --request-id more-1
              meter-emulator status --link \(self.north)
              metergw sniff --port \(self.north)                        # (stop the gateway first: one opener)
            stop it all:  kill \(pids); rm -rf \(self.folder)
            """)
    }
}
