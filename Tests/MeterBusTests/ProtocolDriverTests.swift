import DLT645Protocol
import Foundation
import MeterProtocol
import MetergwTestSupport
import ModbusMaps
import ModbusProtocol
import SerialPort
import Testing

@testable import MeterBus

/// ModbusDriver and DLT645Driver against meter-emulator in Modbus and DL/T 645 mode, as a separate process on a
/// real pseudo-terminal.
@Suite(.serialized) struct ProtocolDriverTests {
    final class Bus {
        let emulator: EmulatorProcess
        let port: SerialPort
        let session: BusSession

        init(_ arguments: [String], config: String? = nil, options: BusSession.Options = .forTests) throws {
            let dir = try EmulatorProcess.makeDirectory()
            var arguments = arguments
            if let config {
                let path = dir.appendingPathComponent("config.json").path
                try config.write(toFile: path, atomically: true, encoding: .utf8)
                arguments += ["--config", path]
            }
            self.emulator = try EmulatorProcess(directory: dir, arguments: arguments)
            self.port = try SerialPort.open(self.emulator.link)
            _ = try self.port.configure(LineSettings(baudRate: 9600))
            self.session = BusSession(transport: self.port, line: LineSettings(baudRate: 9600), options: options)
        }

        deinit {
            self.session.close()
            try? self.port.close()
            self.emulator.terminate()
        }
    }

    /// Three meters without load (their registers stay put), in the emulator's config format.
    static func config(serials: [UInt32], register: UInt64 = 1_234_560) -> String {
        let meters = serials.enumerated().map { i, s in
            #"{"address":\#(i + 1),"serial":\#(s),"kind":"electricity","creditUnits":50000,"#
                + #""registerUnits":\#(register + UInt64(i) * 10),"peakDemand":0}"#
        }
        return #"{"meters":[\#(meters.joined(separator: ","))],"cardWriters":[]}"#
    }

    static let signer = TestSigner()

    // MARK: Modbus

