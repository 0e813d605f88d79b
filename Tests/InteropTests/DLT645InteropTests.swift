import DLT645Protocol
import Foundation
import MeterBus
import MetergwTestSupport
import SerialPort
import Testing

/// metergw against the dlt645 (PyPI) package over real pseudo-terminals, both directions, including its deviations
/// from DL/T 645-2007 (docs/INTEROP.md): the address high byte first, answers to frames for other addresses, the
/// wildcard echoed, and the broadcast time in natural order.
@Suite(.serialized, .enabled(if: Peers.enabled, "interop peers missing (run tools/setup): \(Peers.missing ?? "")"))
struct DLT645InteropTests {
    static let address = "000012345678"
    /// The same digits as dlt645 3.2.0 puts them on the wire (pairs reversed): what it must be told to reach a
    /// standard meter with address 000012345678.
    static let addressAsTheLibrarySendsIt = "785634120000"

    static func slave() throws -> (PseudoTerminalPair, PeerProcess, BusSession) {
        let pair = try PseudoTerminalPair()
        let slave = try PeerProcess("dlt645_slave.py", ["--port", pair.subordinatePath, "--address", Self.address])
        try slave.waitUntilReady()
        var options = BusSession.Options()
        options.retries = 1
        return (pair, slave, BusSession(transport: pair, line: LineSettings(baudRate: 9600), options: options))
    }

    /// metergw follows the standard; a dlt645 slave does not: with `reversed-address` metergw reads it.
    @Test func metergwReadsADLT645SlaveWithTheCompatibilitySetting() throws {
        try Peers.require()
        let (pair, slave, session) = try Self.slave()
        defer { try? pair.close() }
        var options = DLT645Driver.Options()
        options.compatibility = .reversedAddress
        let driver = DLT645Driver(session: session, options: options)
        let reading = try driver.read(.station(Self.address))
        #expect(reading.register == 1_234_560)
        #expect(reading.demand == 1_235)  // 1.2345 kW
        let values = Dictionary(uniqueKeysWithValues: reading.measurements.map { ($0.name, $0.value) })
        #expect(values["voltageA"] == 2_301 && values["currentA"] == 5_123 && values["reverseActiveEnergy"] == 7_890)
        // Read address with the wildcard finds it (its answer carries the address high byte first too).
        let report = try driver.scan(progress: nil)
        #expect(report.meters.map(\.address) == [.station(Self.address)])

        // The standard way: the slave does not recognise its own address in standard order, and instead of staying
        // silent it answers frames for other addresses with an abnormal answer ("other error").
        let standard = DLT645Driver(session: session)
        let outcome = Result { () throws(BusError) in try standard.read(.station(Self.address)) }
        if case .failure(.rejected(let rejection, let evidence)) = outcome {
            #expect(rejection.code == 0x01 && evidence.target == .station(Self.address))
        } else {
            Issue.record("expected an abnormal answer from the dlt645 slave, got \(outcome)")
        }
        session.close()
        slave.stop()
        try PeerProcess.saveFixture(try slave.frames(), codec: "DLT645Protocol", name: "dlt645-slave",
                                    note: "dlt645 3.2.0 RTU slave (tools/peers/dlt645_slave.py) at 000012345678, "
                                        + "read by metergw with and without reversed-address")
    }

    /// The dlt645 master reads meter-emulator in DL/T 645 mode, which answers as the standard says.
    @Test func theDLT645MasterReadsTheEmulator() throws {
        try Peers.require()
        let dir = try EmulatorProcess.makeDirectory()
        let config = dir.appendingPathComponent("config.json").path
        try (#"{"meters":[{"address":1,"serial":12345678,"kind":"electricity","registerUnits":1234560,"#
             + #""peakDemand":0}],"cardWriters":[]}"#).write(toFile: config, atomically: true, encoding: .utf8)
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--protocol", "dlt645", "--config", config])
        defer { emulator.terminate() }

        let client = try PeerProcess("dlt645_master.py", ["--port", emulator.link, "--address",
                                                           Self.addressAsTheLibrarySendsIt])
        let result = try client.result()
        func value(_ key: String) -> Any? { (result[key] as? [String: Any])?["value"] }
        #expect(value("energy") as? Double == 1234.56 && value("reverseEnergy") as? Double == 0)
        #expect(value("voltage") as? Double == 230.0 && value("current") as? Double == 0)
        // Its reading of the meter's standard address, high byte first.
        #expect(value("address") as? String == Self.addressAsTheLibrarySendsIt)
        // A DI the meter does not have: an abnormal answer, which the library reports as nothing.
        #expect(result["missing"] is NSNull)
        try PeerProcess.saveFixture(try client.frames(), codec: "DLT645Protocol", name: "dlt645-master",
                                    note: "dlt645 3.2.0 master (tools/peers/dlt645_master.py) against "
                                        + "meter-emulator --protocol dlt645, meter 000012345678")

        // Told the address as printed, the library sends it reversed: the emulator, like a standard meter, stays
        // silent for another address.
        let silent = try PeerProcess("dlt645_master.py", ["--port", emulator.link, "--address", Self.address])
        let nothing = try silent.result()
        #expect(nothing["energy"] is NSNull && nothing["voltage"] is NSNull)
    }
}
