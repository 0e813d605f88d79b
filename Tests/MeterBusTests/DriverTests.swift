import Foundation
import MeterEmulator
import MeterEmulatorTesting
import MeterProtocol
import SerialPort
import Testing

@testable import MeterBus

extension OverPseudoTerminals {
    @Suite struct NativeDriverOperations {
        @Test func identifiesAndReadsInUnits() throws {
            try withBus(meters: testMeters(2)) { bus in
                let driver: any MeterDriver = NativeDriver(session: bus.session)
                #expect(driver.capabilities.contains([.discovery, .credit, .relay]))
                let identity = try driver.identify(.bus(2))
                #expect(identity.address == .bus(2, serial: serial(of: 2)))
                #expect(identity.kind == .electricity && identity.protocolName == "native v1")
                #expect(identity.features.contains(.remoteCredit) && identity.firmware == "0.9.0")
                let reading = try driver.read(.bus(2, serial: serial(of: 2)))
                #expect(reading.register == TestMeter.register(of: serial(of: 2)))
                #expect(reading.unit == .wattHours && reading.demandUnit == .watts)
                #expect(reading.relay == .closed && reading.lastAppliedSequence == 0)
                let bySerial = try driver.read(.serial(serial(of: 1)))
                #expect(bySerial.register == TestMeter.register(of: serial(of: 1)))
                #expect(try driver.probe(busAddress: 3, timeout: .milliseconds(30)) == nil)
            }
        }

        @Test func creditIsAppliedOnceAndRepeatsAnswerAlreadyApplied() throws {
            try withBus(meters: testMeters(1)) { bus in
                let driver = NativeDriver(session: bus.session)
                let signer = TestSigner()
                // Known by address only: the driver reads the serial the MAC covers from the meter's answer.
                let first = try driver.applyCredit(.bus(1), purchaseSequence: 1, units: 700, signer: signer)
                #expect(first.applied && first.lastAppliedSequence == 1)
                let again = try driver.applyCredit(.bus(1), purchaseSequence: 1, units: 700, signer: signer)
                #expect(!again.applied && again.credit == first.credit)
                #expect {
                    try driver.applyCredit(.bus(1), purchaseSequence: 3, units: 700, signer: signer)
                } throws: { error in
                    (error as? BusError).flatMap { if case .refused(let nak, _) = $0 { nak } else { nil } }
                        == Nak(.sequenceGap, detail: 1)
                }
                let sequence = try driver.readSequence(.bus(1))
                #expect(sequence.lastAppliedPurchase == 1 && sequence.lastCommandCounter == 1003)
                #expect(bus.state(ofMeterAt: 1).creditsApplied == 1)
            }
        }

        @Test func relayThresholdsClockAlarmsAndEvents() throws {
            try withBus(meters: testMeters(1)) { bus in
                let driver = NativeDriver(session: bus.session)
                let signer = TestSigner()
                let meter = MeterAddress.bus(1, serial: serial(of: 1))
                #expect(try driver.setRelay(meter, to: .open, signer: signer)
                        == RelayOutcome(relay: .open, reason: .remoteCommand))
                #expect(try driver.setThresholds(meter, alarm: 20_000, cutoff: 2_000, signer: signer)
                        == ThresholdsOutcome(alarm: 20_000, cutoff: 2_000))
                #expect(throws: BusError.self) {
                    try driver.setThresholds(meter, alarm: 1, cutoff: 2, signer: signer)
                }
                let clock = try driver.setClock(meter, to: 1_795_595_400, signer: signer)
                #expect(clock.new == 1_795_595_400)
                #expect(try driver.acknowledgeAlarms(meter, [.tamper], signer: signer) == [])
                let events = try driver.readEvents(meter, from: 0, maxCount: 16)
                #expect(events.nextIndex == 1 && events.events.first?.knownCode == .relayOpenedByCommand)
                let reading = try driver.read(meter)
                #expect(reading.relay == .open && reading.alarmThreshold == 20_000 && reading.cutoffThreshold == 2_000)
                // A request the caller signed itself.
                let signed = SetRelayRequest(target: .closed, auth: signer.nextAuthentication())
                #expect(try driver.command(signed, to: meter).relay == .closed)
            }
        }

        @Test func asyncCallersRunDriverOperationsOnTheBusThread() async throws {
            try await withBus(meters: testMeters(3)) { bus in
                let driver = NativeDriver(session: bus.session)
                let readings = try await withThrowingTaskGroup(of: (UInt8, UInt64).self) { group in
                    for address in UInt8(1)...3 {
                        group.addTask {
                            (address, try await driver.onBus { d throws(BusError) in try d.read(.bus(address)).register })
                        }
                    }
                    var all: [UInt8: UInt64] = [:]
                    for try await (address, register) in group { all[address] = register }
                    return all
                }
                for address in UInt8(1)...3 {
                    #expect(readings[address] == TestMeter.register(of: serial(of: address)))
                }
                // Several transactions as one job: no other caller comes in between.
                let (before, after) = try await driver.onBus { d throws(BusError) in
                    (try d.readSequence(.bus(1)), try d.readSequence(.bus(1)))
                }
                #expect(before == after)
            }
        }
    }
}