    @Test func modbusReadsIdentifiesAndSwitchesTheRelay() throws {
        let bus = try Bus(["--protocol", "modbus", "--map", "mgwpm1"],
                          config: Self.config(serials: [11, 12, 13]))
        let driver = ModbusDriver(session: bus.session, map: try RegisterMaps.load("mgwpm1"))
        let identity = try driver.identify(.bus(2))
        #expect(identity.model == "metergw MGW-PM1 emulated" && identity.firmware == "1.4.0")
        // mgwpm1 has a serial register: the identity carries the meter's serial, and a read for another serial
        // at that address (a swapped meter) is refused as the native protocol refuses it.
        #expect(identity.address == .bus(2, serial: 12))
        #expect(try driver.read(.bus(2, serial: 12)).register == 1_234_570)
        do {
            _ = try driver.read(.bus(2, serial: 13))
            Issue.record("a meter with another serial was read")
        } catch .noAnswer(let evidence) {
            #expect(BusError.noAnswer(evidence).description.contains("a meter with serial 12 answers at that address "
                                                                     + "instead"))
        } catch {
            Issue.record("\(error)")
        }
        let reading = try driver.read(.bus(2))
        #expect(reading.register == 1_234_570 && reading.credit == 50_000 && reading.relay == .closed)
        #expect(reading.alarmThreshold == 10_000 && reading.cutoffThreshold == 2_000)
        #expect(reading.fields.isSuperset(of: [.register, .credit, .relay, .clock, .thresholds]))
        #expect(!reading.fields.contains(.alarms))
        #expect(reading.measurements.contains(Measurement(name: "voltage", value: 2_300, unit: "dV")))
        #expect(driver.capabilities.contains(.relay))

        let outcome = try driver.setRelay(.bus(2), to: .open, signer: Self.signer)
        #expect(outcome.relay == .open)
        #expect(try driver.read(.bus(2)).relay == .open)
        #expect(try driver.read(.bus(1)).relay == .closed)

        // Raw access: a write to a writable register, then a read of it.
        _ = try driver.request(.writeMultipleRegisters(address: 10, values: [0, 20_000]), to: 3)
        #expect(try driver.read(.bus(3)).alarmThreshold == 20_000)
        let statistics = bus.session.statistics
        #expect(statistics.bus.failed == 0 && statistics.bus.requests >= 8)
    }

    @Test func modbusWritesTheThresholdsAMapMarksWritableAndRefusesTheRest() throws {
        let bus = try Bus(["--protocol", "modbus", "--map", "mgwpm1"], config: Self.config(serials: [11]))
        let driver = ModbusDriver(session: bus.session, map: try RegisterMaps.load("mgwpm1"))
        #expect(driver.capabilities == [.relay, .thresholds])
        let outcome = try driver.setThresholds(.bus(1, serial: 11), alarm: 30_000, cutoff: 4_000, signer: Self.signer)
        #expect(outcome == ThresholdsOutcome(alarm: 30_000, cutoff: 4_000))
        let reading = try driver.read(.bus(1))
        #expect(reading.alarmThreshold == 30_000 && reading.cutoffThreshold == 4_000)
        // The meter's own rule (alarm not below cutoff) answers exception 3, a typed refusal.
        do {
            _ = try driver.setThresholds(.bus(1), alarm: 1_000, cutoff: 4_000, signer: Self.signer)
            Issue.record("an alarm below the cutoff was accepted")
        } catch .rejected(let rejection, _) {
            #expect(rejection.code == 3)
        } catch {
            Issue.record("\(error)")
        }
        // mgwpm1's clock is read-only; SDM630 has no thresholds at all: refused before anything is sent.
        let before = bus.session.statistics.bus.requests
        #expect(throws: BusError.unsupported(operation: "clock setting in register map mgwpm1 (no writable clock "
                                             + "register)", protocolName: "Modbus RTU")) {
            try driver.setClock(.bus(1), to: 1_800_000_000, signer: Self.signer)
        }
        let sdm = ModbusDriver(session: bus.session, map: try RegisterMaps.load("sdm630"))
        #expect(sdm.capabilities.isEmpty)
        #expect(throws: BusError.self) { try sdm.setThresholds(.bus(1), alarm: 1, cutoff: 0, signer: Self.signer) }
        #expect(bus.session.statistics.bus.requests == before)
    }

    @Test func modbusExceptionsAndMissingOperationsAreTypedErrors() throws {
        let bus = try Bus(["--protocol", "modbus", "--map", "mgwpm1"], config: Self.config(serials: [11]))
        let driver = ModbusDriver(session: bus.session, map: try RegisterMaps.load("mgwpm1"))
        do {
            _ = try driver.request(.readHoldingRegisters(address: 100, count: 1), to: 1)
            Issue.record("an unmapped register was read")
        } catch .rejected(let rejection, let evidence) {
            #expect(rejection.code == 2 && rejection.meaning == "illegal data address")
            #expect(evidence.label == "Modbus read holding registers 100+1")
        } catch {
            Issue.record("\(error)")
        }
        // A write to a read-only register: exception 2 as well.
        #expect(throws: BusError.self) { try driver.request(.writeSingleRegister(address: 0, value: 1), to: 1) }
        #expect(throws: BusError.unsupported(operation: "remote credit", protocolName: "Modbus RTU")) {
            try driver.applyCredit(.bus(1), purchaseSequence: 1, units: 100, signer: Self.signer)
        }
        #expect(throws: BusError.self) { try driver.read(.serial(123_456)) }
        // Nobody at address 9: no answer, with the tries counted.
        do {
            _ = try driver.read(.bus(9))
            Issue.record("address 9 answered")
        } catch .noAnswer(let evidence) {
            #expect(evidence.attempts.count == 3 && evidence.mostTelling == .nothing)
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test func modbusSweepFindsEveryServerWithProgress() throws {
        let bus = try Bus(["--protocol", "modbus", "--map", "sdm630"], config: Self.config(serials: [11, 12, 13]))
        let driver = ModbusDriver(session: bus.session, map: try RegisterMaps.load("sdm630"))
        var updates: [ScanProgress] = []
        let report = try driver.sweep(addresses: 1...6, progress: { updates.append($0) })
        #expect(report.meters.map(\.address) == [.bus(1), .bus(2), .bus(3)])
        #expect(report.method == .addressSweep && report.requests == 6 && updates.count == 6)
        #expect(updates.last?.estimatedRemainingRequests == 0 && updates.last?.found == 3)
        // The SDM630 map reads floats: kWh in float32 to integer Wh.
        let reading = try driver.read(.bus(1))
        #expect(reading.register == 1_234_560 && reading.demand == 0)
        #expect(reading.measurements.contains(Measurement(name: "frequency", value: 5_000, unit: "cHz")))
    }

    /// With the emulator's faults, every read is either the right value or a typed error: never a wrong value.
    @Test func modbusFaultsNeverGiveAWrongValue() throws {
        let bus = try Bus(["--protocol", "modbus", "--faults", "corrupt=0.15,truncate=0.1,noise=0.1,echo=0.1,"
                           + "wrong-address=0.1,drop=0.05", "--seed", "7"],
                          config: Self.config(serials: [11]))
        let driver = ModbusDriver(session: bus.session, map: try RegisterMaps.load("mgwpm1"))
        var good = 0
        for _ in 0..<30 {
            do {
                let reading = try driver.read(.bus(1))
                #expect(reading.register == 1_234_560 && reading.alarmThreshold == 10_000)
                good += 1
            } catch .noAnswer, .corrupt {
                // Allowed: a typed give-up after the retries.
            } catch {
                Issue.record("\(error)")
            }
        }
        #expect(good > 10)
        let s = bus.session.statistics.bus
        #expect(s.retries > 0 && s.crcErrors + s.partialFrames + s.garbageBytes + s.echoes + s.wrongAddress > 0)
    }

    // MARK: DL/T 645

    @Test func dlt645ReadsEnergyClockAndRelay() throws {
        let bus = try Bus(["--protocol", "dlt645"], config: Self.config(serials: [12_345_678]))
        let driver = DLT645Driver(session: bus.session)
        let meter = MeterAddress.station("000012345678")
        #expect(try driver.identify(meter).address == meter)
        let reading = try driver.read(meter)
        #expect(reading.register == 1_234_560 && reading.relay == .closed)
        #expect(reading.fields.isSuperset(of: [.register, .demand, .clock, .relay]) && !reading.fields.contains(.credit))
        #expect(reading.measurements.contains(Measurement(name: "voltageA", value: 2_300, unit: "dV")))
        let now = Int64(Date().timeIntervalSince1970)
        #expect(abs(Int64(reading.meterTime) - now) < 30)

        #expect(try driver.setRelay(meter, to: .open, signer: Self.signer).relay == .open)
        #expect(try driver.read(meter).relay == .open)
        #expect(try driver.setRelay(meter, to: .closed, signer: Self.signer).relay == .closed)

        // A wrong password: the abnormal answer's error word, decoded.
        var options = DLT645Driver.Options()
        options.password = [0x02, 0x12, 0x34, 0x56]
        let wrong = DLT645Driver(session: bus.session, options: options)
        do {
            _ = try wrong.setRelay(meter, to: .open, signer: Self.signer)
            Issue.record("a wrong password was accepted")
        } catch .rejected(let rejection, _) {
            #expect(rejection.code == 0x04 && rejection.meaning == "password wrong or unauthorized")
        } catch {
            Issue.record("\(error)")
        }
        // Another address: silence (the standard), a typed no-answer.
        #expect(throws: BusError.self) { try driver.read(.station("000012345679")) }
        #expect(throws: BusError.unsupported(operation: "remote credit", protocolName: "DL/T 645-2007")) {
            try driver.applyCredit(meter, purchaseSequence: 1, units: 1, signer: Self.signer)
        }
    }

    @Test func dlt645SetsOneMetersClockWithWriteDataAndItsPassword() throws {
        let config = Self.config(serials: [12_345_678]).replacingOccurrences(
            of: "\"peakDemand\":0", with: "\"peakDemand\":0,\"clockOffsetSeconds\":7200")
        let bus = try Bus(["--protocol", "dlt645"], config: config)
        let driver = DLT645Driver(session: bus.session)
        let meter = MeterAddress(serial: 12_345_678, station: "000012345678")
        let now = UInt32(Date().timeIntervalSince1970)
        #expect(driver.capabilities.contains(.clock) && !driver.capabilities.contains(.signedCommands))
        let outcome = try driver.setClock(meter, to: now, signer: Self.signer)
        #expect((7_190...7_260).contains(Int64(outcome.previous) - Int64(now)), "\(outcome)")
        #expect(abs(Int64(outcome.new) - Int64(now)) < 30)
        #expect(abs(Int64(try driver.read(meter).meterTime) - Int64(now)) < 30)
        // A wrong password: "unauthorized", and the clock stays.
        var options = DLT645Driver.Options()
        options.password = [0x02, 0x99, 0x99, 0x99]
        do {
            _ = try DLT645Driver(session: bus.session, options: options).setClock(meter, to: now + 5_000,
                                                                                  signer: Self.signer)
            Issue.record("a wrong password set the clock")
        } catch .rejected(let rejection, _) {
            #expect(rejection.code == 0x04)
        } catch {
            Issue.record("\(error)")
        }
        #expect(abs(Int64(try driver.read(meter).meterTime) - Int64(now)) < 30)
    }

    /// A bus of meters that send their address high byte first, with one standard meter among them: that meter's
    /// own setting wins, the others keep the bus's (the emulator is standard, so the bus's setting finds no one).
    @Test func dlt645PerMeterCompatibilityOverridesTheBus() throws {
        let bus = try Bus(["--protocol", "dlt645"], config: Self.config(serials: [12_345_678, 12_345_679]))
        var options = DLT645Driver.Options()
        options.compatibility = .reversedAddress
        options.meterCompatibility = ["000012345678": []]
        let driver = DLT645Driver(session: bus.session, options: options)
        #expect(try driver.read(.station("000012345678")).register == 1_234_560)
        #expect(throws: BusError.self) { try driver.read(.station("000012345679")) }
        #expect(driver.fromWire(DLT645Address("000012345678")!) == DLT645Address("000012345678")!)
        #expect(driver.fromWire(DLT645Address("795634120000")!) == DLT645Address("000012345679")!)
    }

    @Test func dlt645ReadsDataThatComesInFollowUpFrames() throws {
        // Two value bytes per answer: a 4-byte energy total takes the first answer and one follow-up (0x12).
        let bus = try Bus(["--protocol", "dlt645", "--dlt645-frame-bytes", "2"],
                          config: Self.config(serials: [12_345_678]))
        let driver = DLT645Driver(session: bus.session)
        let meter = MeterAddress.station("000012345678")
        let before = bus.session.statistics.bus.requests
        let reading = try driver.read(meter)
        #expect(reading.register == 1_234_560)
        #expect(reading.measurements.contains(Measurement(name: "voltageA", value: 2_300, unit: "dV")))
        #expect(abs(Int64(reading.meterTime) - Int64(Date().timeIntervalSince1970)) < 30)
        // Energy (2 frames each for forward and reverse), power (2: 3 bytes), voltage (1), current (2: 3 bytes),
        // date (2), time (2), status word 3 (1).
        #expect(bus.session.statistics.bus.requests - before == 14)
    }

    @Test func dlt645BroadcastTimeSetsTheClock() throws {
        let bus = try Bus(["--protocol", "dlt645"], config: Self.config(serials: [12_345_678]))
        let driver = DLT645Driver(session: bus.session)
        let meter = MeterAddress.station("000012345678")
        let now = UInt32(Date().timeIntervalSince1970)
        try driver.broadcastTime(now + 200)
        let clock = Int64(try driver.read(meter).meterTime) - Int64(now)
        #expect((190...260).contains(clock), "meter clock \(clock) s ahead")
    }

    @Test func dlt645ScanReadsTheAddressOfASingleMeterAndSearchesSeveral() throws {
        var options = BusSession.Options.forTests
        // The search waits out silent patterns: a short first-byte time keeps the test quick (the emulator answers
        // within milliseconds; a real bus keeps the calibrated default).
        options.responseTime = .milliseconds(25)
        options.minimumTimeout = .milliseconds(25)
        options.calibrate = false
        do {
            let bus = try Bus(["--protocol", "dlt645"], config: Self.config(serials: [12_345_678]), options: options)
            let report = try DLT645Driver(session: bus.session).scan(progress: nil)
            #expect(report.meters.map(\.address) == [.station("000012345678")] && report.requests == 1)
        }
        let bus = try Bus(["--protocol", "dlt645"], config: Self.config(serials: [12_345_678, 12_345_778, 12_345_679]),
                          options: options)
        var progress = 0
        let report = try DLT645Driver(session: bus.session).scan { _ in progress += 1 }
        #expect(Set(report.meters.map(\.address)) == [.station("000012345678"), .station("000012345778"),
                                                      .station("000012345679")])
        #expect(report.collisions >= 2 && report.complete && progress == report.requests - 1)
        #expect(report.requests == 201)
    }
}
