import MetergwTestSupport
import Foundation
import MeterEmulator
import MeterEmulatorTesting
import MeterProtocol
import SerialPort
import Synchronization
import Testing

@testable import MeterBus

/// Every test here runs a bus emulator on a real pseudo-terminal; they run one at a time so that two cores serve
/// one emulator and one session at once.
@Suite(.serialized) struct OverPseudoTerminals {
    @Suite struct Transactions {
        @Test func readsStatusIdentityAndSequence() throws {
            try withBus(meters: testMeters(3)) { bus in
                let s2 = serial(of: 2)
                let status = try bus.session.transaction(ReadStatusRequest(), to: .address(2, serial: s2))
                #expect(status.registerUnits == TestMeter.register(of: s2))
                #expect(status.creditUnits == TestMeter.credit(of: s2))
                #expect(status.demand == 1)
                let identity = try bus.session.transaction(IdentifyRequest(), to: .serial(serial(of: 3)))
                #expect(identity.model == "TestMeter (simplified)")
                let frame = try bus.session.exchange(command: Command.readLastSequence.rawValue, payload: [],
                                                     to: .address(1))
                #expect(frame.serial == serial(of: 1) && frame.address == 1 && frame.isResponse)
                #expect(try LastSequence(payload: frame.payload).lastAppliedSequence == 0)

                let stats = bus.session.statistics
                #expect(stats.bus.requests == 3 && stats.bus.answered == 3 && stats.bus.failed == 0)
                #expect(stats.bus.framesSent == 3 && stats.bus.bytesSent == 45)
                // Answers: READ_STATUS 56, IDENTIFY 15 + 10 + 22, READ_LAST_SEQUENCE 24.
                #expect(stats.bus.bytesReceived == 56 + 47 + 24)
                #expect(stats.meters[.address(2, serial: s2)]?.requests == 1)
                #expect(stats.meters[.address(2, serial: s2)]?.latency.count == 1)
                #expect(stats.bus.latency.count == 3 && stats.bus.latency.p50 > 0)
                let latency = stats.bus.latency
                #expect(latency.max >= latency.p99 && latency.p99 >= latency.p50)
            }
        }

        @Test func theSessionLearnsEachMetersTurnaroundFromItsAnswers() throws {
            try withBus(meters: testMeters(2)) { bus in
                for _ in 0..<12 {
                    for address in UInt8(1)...2 {
                        let status = try bus.session.transaction(ReadStatusRequest(), to: .address(address))
                        #expect(status.registerUnits == TestMeter.register(of: serial(of: address)))
                    }
                }
                for address in UInt8(1)...2 {
                    let calibration = bus.session.calibration(for: .address(address))
                    // Five exact samples, then one transaction in eight measured exactly.
                    #expect(calibration.isCalibrated && calibration.samples >= 5)
                    // Without pacing the emulator answers before the request's modelled wire time is over: ~0.
                    #expect(calibration.p99Micros < 1_000_000)
                    #expect(bus.session.statistics.meters[.address(address)]?.turnaround.count == calibration.samples)
                }
                // Calibrated timeouts stay within the configured bounds.
                let timeout = bus.session.calibration(for: .address(1)).timeout
                #expect(timeout >= BusSession.Options.forTests.minimumTimeout)
                #expect(timeout <= BusSession.Options.forTests.maximumTimeout)
            }
        }

        @Test func aSwappedMeterStaysSilentAndTheErrorSaysSo() throws {
            try withBus(meters: testMeters(2)) { bus in
                // Address 1 holds another serial: §3 makes that meter stay silent.
                #expect {
                    try bus.session.transaction(ReadStatusRequest(), to: .address(1, serial: 999),
                                                timeout: .milliseconds(60))
                } throws: { error in
                    guard let error = error as? BusError, case .noAnswer(let evidence) = error else { return false }
                    return evidence.attempts.count == 3 && evidence.attempts.allSatisfy { $0.seen == .nothing }
                        && error.description.hasPrefix(
                            "no answer from meter 1 (serial 999) at 115200:8N1 after 3 tries")
                }
            }
        }

