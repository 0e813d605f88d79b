import Foundation
import MeterBus
import MeterEmulator
import MetergwTestSupport
import ModbusMaps
import ModbusProtocol
import SerialPort
import Testing

/// metergw against pymodbus and minimalmodbus (PyPI) over real pseudo-terminals, both directions.
@Suite(.serialized, .enabled(if: Peers.enabled, "interop peers missing (run tools/setup): \(Peers.missing ?? "")"))
struct ModbusInteropTests {
    static let config = #"{"meters":[{"address":1,"serial":11,"kind":"electricity","creditUnits":50000,"#
        + #""registerUnits":1234560,"peakDemand":0}],"cardWriters":[]}"#

    static func emulator(_ arguments: [String]) throws -> EmulatorProcess {
        let dir = try EmulatorProcess.makeDirectory()
        let path = dir.appendingPathComponent("config.json").path
        try Self.config.write(toFile: path, atomically: true, encoding: .utf8)
        return try EmulatorProcess(directory: dir, arguments: arguments + ["--config", path])
    }

    static func status(_ emulator: EmulatorProcess) throws -> [String: Any] {
        let text = try ControlSocket.request("status", path: emulator.link + ".ctl")
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    /// metergw reads a pymodbus server that simulates an SDM630: floats become integer units, exceptions are typed.
    @Test func metergwReadsAPymodbusServer() throws {
        try Peers.require()
        let pair = try PseudoTerminalPair()
        defer { try? pair.close() }
        let server = try PeerProcess("modbus_server.py", ["--port", pair.subordinatePath, "--device-id", "3"])
        try server.waitUntilReady()
        let line = LineSettings(baudRate: 9600)
        let session = BusSession(transport: pair, line: line)
        let driver = ModbusDriver(session: session, map: try RegisterMaps.load("sdm630"))
        let reading = try driver.read(.bus(3))
        // 12345.678 kWh as float32 is 12345.677734375 kWh: 12345678 Wh to the nearest Wh.
        #expect(reading.register == 12_345_678)
        #expect(reading.demand == 1_235)  // 1234.5 W, halves away from zero
        let values = Dictionary(uniqueKeysWithValues: reading.measurements.map { ($0.name, $0.value) })
        #expect(values["voltageL1"] == 2_301 && values["voltageL2"] == 2_312 && values["currentL1"] == 5_123)
        #expect(values["frequency"] == 5_000 && values["exportEnergy"] == 250 && values["totalEnergy"] == 12_345_928)
        let beyond = Result { () throws(BusError) in try driver.request(.readInputRegisters(address: 450, count: 2), to: 3) }
        if case .failure(.rejected(let rejection, _)) = beyond {
            #expect(rejection.code == 2)
        } else {
            Issue.record("expected exception 2 from pymodbus, got \(beyond)")
        }
        // No device 4 on this bus: pymodbus stays silent (ignore_missing_devices), a typed no-answer.
        #expect(throws: BusError.self) { try driver.request(.readInputRegisters(address: 0, count: 2), to: 4,
                                                             retries: 0) }
        let statistics = session.statistics.bus
        #expect(statistics.crcErrors == 0 && statistics.answered >= 2)
        session.close()
        server.stop()
        try PeerProcess.saveFixture(try server.frames(), codec: "ModbusProtocol", name: "pymodbus-server",
                                    note: "pymodbus 3.16.1 serial server (tools/peers/modbus_server.py), device 3, "
                                        + "read by metergw with the sdm630 map")
    }

    /// pymodbus's client reads and writes meter-emulator in Modbus mode, exceptions included.
    @Test func pymodbusClientReadsAndWritesTheEmulator() throws {
        try Peers.require()
        let emulator = try Self.emulator(["--protocol", "modbus", "--map", "mgwpm1"])
        defer { emulator.terminate() }
        let client = try PeerProcess("modbus_client.py", ["--port", emulator.link, "--client", "pymodbus"])
        let result = try client.result()
        func registers(_ key: String) -> [Int]? { (result[key] as? [String: Any])?["registers"] as? [Int] }
        func field(_ key: String, _ name: String) -> Int? { (result[key] as? [String: Any])?[name] as? Int }
        // 1234560 Wh = 0x0012D680, credit 50000, thresholds 10000 / 2000 (mgwpm1: u32, high word first).
        let holding = try #require(registers("holding"))
        #expect(Array(holding[0...3]) == [0x12, 0xD680, 0, 50_000] && Array(holding[10...13]) == [0, 10_000, 0, 2_000])
        #expect(registers("input") == [2_300, 0] && (result["coil"] as? [String: Any])?["bits"] as? [Int] == [1])
        #expect(registers("holdingAfter") == [0, 30_000, 0, 3_000])
        #expect((result["coilAfter"] as? [String: Any])?["bits"] as? [Int] == [0])
        #expect(field("unmapped", "exception") == 2 && field("readOnly", "exception") == 2)
        // The writes reached the meter model: its relay is open now.
        let devices = try #require(Self.status(emulator)["devices"] as? [[String: Any]])
        #expect(devices.first?["relay"] as? String == "open")
        try PeerProcess.saveFixture(try client.frames(), codec: "ModbusProtocol", name: "pymodbus-client",
                                    note: "pymodbus 3.16.1 ModbusSerialClient (tools/peers/modbus_client.py) against "
                                        + "meter-emulator --protocol modbus --map mgwpm1")
    }

    /// minimalmodbus reads and writes meter-emulator in Modbus mode, exceptions included.
    @Test func minimalmodbusReadsAndWritesTheEmulator() throws {
        try Peers.require()
        let emulator = try Self.emulator(["--protocol", "modbus", "--map", "mgwpm1"])
        defer { emulator.terminate() }
        let client = try PeerProcess("modbus_client.py", ["--port", emulator.link, "--client", "minimalmodbus"])
        let result = try client.result()
        func value(_ key: String) -> Int? { (result[key] as? [String: Any])?["value"] as? Int }
        func exception(_ key: String) -> Int? { (result[key] as? [String: Any])?["exception"] as? Int }
        #expect(value("register") == 1_234_560 && value("credit") == 50_000 && value("alarmThreshold") == 10_000)
        #expect(value("voltage") == 2_300 && value("relay") == 1)
        #expect(value("alarmAfter") == 40_000 && value("relayAfter") == 0)
        #expect(exception("unmapped") == 2 && exception("readOnly") == 2)
        let devices = try #require(Self.status(emulator)["devices"] as? [[String: Any]])
        #expect(devices.first?["relay"] as? String == "open")
        try PeerProcess.saveFixture(try client.frames(), codec: "ModbusProtocol", name: "minimalmodbus-client",
                                    note: "minimalmodbus 2.1.1 Instrument (tools/peers/modbus_client.py) against "
                                        + "meter-emulator --protocol modbus --map mgwpm1")
    }
}
