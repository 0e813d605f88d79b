import MetergwTestSupport
import Foundation
import MeterProtocol
import Prepaid
import SerialPort
import Testing

/// meter-emulator as a separate process, over its real pseudo-terminal, from the outside.
@Suite(.serialized) struct EmulatorTests {
    @Test func identifyStatusAndEvents() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "2"])
        let master = try PlainMaster(link: emulator.link)
        let identity = try master.ask(IdentifyRequest(), address: 2).get()
        #expect(identity.kind == .electricity && identity.keyRevision == 1)
        #expect(identity.capabilities.contains([.relay, .remoteCredit, .cardReader]))
        let status = try master.ask(ReadStatusRequest(), address: 1).get()
        #expect(status.creditUnits <= 50_000 && status.creditUnits > 49_000)
        #expect(status.relay == .closed && status.lastAppliedSequence == 0)
        let events = try master.ask(ReadEventsRequest(fromIndex: 0, maxCount: 16), address: 1).get()
        #expect(events.events.first?.knownCode == .powerUp)
        // A request for a serial that is not at this address gets silence, not someone else's data.
        let wrong = Frame(request: ReadStatusRequest(), address: 1, serial: 12345, sequence: 99)
        #expect(PlainMaster.frames(try master.exchange(wrong)).isEmpty)
        #expect(emulator.terminate() == 0)
    }

    @Test func remoteCreditGenuineRepeatedForgedAndGap() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "2"])
        let master = try PlainMaster(link: emulator.link)
        let signer = try emulator.signer(address: 1)
        let credit = signer.applyCredit(sequence: 1, units: 10_000, counter: 1)
        let first = try master.ask(credit, address: 1).get()
        #expect(first.outcome == .applied && first.lastAppliedSequence == 1)
        // The very same command again (a retry after a lost answer): the stored answer, nothing added.
        let repeated = try master.ask(credit, address: 1).get()
        #expect(repeated == first)
        // The same purchase in a new command: already applied.
        let again = try master.ask(signer.applyCredit(sequence: 1, units: 10_000, counter: 2), address: 1).get()
        #expect(again.outcome == .alreadyApplied && again.creditUnits <= first.creditUnits)
        // A replayed counter, a forged MAC, a gap, and meter 2's command sent to meter 1.
        #expect(try master.ask(signer.applyCredit(sequence: 2, units: 5, counter: 2), address: 1)
                == .failure(Nak(.replayedCommand, detail: 2)))
        var forged = signer.applyCredit(sequence: 2, units: 5_000_000, counter: 3)
        forged.units = 5_000_001
        #expect(try master.ask(forged, address: 1) == .failure(Nak(.authenticationFailed)))
        #expect(try master.ask(signer.applyCredit(sequence: 3, units: 5, counter: 4), address: 1)
                == .failure(Nak(.sequenceGap, detail: 1)))
        let other = try emulator.signer(address: 2).applyCredit(sequence: 2, units: 5, counter: 10)
        #expect(try master.ask(other, address: 1) == .failure(Nak(.authenticationFailed)))
        let status = try master.ask(ReadStatusRequest(), address: 1).get()
        #expect(status.lastAppliedSequence == 1 && status.creditUnits > 50_000 && status.creditUnits <= 60_000)
        #expect(emulator.terminate() == 0)
    }

    @Test func relayThresholdsClockAndAlarms() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "1"])
        let master = try PlainMaster(link: emulator.link)
        let signer = try emulator.signer(address: 1)
        #expect(try master.ask(signer.setRelay(.open, counter: 1), address: 1).get()
                == RelayStatus(relay: .open, reason: .remoteCommand))
        #expect(try master.ask(ReadStatusRequest(), address: 1).get().relay == .open)
        #expect(try master.ask(signer.setRelay(.closed, counter: 2), address: 1).get().relay == .closed)
        let thresholds = Thresholds(alarmUnits: 30_000, cutoffUnits: 3_000)
        #expect(try master.ask(signer.setThresholds(thresholds, counter: 3), address: 1).get() == thresholds)
        #expect(try master.ask(signer.setThresholds(Thresholds(alarmUnits: 1, cutoffUnits: 5), counter: 4),
                               address: 1) == .failure(Nak(.valueOutOfRange)))
        let target = UInt32(Date().timeIntervalSince1970) + 3600
        let change = try master.ask(signer.setClock(target, counter: 5), address: 1).get()
        #expect(change.newTime >= target && change.newTime < target + 30)
        let remaining = try master.ask(signer.acknowledgeAlarms([.tamper], counter: 6), address: 1).get()
        #expect(!remaining.alarms.contains(.tamper))
        let events = try master.ask(ReadEventsRequest(fromIndex: 0, maxCount: 16), address: 1).get()
        let codes = events.events.compactMap(\.knownCode)
        #expect(codes.contains(.relayOpenedByCommand) && codes.contains(.relayClosedByCommand))
        #expect(codes.contains(.thresholdsChanged) && codes.contains(.clockSet))
        #expect(emulator.terminate() == 0)
    }

    @Test func cardWriterReadWriteEraseThroughTheControlSocket() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "1", "--card-writer"])
        let master = try PlainMaster(link: emulator.link)
        #expect(try master.ask(ReadCardRequest(offset: 0, length: 16), address: 100) == .failure(Nak(.noCard)))
        let card = dir.appendingPathComponent("card.bin")
        try Data((0..<256).map { UInt8($0) }).write(to: card)
        let insert = try ControlClient.run(["card", "insert", "--link", emulator.link, "--file", card.path])
        #expect(insert.contains("\"insertion\":1"))
        #expect(try master.ask(CardPresenceRequest(), address: 100).get()
                == CardPresence(media: .memory256, capacity: 256, insertion: 1))
        #expect(try master.ask(ReadCardRequest(offset: 250, length: 6), address: 100).get().data
                == [250, 251, 252, 253, 254, 255])
        _ = try master.ask(WriteCardRequest(insertion: 1, offset: 0, data: [0xAA, 0xBB]), address: 100).get()
        let out = dir.appendingPathComponent("out.bin")
        _ = try ControlClient.run(["card", "remove", "--link", emulator.link, "--out", out.path])
        let written = [UInt8](try Data(contentsOf: out))
        #expect(written.prefix(3) == [0xAA, 0xBB, 2] && written.count == 256)
        #expect(try master.ask(EraseCardRequest(insertion: 1), address: 100) == .failure(Nak(.noCard)))
        #expect(emulator.terminate() == 0)
    }

    /// A user card issued by the desk, held to the meter: credit loaded once, consumption written back.
    @Test func userCardAtTheMeter() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "1"])
        let serial = emulator.serial(ofAddress: 1)
        let issuer = CardIssuer(keys: try emulator.keys)
        let image = issuer.userCard(
            cardSerial: 501, generation: 1, meterSerial: serial, revision: 1, accountNumber: 42, unitKind: .wattHours,
            credit: .init(firstSequence: 1, lastSequence: 2, units: 30_000), issueTime: 1_795_595_400)
        let card = dir.appendingPathComponent("user.bin")
        try Data(image).write(to: card)
        let back = dir.appendingPathComponent("back.bin")
        let first = try ControlClient.run(["card", "insert", "--link", emulator.link, "--device", "1",
                                           "--file", card.path, "--out", back.path])
        #expect(first.contains("creditApplied"))
        let written = try CardImage(bytes: [UInt8](try Data(contentsOf: back)))
        #expect(written.writeBack?.lastAppliedSequence == 2 && written.writeBack?.meterSerial == serial)
        #expect(issuer.meterMACVerifies([UInt8](try Data(contentsOf: back))) == true)
        let second = try ControlClient.run(["card", "insert", "--link", emulator.link, "--device", "1",
                                            "--file", back.path])
        #expect(second.contains("alreadyApplied"))
        let master = try PlainMaster(link: emulator.link)
        let status = try master.ask(ReadStatusRequest(), address: 1).get()
        #expect(status.lastAppliedSequence == 2 && status.creditUnits > 70_000 && status.creditUnits <= 80_000)
        #expect(emulator.terminate() == 0)
    }

    /// DISCOVER by prefix: several matching meters answer at once and collide; one match answers cleanly.
    @Test func discoveryCollisions() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "3"])
        let master = try PlainMaster(link: emulator.link)
        let everyone = Frame(request: DiscoverRequest(prefixBits: 0, prefix: 0), address: 0, sequence: 1)
        let items = try master.exchange(everyone)
        #expect(!items.isEmpty)
        #expect(PlainMaster.frames(items).count < 3, "three answers at once must not all survive")
        let serial = emulator.serial(ofAddress: 2)
        let one = Frame(request: DiscoverRequest(prefixBits: 32, prefix: serial), address: 0, sequence: 2)
        let single = try master.exchange(one)
        #expect(single.count == 1)
        #expect(PlainMaster.frames(single).first?.serial == serial)
        #expect(emulator.terminate() == 0)
    }

    /// SIGTERM removes the link and saves; a restart continues, and a credit applied before is already applied.
    /// SIGKILL right after an answer loses nothing: state is saved before the answer is sent.
    @Test func stateSurvivesRestartsAndCrashes() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let state = dir.appendingPathComponent("state.json").path
        var emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "2", "--state", state])
        let signer = try emulator.signer(address: 1)
        do {
            let master = try PlainMaster(link: emulator.link)
            #expect(try master.ask(signer.applyCredit(sequence: 1, units: 1_000, counter: 1), address: 1).get()
                    .outcome == .applied)
        }
        #expect(emulator.terminate() == 0)
        #expect(!FileManager.default.fileExists(atPath: emulator.link))
        #expect(!FileManager.default.fileExists(atPath: emulator.link + ".ctl"))
        #expect(FileManager.default.fileExists(atPath: state))

        emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "2", "--state", state])
        do {
            let master = try PlainMaster(link: emulator.link)
            #expect(try master.ask(ReadLastSequenceRequest(), address: 1).get().lastAppliedSequence == 1)
            #expect(try master.ask(signer.applyCredit(sequence: 1, units: 1_000, counter: 2), address: 1).get()
                    .outcome == .alreadyApplied)
            #expect(try master.ask(signer.applyCredit(sequence: 2, units: 1_000, counter: 2), address: 1)
                    == .failure(Nak(.replayedCommand, detail: 2)))
            #expect(try master.ask(signer.applyCredit(sequence: 2, units: 1_000, counter: 3), address: 1).get()
                    .outcome == .applied)
        }
        emulator.kill()
        // A crashed run leaves a stale link; the next run replaces it.
        emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "2", "--state", state])
        let master = try PlainMaster(link: emulator.link)
        #expect(try master.ask(ReadLastSequenceRequest(), address: 1).get()
                == LastSequence(lastAppliedSequence: 2, lastCommandCounter: 3, keyRevision: 1))
        #expect(emulator.terminate() == 0)
    }

    /// A day of load per second: the alarm comes before the cutoff, and credit brings supply back.
    @Test func acceleratedConsumptionCrossesThresholdsInOrder() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let config = dir.appendingPathComponent("meters.json")
        try Data("""
            {"meters": [{"address": 1, "serial": 777001, "kind": "electricity", "creditUnits": 12000,
                         "alarmThresholdUnits": 8000, "cutoffThresholdUnits": 3000, "peakDemand": 6000}],
             "cardWriters": []}
            """.utf8).write(to: config)
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--config", config.path, "--speed", "86400"])
        let master = try PlainMaster(link: emulator.link)
        var status = try master.ask(ReadStatusRequest(), address: 1).get()
        let deadline = Date().addingTimeInterval(60)  // a failure guard: it takes well under a second
        while status.relay == .closed && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            status = try master.ask(ReadStatusRequest(), address: 1).get()
        }
        #expect(status.relay == .open)
        #expect(status.alarms.contains(.lowCredit))
        let codes = try master.ask(ReadEventsRequest(fromIndex: 0, maxCount: 16), address: 1).get().events
            .compactMap(\.knownCode)
        let alarm = try #require(codes.firstIndex(of: .lowCreditAlarm))
        let cutoff = try #require(codes.firstIndex(of: .cutoff))
        #expect(alarm < cutoff)
        let signer = CommandSigner(keys: try emulator.keys.meter(serial: 777_001, revision: 1))
        let credit = try master.ask(signer.applyCredit(sequence: 1, units: 100_000, counter: 1), address: 1).get()
        #expect(credit.outcome == .applied)
        #expect(try master.ask(ReadStatusRequest(), address: 1).get().relay == .closed)
        #expect(emulator.terminate() == 0)
    }

    @Test func badArgumentsAndOccupiedLinksAreRefused() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let occupied = dir.appendingPathComponent("bus")
        try Data("not a link".utf8).write(to: occupied)
        let r = try ControlClient.run(["--link", occupied.path, "--meters", "1"], expectFailure: true)
        #expect(r.contains("already exists"))
        let faults = try ControlClient.run(["--link", dir.appendingPathComponent("b2").path, "--faults", "explode"],
                                           expectFailure: true)
        #expect(faults.contains("unknown fault kind"))
    }
}

