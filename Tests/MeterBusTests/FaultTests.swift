import MetergwTestSupport
import Foundation
import MeterEmulator
import MeterEmulatorTesting
import MeterProtocol
import SerialPort
import Testing

@testable import MeterBus

/// What a transaction under faults may end with. A wrong value is never allowed.
enum Outcome: String, Hashable, CustomStringConvertible {
    case answer, noAnswer, corrupt, refused, adapterGone, other
    var description: String { self.rawValue }
}

/// One fault plan: what may happen, what must happen at least once.
struct FaultCase: Sendable, CustomTestStringConvertible {
    var spec: String
    var allowed: Set<Outcome>
    var mustSee: Outcome?
    var transactions = 6
    var meters = 3
    var testDescription: String { self.spec }
}

extension OverPseudoTerminals {
    @Suite struct Faults {
        static let cases: [FaultCase] = [
            FaultCase(spec: "corrupt", allowed: [.corrupt, .noAnswer], mustSee: .corrupt, transactions: 3),
            FaultCase(spec: "corrupt=0.4", allowed: [.answer, .corrupt, .noAnswer], mustSee: .answer),
            FaultCase(spec: "drop", allowed: [.noAnswer], mustSee: .noAnswer, transactions: 2),
            FaultCase(spec: "drop=0.4", allowed: [.answer, .noAnswer], mustSee: .answer),
            FaultCase(spec: "noise@6", allowed: [.answer], mustSee: .answer),
            FaultCase(spec: "delay@300ms", allowed: [.answer, .noAnswer], mustSee: nil, transactions: 6, meters: 1),
            FaultCase(spec: "truncate", allowed: [.corrupt], mustSee: .corrupt, transactions: 3),
            FaultCase(spec: "mute=0.3@500ms", allowed: [.answer, .noAnswer], mustSee: .answer),
            FaultCase(spec: "echo", allowed: [.answer], mustSee: .answer),
            FaultCase(spec: "burst@16ms", allowed: [.answer], mustSee: .answer),
            FaultCase(spec: "split@30ms", allowed: [.answer], mustSee: .answer),
            FaultCase(spec: "wrong-address", allowed: [.noAnswer], mustSee: .noAnswer, transactions: 2),
            FaultCase(spec: "corrupt=0.1,drop=0.1,noise=0.2,truncate=0.1,split=0.1,echo=0.2,wrong-address=0.05,"
                          + "burst=0.1",
                      allowed: [.answer, .noAnswer, .corrupt], mustSee: .answer, transactions: 30, meters: 4),
        ]

        static var options: BusSession.Options {
            var o = BusSession.Options.forTests
            o.responseTime = .milliseconds(40)
            o.minimumTimeout = .milliseconds(30)
            return o
        }

        /// Polls the meters round robin; checks every answer against the meter it came from.
        static func poll(_ bus: EmulatedBus, meters: Int, transactions: Int) -> [Outcome] {
            (0..<transactions).map { i in
                let address = UInt8(i % meters + 1)
                do throws(BusError) {
                    let status = try bus.session.transaction(ReadStatusRequest(), to: .address(address))
                    let expected = TestMeter.register(of: serial(of: address))
                    guard status.registerUnits == expected else {
                        Issue.record("meter \(address) answered register \(status.registerUnits), not \(expected)")
                        return .other
                    }
                    return .answer
                } catch {
                    switch error {
                    case .noAnswer: return .noAnswer
                    case .corrupt: return .corrupt
                    case .refused: return .refused
                    case .adapterGone: return .adapterGone
                    default:
                        Issue.record("unexpected error \(error)")
                        return .other
                    }
                }
            }
        }