        @Test func broadcastIsNotAnsweredAndActsOnEveryMeter() throws {
            try withBus(meters: testMeters(3)) { bus in
                let time: UInt32 = 1_795_595_400
                try bus.session.broadcast(BroadcastTime(time: time))
                let status = try bus.session.transaction(ReadStatusRequest(), to: .address(3))
                #expect(status.meterTime >= time && status.meterTime < time + 60)
                #expect(bus.session.statistics.bus.bytesReceived == 56)
            }
        }

        @Test func concurrentThreadsQueueAndEachGetsItsOwnAnswer() throws {
            try withBus(meters: testMeters(8)) { bus in
                let session = bus.session
                let peers = (1...8).map { address in
                    PeerThread { () throws -> Int in
                        var good = 0
                        for _ in 0..<10 {
                            let a = UInt8(address)
                            let status = try session.transaction(ReadStatusRequest(), to: .address(a))
                            if status.registerUnits == TestMeter.register(of: serial(of: a)) { good += 1 }
                        }
                        return good
                    }
                }
                let results = try peers.map { try $0.value() }
                #expect(results == [Int](repeating: 10, count: 8))
                #expect(session.statistics.bus.requests == 80 && session.statistics.bus.failed == 0)
                for address in UInt8(1)...8 { #expect(bus.state(ofMeterAt: address).statusReads == 10) }
            }
        }

        @Test func concurrentTasksQueueAndEachGetsItsOwnAnswer() async throws {
            try await withBus(meters: testMeters(6)) { bus in
                let session = bus.session
                let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for i in 0..<30 {
                        let a = UInt8(i % 6 + 1)
                        group.addTask {
                            let status = try await session.transaction(ReadStatusRequest(), to: .address(a))
                            return status.registerUnits == TestMeter.register(of: serial(of: a))
                        }
                    }
                    var all: [Bool] = []
                    for try await ok in group { all.append(ok) }
                    return all
                }
                #expect(results.count == 30 && results.allSatisfy { $0 })
            }
        }

        /// Blocking callers run on their own threads when the bus is idle and queue behind tasks otherwise; the
        /// wire is still used by one transaction at a time (an overlap would garble both frames on the pty).
        @Test func threadsAndTasksTogetherUseTheWireOneAtATime() async throws {
            try await withBus(meters: testMeters(4)) { bus in
                let session = bus.session
                let threads = (1...2).map { address in
                    PeerThread { () throws -> Int in
                        var good = 0
                        for _ in 0..<12 {
                            let a = UInt8(address)
                            let status = try session.transaction(ReadStatusRequest(), to: .address(a))
                            if status.registerUnits == TestMeter.register(of: serial(of: a)) { good += 1 }
                        }
                        return good
                    }
                }
                let tasks = try await withThrowingTaskGroup(of: Bool.self) { group in
                    for i in 0..<24 {
                        let a = UInt8(i % 2 + 3)
                        group.addTask {
                            let status = try await session.transaction(ReadStatusRequest(), to: .address(a))
                            return status.registerUnits == TestMeter.register(of: serial(of: a))
                        }
                    }
                    var all: [Bool] = []
                    for try await ok in group { all.append(ok) }
                    return all
                }
                let threadResults = try threads.map { try $0.value() }
                #expect(threadResults == [12, 12])
                #expect(tasks.count == 24 && tasks.allSatisfy { $0 })
                let stats = session.statistics
                #expect(stats.bus.requests == 48 && stats.bus.failed == 0 && stats.bus.retries == 0)
                #expect(stats.bus.crcErrors == 0 && stats.bus.partialFrames == 0)
                // Inline work is the bus master's too.
                #expect(stats.masterCPUMicros > 0)
                for address in UInt8(1)...4 { #expect(bus.state(ofMeterAt: address).statusReads == 12) }
            }
        }

        @Test func aNakIsTypedAndNotRetried() throws {
            try withBus(meters: testMeters(1)) { bus in
                let signer = TestSigner()
                let gap = ApplyCreditRequest(purchaseSequence: 5, units: 100, auth: signer.nextAuthentication())
                #expect {
                    try bus.session.transaction(gap, to: .address(1))
                } throws: { error in
                    guard let error = error as? BusError, case .refused(let nak, let evidence) = error else {
                        return false
                    }
                    return nak == Nak(.sequenceGap, detail: 0) && evidence.attempts.count == 1
                        && error.description.contains("sequence gap: the meter's last applied purchase is 0")
                }
                let stats = bus.session.statistics
                #expect(stats.bus.naks == 1 && stats.bus.retries == 0 && stats.bus.framesSent == 1)
                #expect(bus.state(ofMeterAt: 1).credit == TestMeter.credit(of: serial(of: 1)))
            }
        }