/// Runs `meter-emulator` subcommands (card, status) and returns what they print.
enum ControlClient {
    static func run(_ arguments: [String], expectFailure: Bool = false) throws -> String {
        let (status, text) = try EmulatorProcess.command(arguments, includeErrors: true)
        if (status == 0) == expectFailure {
            throw EmulatorProcess.Failure("meter-emulator \(arguments.joined(separator: " ")): \(text)")
        }
        return text
    }
}

@Suite(.serialized) struct EmulatorPacingTests {
    /// With --pace at 1200 baud a reply leaves one character time per byte, so it reaches the master in many
    /// small pieces instead of one write (observed as pieces, never as elapsed time).
    @Test func pacedRepliesArriveByteByByte() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "1", "--pace", "--line", "1200:8N1"])
        let master = try PlainMaster(link: emulator.link)
        let request = Frame(request: ReadStatusRequest(), address: 1, sequence: 1)
        try master.port.write(request.encoded(), deadline: .now + .seconds(5))
        var pieces = 0
        var decoder = FrameDecoder()
        var frame: Frame?
        while frame == nil {
            decoder.append(try master.port.read(upTo: 4096, deadline: .now + .seconds(10)))
            pieces += 1
            if case .frame(let f, _) = decoder.next() { frame = f }
        }
        #expect(frame?.sequence == 1)
        #expect(pieces > 10, "a 56-byte reply paced at 1200 baud came in \(pieces) pieces")
        _ = emulator.terminate()
    }

    /// Frames the meter cannot read are answered with NAKs and counted.
    @Test func unreadableRequestsAreNakedAndCounted() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let emulator = try EmulatorProcess(directory: dir, arguments: ["--meters", "1"])
        let master = try PlainMaster(link: emulator.link)
        var bad = Frame(request: ReadEventsRequest(fromIndex: 0, maxCount: 1), address: 1, sequence: 3)
        bad.payload.append(0xEE)
        let frames = PlainMaster.frames(try master.exchange(bad))
        #expect(frames.first?.decodeMessage() == .nak(Nak(.malformedPayload)))
        let unknown = Frame(address: 1, sequence: 4, command: 0x3E)
        #expect(PlainMaster.frames(try master.exchange(unknown)).first?.decodeMessage() == .nak(Nak(.unknownCommand)))
        var newer = Frame(address: 1, sequence: 5, command: .identify)
        newer.version = 2
        let refusal = PlainMaster.frames(try master.exchange(newer)).first
        #expect(refusal?.decodeMessage() == .nak(Nak(.unsupportedVersion, detail: 1)) && refusal?.version == 1)
        // Bytes that are no frame at all are counted too.
        try master.port.write([0x00, 0x11, 0x22], deadline: .now + .seconds(5))
        _ = try master.exchange(Frame(request: IdentifyRequest(), address: 1, sequence: 6))
        let status = try ControlClient.run(["status", "--link", emulator.link])
        #expect(status.contains("\"unreadable\":3"))
        #expect(status.contains("\"garbageBytes\":3"))
        _ = emulator.terminate()
    }
}