        @Test(arguments: Self.cases)
        func eachFaultGivesTheAnswerOrTheRightTypedError(_ fault: FaultCase) throws {
            try withBus(meters: testMeters(fault.meters), faults: fault.spec, seed: 7, options: Self.options) { bus in
                let outcomes = Self.poll(bus, meters: fault.meters, transactions: fault.transactions)
                #expect(Set(outcomes).isSubset(of: fault.allowed), "\(outcomes)")
                if let must = fault.mustSee { #expect(outcomes.contains(must), "\(outcomes)") }
                let stats = bus.session.statistics.bus
                #expect(stats.requests == fault.transactions)
                #expect(stats.answered == outcomes.filter { $0 == .answer }.count)
            }
        }

        @Test func damageIsCountedAndTheErrorShowsTheBytes() throws {
            try withBus(meters: testMeters(1), faults: "truncate", seed: 3, options: Self.options) { bus in
                #expect {
                    try bus.session.transaction(ReadStatusRequest(), to: .address(1))
                } throws: { error in
                    guard let error = error as? BusError, case .corrupt(let evidence) = error else { return false }
                    let partial = evidence.attempts.allSatisfy {
                        if case .partialFrame(let bytes) = $0.seen { bytes.first == 0x7E } else { false }
                    }
                    return partial && evidence.attempts.count == 3
                        && error.description.contains("were damaged in 3 of 3 tries")
                        && evidence.verboseDescription.contains("sent (each try): 7E 01 00 01")
                        && evidence.verboseDescription.contains("    +")
                }
                #expect(bus.session.statistics.bus.partialFrames == 3)
            }
        }

        @Test func theEchoIsSkippedAndCounted() throws {
            try withBus(meters: testMeters(2), faults: "echo", options: Self.options) { bus in
                for address in UInt8(1)...2 {
                    let status = try bus.session.transaction(ReadStatusRequest(), to: .address(address))
                    #expect(status.registerUnits == TestMeter.register(of: serial(of: address)))
                }
                let stats = bus.session.statistics
                #expect(stats.echoDetected && stats.bus.echoes == 2 && stats.bus.retries == 0)
            }
        }

        @Test func onlyAnEchoIsReportedAsSuch() throws {
            // A half-duplex adapter that echoes every request, on a bus where no meter answers.
            let pair = try PseudoTerminalPair()
            defer { try? pair.close() }
            let port = try SerialPort.open(pair.subordinatePath)
            defer { try? port.close() }
            let line = LineSettings(baudRate: 115_200)
            _ = try port.configure(line)
            let session = BusSession(transport: port, line: line, options: Self.options)
            defer { session.close() }
            let adapter = PeerThread { () throws -> Int in
                var echoed = 0
                while echoed < 3 * 15 {
                    let bytes = try pair.read(upTo: 64, deadline: .now + .seconds(10))
                    try pair.write(bytes, deadline: .now + .seconds(1))
                    echoed += bytes.count
                }
                return echoed
            }
            #expect {
                try session.transaction(ReadStatusRequest(), to: .address(9))
            } throws: { error in
                guard let error = error as? BusError, case .noAnswer(let evidence) = error else { return false }
                return evidence.attempts.allSatisfy { $0.seen == .onlyEcho }
                    && error.description.contains("only the adapter's echo of the request came back")
            }
            #expect(try adapter.value() == 45)
            #expect(session.statistics.bus.echoes == 3 && session.statistics.echoDetected)
        }

        @Test func aWrongAddressIsNeverTakenAndNamed() throws {
            try withBus(meters: testMeters(1), faults: "wrong-address", options: Self.options) { bus in
                #expect {
                    try bus.session.transaction(ReadStatusRequest(), to: .address(1))
                } throws: { error in
                    guard let error = error as? BusError, case .noAnswer(let evidence) = error else { return false }
                    return evidence.mostTelling == .wrongAddress(address: 2, serial: serial(of: 1))
                        && error.description.contains("address 2 (serial \(serial(of: 1))) answered instead")
                }
                #expect(bus.session.statistics.bus.wrongAddress == 3)
            }
        }

        @Test func aVanishedAdapterIsAdapterGoneNeverSilence() throws {
            try withBus(meters: testMeters(2), faults: "vanish", options: Self.options) { bus in
                var errors: [BusError] = []
                for i in 0..<4 {
                    let address = UInt8(i % 2 + 1)
                    do throws(BusError) {
                        let status = try bus.session.transaction(ReadStatusRequest(), to: .address(address))
                        #expect(status.registerUnits == TestMeter.register(of: serial(of: address)))
                    } catch {
                        errors.append(error)
                    }
                }
                #expect(!errors.isEmpty)
                for error in errors {
                    guard case .adapterGone(let path) = error else {
                        Issue.record("expected adapterGone, got \(error)")
                        continue
                    }
                    #expect(path == bus.port.path)
                    #expect(error.description.contains("this is not a silent meter"))
                }
            }
        }
    }
}
