import MetergwTestSupport
import Foundation
import MeterEmulator
import MeterEmulatorTesting
import MeterProtocol
import SerialPort
import Synchronization
import Testing

@testable import MeterBus

/// A bus emulator with test meters on a real pseudo-terminal, its run loop on its own thread (never a Swift task:
/// the cooperative pool has two threads here), a SerialPort opened on the link, and a session over it.
final class EmulatedBus: @unchecked Sendable {
    let emulator: BusEmulator
    let port: SerialPort
    let session: BusSession
    let line: LineSettings
    private let directory: String
    private let stopped = DispatchSemaphore(value: 0)

    init(
        meters: [any EmulatedDevice], line: LineSettings = LineSettings(baudRate: 115_200), pace: Bool = false,
        faults: String = "", seed: UInt64 = 1, responseDelay: Duration? = nil,
        options: BusSession.Options = .forTests
    ) throws {
        self.directory = NSTemporaryDirectory() + "metergw-bus-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let link = self.directory + "/bus"
        let plan = try FaultPlan(parsing: faults)
        self.emulator = try BusEmulator(
            options: BusEmulator.Options(linkPath: link, line: line, pace: pace, responseDelay: responseDelay,
                                         faults: plan, seed: seed),
            devices: meters)
        self.line = line
        self.port = try SerialPort.open(link)
        _ = try self.port.configure(line)
        self.session = BusSession(transport: self.port, line: line, options: options)
        let emulator = self.emulator
        let stopped = self.stopped
        let thread = Thread {
            try? emulator.run()
            stopped.signal()
        }
        thread.name = "emulator"
        thread.start()
    }

    /// Stops everything; safe to call once at the end of a test.
    func shutdown() {
        self.session.close()
        self.emulator.stop()
        self.stopped.wait()
        self.emulator.close()
        try? self.port.close()
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// A copy of a test meter's state, read under the emulator's lock.
    func state(ofMeterAt address: UInt8) -> TestMeter.State {
        self.emulator.withDevices { devices in
            (devices.first { $0.busAddress == address } as! TestMeter).state
        }
    }

    func withMeter<T>(at address: UInt8, _ body: (TestMeter) -> T) -> T {
        self.emulator.withDevices { devices in body(devices.first { $0.busAddress == address } as! TestMeter) }
    }
}

/// Runs `body` with a bus and always shuts it down.
@discardableResult
func withBus<T>(
    meters: [any EmulatedDevice], line: LineSettings = LineSettings(baudRate: 115_200), pace: Bool = false,
    faults: String = "", seed: UInt64 = 1, responseDelay: Duration? = nil, options: BusSession.Options = .forTests,
    _ body: (EmulatedBus) throws -> T
) throws -> T {
    let bus = try EmulatedBus(meters: meters, line: line, pace: pace, faults: faults, seed: seed,
                              responseDelay: responseDelay, options: options)
    defer { bus.shutdown() }
    return try body(bus)
}

@discardableResult
func withBus<T>(
    meters: [any EmulatedDevice], line: LineSettings = LineSettings(baudRate: 115_200), faults: String = "",
    seed: UInt64 = 1, options: BusSession.Options = .forTests, _ body: (EmulatedBus) async throws -> T
) async throws -> T {
    let bus = try EmulatedBus(meters: meters, line: line, faults: faults, seed: seed, options: options)
    defer { bus.shutdown() }
    return try await body(bus)
}

extension BusSession.Options {
    /// Generous timeouts: in tests they are failure guards, not what is tested (two cores, builds alongside).
    static var forTests: BusSession.Options {
        var o = BusSession.Options()
        o.responseTime = .milliseconds(100)
        o.adapterLatency = .milliseconds(10)
        o.minimumTimeout = .milliseconds(60)
        o.maximumTimeout = .seconds(2)
        return o
    }
}

/// Meters at addresses 1...count with serials derived from the address.
func testMeters(_ count: Int, serialBase: UInt32 = 20_250_000) -> [TestMeter] {
    (1...count).map { TestMeter(busAddress: UInt8($0), serial: serialBase + UInt32($0)) }
}

func serial(of address: UInt8, base: UInt32 = 20_250_000) -> UInt32 { base + UInt32(address) }

/// Fills the trailer with an increasing counter and a fixed MAC: for test meters, which check no MAC.
final class TestSigner: RequestSigner, Sendable {
    private let counter: Mutex<UInt32>
    private let keyRevision: UInt8

    init(startCounter: UInt32 = 1000, keyRevision: UInt8 = 1) {
        self.counter = Mutex(startCounter)
        self.keyRevision = keyRevision
    }

    func nextAuthentication() -> Authentication {
        let counter = self.counter.withLock { c in
            c += 1
            return c
        }
        return Authentication(counter: counter, keyRevision: self.keyRevision,
                              mac: [0x7E, 0x57, 0, 0, 0, 0, UInt8(truncatingIfNeeded: counter >> 8),
                                    UInt8(truncatingIfNeeded: counter)])
    }

    func sign<R: AuthenticatedRequest>(_ request: R, serial: UInt32) -> R {
        var signed = request
        signed.auth = self.nextAuthentication()
        return signed
    }
}

/// Records trace events.
final class TraceLog: Sendable {
    private let events = Mutex<[BusTraceEvent]>([])
    func append(_ event: BusTraceEvent) { self.events.withLock { $0.append(event) } }
    var all: [BusTraceEvent] { self.events.withLock { $0 } }
}