        @Test func busyIsRetriedAfterTheGap() throws {
            try withBus(meters: testMeters(1)) { bus in
                bus.withMeter(at: 1) { $0.busyReplies = 1 }
                let status = try bus.session.transaction(ReadStatusRequest(), to: .address(1))
                #expect(status.registerUnits == TestMeter.register(of: serial(of: 1)))
                #expect(bus.session.statistics.bus.retries == 1 && bus.session.statistics.bus.naks == 1)

                bus.withMeter(at: 1) { $0.busyReplies = 10 }
                #expect {
                    try bus.session.transaction(ReadStatusRequest(), to: .address(1))
                } throws: { error in
                    guard let error = error as? BusError, case .refused(let nak, let evidence) = error else {
                        return false
                    }
                    return nak.knownCode == .busy && evidence.attempts.count == 3
                }
            }
        }

        @Test func aCreditWhoseAnswerWasDroppedIsRetriedWithTheSameSequenceAndAppliedOnce() throws {
            // The first seed whose plan drops the meter's first answer and delivers the second.
            let plan = try FaultPlan(parsing: "meter1:drop=0.5")
            let probe = Frame(request: ReadStatusRequest(), address: 1, sequence: 1)
            let reply = Frame(response: AlarmsRemaining(alarms: []), to: probe, address: 1, serial: 1)
            let seed = try #require((UInt64(1)...1000).first { seed in
                var injector = FaultInjector(plan: plan, seed: seed)
                return injector.shape(reply, request: probe.encoded(), from: 1, nowMs: 0) == nil
                    && injector.shape(reply, request: probe.encoded(), from: 1, nowMs: 0) != nil
            })
            let trace = TraceLog()
            var options = BusSession.Options.forTests
            options.trace = { trace.append($0) }
            try withBus(meters: testMeters(1), faults: "meter1:drop=0.5", seed: seed, options: options) { bus in
                let s1 = serial(of: 1)
                let signer = TestSigner()
                let credit = ApplyCreditRequest(purchaseSequence: 1, units: 5000, auth: signer.nextAuthentication())
                let result = try bus.session.transaction(credit, to: .address(1, serial: s1))
                #expect(result.outcome == .applied && result.lastAppliedSequence == 1)
                #expect(result.creditUnits == TestMeter.credit(of: s1) + 5000)
                let state = bus.state(ofMeterAt: 1)
                #expect(state.creditsApplied == 1 && state.credit == TestMeter.credit(of: s1) + 5000)
                // The emulator heard two requests and answered only the second.
                let emulated = bus.emulator.currentStatistics
                #expect(emulated.requests == 2 && emulated.replies == 1)
                #expect(bus.session.statistics.bus.retries == 1 && bus.session.statistics.bus.timeouts == 1)
                // Both tries carried the same bytes, SEQ included.
                let sent = trace.all.compactMap { if case .sent(let b, _, _) = $0 { b } else { nil } }
                #expect(sent.count == 2 && sent[0] == sent[1])
            }
        }

        @Test func aLateAnswerToAnEarlierSequenceIsNotTakenForTheCurrentOne() throws {
            // Meter 1 answers 250 ms late; the first transaction gives up after 3 tries of 60 ms.
            var options = BusSession.Options.forTests
            options.calibrate = false
            try withBus(meters: testMeters(1), faults: "meter1:delay@250ms", options: options) { bus in
                #expect(throws: BusError.self) {
                    try bus.session.transaction(ReadStatusRequest(), to: .address(1), timeout: .milliseconds(60))
                }
                // The three late answers (READ_STATUS, demand 1, 2, 3) arrive while the second transaction waits:
                // same command and meter, earlier SEQ. Only its own answer (demand 4) may be taken.
                let status = try bus.session.transaction(ReadStatusRequest(), to: .address(1),
                                                         timeout: .seconds(2), retries: 0)
                #expect(status.demand == 4)
                #expect(bus.session.statistics.bus.staleFrames >= 1)
            }
        }

        @Test func theTraceShowsBytesAndTiming() throws {
            let trace = TraceLog()
            var options = BusSession.Options.forTests
            options.trace = { trace.append($0) }
            try withBus(meters: testMeters(1), options: options) { bus in
                _ = try bus.session.transaction(ReadLastSequenceRequest(), to: .address(1))
                let events = trace.all
                guard case .sent(let bytes, 1, _) = events.first else {
                    Issue.record("first event is not the request: \(events)")
                    return
                }
                #expect(bytes.count == 15 && bytes[0] == 0x7E)
                let received = events.compactMap { if case .received(let b, _, _) = $0 { b } else { nil } }
                #expect(received.joined().count == 24)
                guard case .answered(let frame, _, _) = events.last else {
                    Issue.record("last event is not the answer: \(events)")
                    return
                }
                #expect(frame.serial == serial(of: 1))
                #expect(events.map(\.description).allSatisfy { $0.hasPrefix("[") && $0.contains(" ms]") })
            }
        }

        @Test func aClosedSessionSendsNothing() throws {
            try withBus(meters: testMeters(1)) { bus in
                bus.session.close()
                #expect(throws: BusError.cancelled) {
                    try bus.session.transaction(ReadStatusRequest(), to: .address(1))
                }
                #expect(bus.emulator.currentStatistics.requests == 0)
            }
        }

        @Test func aCancelledTaskSendsNothing() async throws {
            try await withBus(meters: testMeters(1)) { bus in
                let session = bus.session
                // Hold the wire so the cancelled task is still queued when it is cancelled.
                let hold = PeerThread {
                    try session.withExclusiveAccess { link throws(BusError) in
                        link.sleep(until: .now + .milliseconds(300))
                    }
                }
                try await Task.sleep(for: .milliseconds(50))
                let task = Task { try await session.transaction(ReadStatusRequest(), to: .address(1)) }
                try await Task.sleep(for: .milliseconds(50))
                task.cancel()
                let result = await task.result
                try hold.value()
                #expect(throws: BusError.cancelled) { try result.get() }
                #expect(bus.emulator.currentStatistics.requests == 0)
            }
        }

        @Test func aSlowMeterIsLearnedNotDeclaredDead() throws {
            // Every answer comes 150 ms after the request; the default allows 30 ms + 10 ms.
            var options = BusSession.Options.forTests
            options.responseTime = .milliseconds(30)
            options.minimumTimeout = .milliseconds(10)
            try withBus(meters: testMeters(1), responseDelay: .milliseconds(150), options: options) { bus in
                let before = bus.session.calibration(for: .address(1)).timeout
                #expect(before == .milliseconds(40))
                // The first transactions give up; the late answers (recognised by their SEQ) teach the session
                // the meter's turnaround, and from then on it waits long enough.
                var answered: [Bool] = []
                for _ in 0..<8 {
                    do throws(BusError) {
                        let status = try bus.session.transaction(ReadStatusRequest(), to: .address(1))
                        #expect(status.registerUnits == TestMeter.register(of: serial(of: 1)))
                        answered.append(true)
                    } catch {
                        guard case .noAnswer = error else {
                            Issue.record("unexpected \(error)")
                            return
                        }
                        answered.append(false)
                    }
                }
                let after = bus.session.calibration(for: .address(1))
                #expect(after.samples >= 1)
                #expect(after.timeout >= .milliseconds(300))
                #expect(answered.suffix(4) == [true, true, true, true], "\(answered)")
            }
        }
    }
}
