import BillingStore
import Foundation
import MeterProtocol
import MetergwTestSupport
import SerialPort
import Testing

/// `report meters`, `report alarms` and the progress of long reports, through the built binary on a real SQLite
/// file; readings, alarms and events go in through the store's API, as the gateway writes them.
@Suite struct ReportCommandTests {
    typealias Desk = StoreCommandTests.Desk

    static let offset: Int64 = 28800
    static let nov1 = LocalTime.parseDate("2026-11-01")!
    /// Unix time of local day `nov1 + day` at `hour`.
    static func t(_ day: Int64, _ hour: Int64) -> Int64 { (nov1 + day) * 86400 - offset + hour * 3600 }
    static let gateway = Actor("gateway", now: t(0, 0))

    @Test func meterAndAlarmReportsPrintExactRows() throws {
        let desk = try Desk()
        try desk.setUp()
        #expect(try desk.run(["sell", "--account", "1", "--amount", "100.00", "--remote", "--request-id", "r1"])
            .status == 0)
        let store = try BillingDatabase.open(path: desk.db)
        let meter = try store.meter("20251125").id!
        try store.insertReadings([
            ReadingInput(meterID: meter, time: Self.t(0, 1), register: 1000, credit: 50000),
            ReadingInput(meterID: meter, time: Self.t(4, 12), register: 1600, credit: 49400),
        ], by: Self.gateway)
        _ = try store.recordAlarms(AlarmInput(meterID: meter, time: Self.t(1, 0), alarms: 1), by: Self.gateway)
        _ = try store.recordAlarms(AlarmInput(meterID: meter, time: Self.t(2, 6), alarms: 0), by: Self.gateway)
        _ = try store.insertEvents([EventInput(meterID: meter, index: 9, time: Self.t(1, 12), code: 0x0070, value: 1)],
                                   by: Self.gateway)

        let november = ["--from", "2026-11-01", "--to", "2026-11-30"]
        let meters = try desk.run(["report", "meters"] + november + ["--csv"])
        #expect(meters.status == 0, "\(meters.stderr)")
        #expect(meters.stdout == """
            meter,kind,account,tariff,lastReading,register,consumption,credit,creditAt,unit,lastAppliedSequence,\
            pendingPurchases,pendingUnits
            20251125,electricity,1,flat,2026-11-05 12:00:00 +08:00,1600,600,49400,2026-11-05 12:00:00 +08:00,Wh,0,1,\
            189286

            """)
        #expect(meters.stderr.isEmpty, "no progress without a terminal")
        let alarms = try desk.run(["report", "alarms"] + november + ["--csv"])
        #expect(alarms.status == 0, "\(alarms.stderr)")
        #expect(alarms.stdout == """
            meter,alarm,raised,cleared,acknowledged,durationSeconds
            20251125,low-credit,2026-11-02 00:00:00 +08:00,2026-11-03 06:00:00 +08:00,2026-11-02 12:00:00 +08:00,108000

            """)
        let json = try desk.run(["report", "alarms"] + november + ["--json"])
        let episodes = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(episodes.count == 1 && episodes[0]["alarm"] as? String == "low-credit")
        #expect(episodes[0]["durationSeconds"] as? Int == 108_000)
        let table = try desk.run(["report", "meters"] + november)
        #expect(table.stdout.hasPrefix("meter     kind         account  tariff  lastReading"), "\(table.stdout)")
        // October has no reading: no last reading, no consumption, but the purchase is pending now.
        let october = try desk.run(["report", "meters", "--from", "2026-10-01", "--to", "2026-10-31", "--csv"])
        #expect(october.stdout.split(separator: "\n").last == "20251125,electricity,1,flat,,,,,,Wh,0,1,189286")
        let backwards = try desk.run(["report", "alarms", "--from", "2026-11-30", "--to", "2026-11-01"])
        #expect(backwards.status == 64 && backwards.stderr.contains("from not after to"), "\(backwards.stderr)")
    }

    /// Runs `metergw` with standard error on a pseudo-terminal, as in a technician's terminal; returns its status,
    /// standard output and what the terminal received.
    static func runOnTerminal(_ arguments: [String], environment: [String: String]) throws
        -> (status: Int32, stdout: String, terminal: String)
    {
        let pair = try PseudoTerminalPair()
        let process = Process()
        process.executableURL = CLI.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = FileHandle.nullDevice
        let terminal = try #require(FileHandle(forWritingAtPath: pair.subordinatePath))
        process.standardError = terminal
        try process.run()
        try terminal.close()
        nonisolated(unsafe) var output = Data()
        let reader = PeerThread { output = out.fileHandleForReading.readDataToEndOfFile() }
        var received: [UInt8] = []
        // Read until the process has exited and its last bytes are in (each read a generous guard, not a timing).
        while true {
            let exited = !process.isRunning
            let chunk = Result { () throws(SerialError) in
                try pair.read(upTo: 4096, deadline: .now + .milliseconds(200))
            }
            if case .success(let bytes) = chunk, !bytes.isEmpty { received += bytes } else if exited { break }
        }
        try reader.value()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self),
                String(decoding: received, as: UTF8.self))
    }

    @Test func aReportOverAYearOfReadingsShowsProgressOnATerminalOnly() throws {
        let desk = try Desk()
        try desk.setUp()
        for serial in ["7", "8", "9"] {
            #expect(try desk.run(["meter", "add", serial, "--tariff", "flat"]).status == 0)
        }
        // A year of hourly readings for four meters: 35,040 rows.
        let store = try BillingDatabase.open(path: desk.db)
        let jan1 = LocalTime.parseDate("2026-01-01")!
        for (_, id) in try store.meterIDs() {
            let readings = (0..<(365 * 24) as Range<Int64>).map { hour in
                ReadingInput(meterID: id, time: jan1 * 86400 - Self.offset + hour * 3600, register: hour * 250)
            }
            #expect(try store.insertReadings(readings, by: Self.gateway) == readings.count)
        }
        let arguments = ["report", "consumption", "--from", "2026-01-01", "--to", "2026-12-31", "--by", "month",
                         "--csv"]
        let plain = try desk.run(arguments)
        #expect(plain.status == 0 && plain.stderr.isEmpty, "\(plain.stderr)")
        #expect(plain.stdout.split(separator: "\n").count == 1 + 4 * 12)

        let shown = try Self.runOnTerminal(arguments, environment: ["METERGW_DB": desk.db])
        #expect(shown.status == 0)
        #expect(shown.stdout == plain.stdout, "the report itself is the same")
        for done in 1...4 {
            let filled = 30 * done / 4
            let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: 30 - filled) + "]"
            #expect(shown.terminal.contains("\r\(bar) report consumption: \(done) of 4 meters"), "\(shown.terminal)")
        }
        // The bar is erased at the end, so the shell's prompt starts on a clean line.
        #expect(shown.terminal.hasSuffix("\r" + String(repeating: " ", count: 78) + "\r"), "\(shown.terminal)")
    }
}
