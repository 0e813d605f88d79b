import MetergwTestSupport
import Foundation
import MeterEmulator
import MeterEmulatorTesting
import MeterProtocol
import SerialPort
import Synchronization
import Testing

@testable import MeterBus

extension OverPseudoTerminals {
    @Suite struct Scanning {
        static var options: BusSession.Options {
            var o = BusSession.Options.forTests
            o.responseTime = .milliseconds(40)
            return o
        }

        /// 32 meters with random 32-bit serials (seeded), at addresses 1...32.
        static func randomMeters(seed: UInt64, count: Int = 32) -> [TestMeter] {
            var rng = SeededGenerator(state: seed)
            var serials = Set<UInt32>()
            while serials.count < count { serials.insert(UInt32.random(in: 1...0xFFFF_FFFE, using: &rng)) }
            return serials.sorted().enumerated().map { TestMeter(busAddress: UInt8($0.offset + 1), serial: $0.element) }
        }

        @Test func findsThirtyTwoRandomSerialsInFewerThanTenRequestsPerMeter() throws {
            let meters = Self.randomMeters(seed: 2026)
            let expected = Set(meters.map(\.serial))
            try withBus(meters: meters, options: Self.options) { bus in
                let progress = Mutex<[ScanProgress]>([])
                let report = try NativeDriver(session: bus.session).scan { p in progress.withLock { $0.append(p) } }
                #expect(Set(report.meters.compactMap(\.address.serial)) == expected)
                #expect(report.meters.count == 32 && report.complete && report.conflicts.isEmpty)
                #expect(report.requests < 10 * 32, "\(report.requests) requests")
                #expect(report.collisions > 0 && bus.emulator.currentStatistics.collisions > 0)
                // Every meter was confirmed by IDENTIFY and reports its bus address.
                for meter in report.meters {
                    let serial = try #require(meter.address.serial)
                    let address = try #require(meters.first { $0.serial == serial }?.busAddress)
                    #expect(meter.address.busAddress == address)
                    #expect(meter.identity?.model == "TestMeter (simplified)")
                }
                let steps = progress.withLock { $0 }
                #expect(steps.last?.found == 32 && steps.last?.requests == report.requests)
                #expect(steps.map(\.requests) == steps.map(\.requests).sorted())
                print("scan: 32 meters, \(report.requests) requests (\(report.collisions) collisions, "
                      + "\(report.silences) silences)")
            }
        }

        @Test func findsMetersWithoutAddresses() throws {
            let meters = [TestMeter(busAddress: 0, serial: 0x8000_0001), TestMeter(busAddress: 0, serial: 0x8000_0002),
                          TestMeter(busAddress: 12, serial: 0x0000_0FFF)]
            try withBus(meters: meters, options: Self.options) { bus in
                let report = try NativeDriver(session: bus.session).scan(progress: nil)
                #expect(Set(report.meters.map(\.address)) == [.serial(0x8000_0001), .serial(0x8000_0002),
                                                              .bus(12, serial: 0x0000_0FFF)])
                // Two serials that share 30 leading bits need a deep search, still far from 2^32.
                #expect(report.requests < 100)
            }
        }

        @Test func theAddressSweepFindsMetersWhereThereIsNoDiscovery() throws {
            let meters = [TestMeter(busAddress: 5, serial: 505), TestMeter(busAddress: 77, serial: 7707),
                          TestMeter(busAddress: 200, serial: 20_020)]
            try withBus(meters: meters, options: Self.options) { bus in
                let driver = NativeDriver(session: bus.session)
                let report = try driver.sweep(timeout: .milliseconds(20))
                #expect(report.method == .addressSweep && report.requests == 247)
                #expect(report.meters.map(\.address) == [.bus(5, serial: 505), .bus(77, serial: 7707),
                                                         .bus(200, serial: 20_020)])
                #expect(report.meters.allSatisfy { $0.identity?.kind == .electricity })
            }
        }
    }
}
