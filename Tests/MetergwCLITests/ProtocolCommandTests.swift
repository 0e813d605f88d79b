import Foundation
import MetergwTestSupport
import Testing

/// `metergw read|scan|relay|clock sync --protocol modbus|dlt645` and `metergw modbus ...` against meter-emulator
/// in those modes, as separate processes on a pseudo-terminal.
@Suite(.serialized) struct ProtocolCommandTests {
    static func emulator(_ arguments: [String]) throws -> EmulatorProcess {
        let dir = try EmulatorProcess.makeDirectory()
        let path = dir.appendingPathComponent("config.json").path
        try (#"{"meters":[{"address":1,"serial":12345678,"kind":"electricity","creditUnits":50000,"#
             + #""registerUnits":1234560,"peakDemand":0},{"address":2,"serial":12345679,"kind":"electricity","#
             + #""registerUnits":99990,"peakDemand":0}],"cardWriters":[]}"#)
            .write(toFile: path, atomically: true, encoding: .utf8)
        return try EmulatorProcess(directory: dir, arguments: arguments + ["--config", path])
    }

    static func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func modbusReadRelayAndRawRegisters() throws {
        let emulator = try Self.emulator(["--protocol", "modbus", "--map", "mgwpm1"])
        defer { emulator.terminate() }
        let port = ["--port", emulator.link]

        let read = try CLI.run(["read", "--protocol", "modbus", "--meter", "1", "--json"] + port)
        #expect(read.status == 0, "\(read.stderr)")
        let reading = try Self.json(read.stdout)
        #expect(reading["register"] as? Int == 1_234_560 && reading["credit"] as? Int == 50_000)
        #expect(reading["protocol"] as? String == "modbus-rtu" && reading["alarms"] == nil)
        let human = try CLI.run(["read", "--protocol", "modbus", "--meter", "2"] + port)
        #expect(human.stdout.contains("register               99990 Wh"), "\(human.stdout)")
        #expect(human.stdout.contains("voltage                2300 dV"))

        let relay = try CLI.run(["relay", "open", "--protocol", "modbus", "--meter", "2"] + port)
        #expect(relay.status == 0 && relay.stdout == "meter 2: relay open\n", "\(relay.stderr)")

        let holding = try CLI.run(["modbus", "read-holding", "-a", "1", "--register", "0", "--count", "2", "--json"]
                                  + port)
        #expect(try Self.json(holding.stdout)["registers"] as? [Int] == [0x12, 0xD680])
        let write = try CLI.run(["modbus", "write-registers", "-a", "1", "--register", "10", "0", "25000"] + port)
        #expect(write.status == 0 && write.stdout == "wrote 2 register(s) from 10\n")
        let back = try CLI.run(["modbus", "read-holding", "-a", "1", "--register", "11"] + port)
        #expect(back.stdout == "holding 11: 25000 (0x61A8, signed 25000)\n")
        // An exception: exit 76 with its code, meaning and what to do.
        let missing = try CLI.run(["modbus", "read-holding", "-a", "1", "--register", "100"] + port)
        #expect(missing.status == 76 && missing.stderr.contains("exception 2 (illegal data address)"))
        let single = try CLI.run(["modbus", "write-register", "-a", "1", "--register", "0", "7"] + port)
        #expect(single.status == 76)
        // Nobody at 9: exit 69.
        let silent = try CLI.run(["modbus", "read-input", "-a", "9", "--register", "0", "--retries", "0"] + port)
        #expect(silent.status == 69 && silent.stderr.contains("no answer from meter 9"), "\(silent.stderr)")
        // What Modbus does not have: a usage error that says so.
        let sync = try CLI.run(["clock", "sync", "--protocol", "modbus", "--all"] + port)
        #expect(sync.status == 64 && sync.stderr.contains("Modbus RTU does not offer a time broadcast"))
    }

    @Test func dlt645ReadScanRelayAndClockBroadcast() throws {
        let emulator = try Self.emulator(["--protocol", "dlt645"])
        defer { emulator.terminate() }
        let port = ["--port", emulator.link]
        let read = try CLI.run(["read", "--protocol", "dlt645", "--meter", "000012345678", "--json"] + port)
        #expect(read.status == 0, "\(read.stderr)")
        let reading = try Self.json(read.stdout)
        #expect(reading["address"] as? String == "000012345678" && reading["register"] as? Int == 1_234_560)
        #expect(reading["relay"] as? String == "closed" && reading["credit"] == nil)

        let relay = try CLI.run(["relay", "open", "--protocol", "dlt645", "--meter", "000012345679"] + port)
        #expect(relay.status == 0 && relay.stdout.hasPrefix("meter 000012345679: relay open"), "\(relay.stderr)")
        let wrong = try CLI.run(["relay", "open", "--protocol", "dlt645", "--meter", "000012345679",
                                 "--dlt645-password", "02123456"] + port)
        #expect(wrong.status == 76 && wrong.stderr.contains("password wrong or unauthorized"))

        let sync = try CLI.run(["clock", "sync", "--protocol", "dlt645", "--all", "--json"] + port)
        let broadcast = try Self.json(sync.stdout)
        #expect(sync.status == 0 && broadcast["protocol"] as? String == "dlt645-2007")

        let scan = try CLI.run(["scan", "--protocol", "dlt645", "--json"] + port, timeout: 120)
        #expect(scan.status == 0, "\(scan.stderr)")
        let meters = try #require(try Self.json(scan.stdout)["meters"] as? [[String: Any]])
        #expect(Set(meters.compactMap { $0["address"] as? String }) == ["000012345678", "000012345679"])

        let bad = try CLI.run(["read", "--protocol", "dlt645", "--meter", "7"] + port)
        #expect(bad.status == 64 && bad.stderr.contains("12-digit address"))
    }

    /// One DL/T 645 meter's clock, set with write data (0x14) and the password; a wrong password is refused.
    @Test func dlt645ClockSyncOfOneMeter() throws {
        let emulator = try Self.emulator(["--protocol", "dlt645"])
        defer { emulator.terminate() }
        let port = ["--port", emulator.link]
        let sync = try CLI.run(["clock", "sync", "--protocol", "dlt645", "--meter", "000012345678", "--json"] + port)
        #expect(sync.status == 0, "\(sync.stderr)")
        let outcome = try Self.json(sync.stdout)
        #expect(outcome["new"] as? String != nil && abs(outcome["driftSeconds"] as? Int ?? 999) < 30, "\(outcome)")
        let wrong = try CLI.run(["clock", "sync", "--protocol", "dlt645", "--meter", "000012345678",
                                 "--dlt645-password", "02999999"] + port)
        #expect(wrong.status == 76 && wrong.stderr.contains("password wrong or unauthorized"), "\(wrong.stderr)")
    }

    /// A technician's map file that marks the clock writable: `clock sync --meter` writes it and reads it back;
    /// the shipped mgwpm1 map (clock read-only, as a prepaid meter guards it) refuses with a usage error.
    @Test func modbusClockSyncWhereAMapFileMarksTheClockWritable() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let mapPath = dir.appendingPathComponent("clocked.json").path
        let shippedURL = try #require(Self.shippedMap("mgwpm1"))
        let shippedJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: shippedURL))
        let shipped = try #require(shippedJSON as? [String: Any])
        var map = shipped
        map["name"] = "clocked"
        map["registers"] = (shipped["registers"] as! [[String: Any]]).map { entry in
            var e = entry
            if e["reading"] as? String == "clock" { e["writable"] = true }
            return e
        }
        try JSONSerialization.data(withJSONObject: map).write(to: URL(fileURLWithPath: mapPath))
        let config = dir.appendingPathComponent("meters.json").path
        // Meter 1's clock is two hours slow.
        try (#"{"meters":[{"address":1,"serial":12345678,"kind":"electricity","creditUnits":50000,"#
             + #""registerUnits":1234560,"clockOffsetSeconds":-7200}],"cardWriters":[]}"#)
            .write(toFile: config, atomically: true, encoding: .utf8)
        let emulator = try EmulatorProcess(directory: dir, arguments: [
            "--protocol", "modbus", "--map", mapPath, "--config", config])
        defer { emulator.terminate() }
        let port = ["--port", emulator.link]

        let shippedMap = try CLI.run(["clock", "sync", "--protocol", "modbus", "--meter", "1"] + port)
        #expect(shippedMap.status == 64 && shippedMap.stderr.contains("no writable clock register"),
                "\(shippedMap.stderr)")
        let sync = try CLI.run(["clock", "sync", "--protocol", "modbus", "--map", mapPath, "--meter", "1", "--json"]
                               + port)
        #expect(sync.status == 0, "\(sync.stderr)")
        let outcome = try Self.json(sync.stdout)
        let drift = try #require(outcome["driftSeconds"] as? Int, "\(outcome)")
        #expect(abs(drift + 7200) < 30, "the meter was two hours slow: \(outcome)")
        let read = try CLI.run(["read", "--protocol", "modbus", "--map", mapPath, "--meter", "1", "--json"] + port)
        #expect(read.status == 0, "\(read.stderr)")
        let meterTime = try #require(try Self.json(read.stdout)["meterTime"] as? String, "\(read.stdout)")
        let now = Int(Date().timeIntervalSince1970)
        let parsed = try #require(ISO8601DateFormatter().date(from: meterTime), "\(meterTime)")
        #expect(abs(Int(parsed.timeIntervalSince1970) - now) < 30, "\(meterTime)")
    }

    static func shippedMap(_ name: String) -> URL? {
        var dir = URL(fileURLWithPath: #filePath)
        while dir.path != "/" {
            dir.deleteLastPathComponent()
            let candidate = dir.appendingPathComponent("Sources/ModbusMaps/Maps/\(name).json")
            if FileManager.default.fileExists(atPath: candidate.path) { return candidate }
        }
        return nil
    }

    /// Thresholds over Modbus where the map marks them writable (mgwpm1), refused where it does not (sdm630).
    @Test func modbusThresholdsWhereTheMapHasThem() throws {
        let emulator = try Self.emulator(["--protocol", "modbus", "--map", "mgwpm1"])
        defer { emulator.terminate() }
        let port = ["--port", emulator.link]
        let set = try CLI.run(["thresholds", "--protocol", "modbus", "--meter", "1", "--alarm", "30000",
                               "--cutoff", "3000", "--json"] + port)
        #expect(set.status == 0, "\(set.stderr)")
        #expect(try Self.json(set.stdout)["alarm"] as? Int == 30_000)
        let read = try CLI.run(["read", "--protocol", "modbus", "--meter", "1", "--json"] + port)
        #expect(try Self.json(read.stdout)["alarmThreshold"] as? Int == 30_000, "\(read.stdout)")
        let sdm = try CLI.run(["thresholds", "--protocol", "modbus", "--map", "sdm630", "--meter", "1", "--alarm",
                               "1", "--cutoff", "0"] + port)
        #expect(sdm.status == 64 && sdm.stderr.contains("credit thresholds in register map sdm630"), "\(sdm.stderr)")
    }
}
