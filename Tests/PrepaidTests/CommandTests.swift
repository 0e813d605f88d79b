import MeterProtocol
import Testing
@testable import Prepaid

@Suite struct CommandTests {
    static let keys = TestKeys.meter()
    static let signer = CommandSigner(keys: keys)
    static let now = TestKeys.time

    /// The PROTOCOL.md §9 APPLY_CREDIT example with its real MAC under the test key (docs/CARD.md §3.4).
    @Test func theProtocolExampleSignedWithTheTestKey() {
        let request = Self.signer.applyCredit(sequence: 42, units: 100_000, counter: 1004)
        #expect(hexString(request.authenticatedBytes(serial: TestKeys.serial))
                == "4D 47 57 31 07 01 35 01 F5 00 00 00 2A 00 01 86 A0 00 00 03 EC 01")
        #expect(hexString(request.auth.mac) == "63 FC 85 40 DF 8F AA BA")
        let frame = Frame(request: request, address: 5, serial: TestKeys.serial, sequence: 7)
        #expect(hexString(frame.encoded()) == "7E 01 00 05 01 35 01 F5 07 07 00 15 CC 00 00 00 2A 00 01 86 A0 00 00 "
                + "03 EC 01 63 FC 85 40 DF 8F AA BA 78 FA")
        #expect(CommandAuthentication.verify(request, keys: Self.keys))
        #expect(!CommandAuthentication.verify(request, keys: TestKeys.meter(TestKeys.serial + 1)))
    }

    static func freshMeter() -> PrepaidMeter {
        PrepaidMeter(serial: TestKeys.serial, kind: .electricity, issuerID: 1, now: now)
    }

    /// Every bit of every signed command type, flipped, is refused and changes nothing.
    @Test func everyBitFlipOfASignedCommandIsRefused() throws {
        let payloads: [(String, [UInt8])] = [
            ("apply-credit", Self.signer.applyCredit(sequence: 1, units: 5000, counter: 10).payload),
            ("set-relay", Self.signer.setRelay(.open, counter: 10).payload),
            ("set-thresholds",
             Self.signer.setThresholds(Thresholds(alarmUnits: 500, cutoffUnits: 100), counter: 10).payload),
            ("set-clock", Self.signer.setClock(Self.now + 100, counter: 10).payload),
            ("ack-alarms", Self.signer.acknowledgeAlarms([.tamper], counter: 10).payload),
            ("set-address",
             CommandSigner.setAddress(7, serial: TestKeys.serial, counter: 10, tool: Self.keys.tool).payload),
        ]
        var checked = 0
        for (name, payload) in payloads {
            // Unflipped, each is accepted by a fresh meter.
            var control = Self.freshMeter()
            #expect(try Self.run(name, payload, on: &control) == nil, "\(name) unflipped")
            for byte in payload.indices {
                for bit in 0..<8 {
                    var flipped = payload
                    flipped[byte] ^= 1 << bit
                    var meter = Self.freshMeter()
                    let before = meter
                    let nak = try Self.run(name, flipped, on: &meter)
                    #expect(nak != nil && nak?.knownCode != nil, "\(name) byte \(byte) bit \(bit) accepted")
                    if let code = nak?.knownCode {
                        #expect([.authenticationFailed, .keyRevisionMismatch, .malformedPayload].contains(code))
                    }
                    #expect(meter == before, "\(name) byte \(byte) bit \(bit) changed the meter")
                    checked += 1
                }
            }
        }
        #expect(checked > 500)
    }

    /// Decodes and handles a payload; returns the NAK, nil when accepted, or MALFORMED_PAYLOAD when it does not parse.
    static func run(_ name: String, _ payload: [UInt8], on meter: inout PrepaidMeter) throws -> Nak? {
        func nak<T>(_ r: Result<T, Nak>) -> Nak? { if case .failure(let n) = r { n } else { nil } }
        do {
            switch name {
            case "apply-credit":
                return nak(meter.handle(applyCredit: try .init(payload: payload), keys: keys, now: now))
            case "set-relay": return nak(meter.handle(setRelay: try .init(payload: payload), keys: keys, now: now))
            case "set-thresholds":
                return nak(meter.handle(setThresholds: try .init(payload: payload), keys: keys, now: now))
            case "set-clock": return nak(meter.handle(setClock: try .init(payload: payload), keys: keys, now: now))
            case "ack-alarms":
                return nak(meter.handle(acknowledgeAlarms: try .init(payload: payload), keys: keys, now: now))
            case "set-address": return nak(meter.handle(setAddress: try .init(payload: payload), keys: keys, now: now))
            default: Issue.record("unknown \(name)"); return nil
            }
        } catch {
            return Nak(.malformedPayload)
        }
    }

    @Test func aCommandForMeterAIsRefusedByMeterB() {
        var b = PrepaidMeter(serial: TestKeys.serial + 1, kind: .electricity, issuerID: 1, now: Self.now)
        let request = Self.signer.applyCredit(sequence: 1, units: 5000, counter: 1)
        #expect(b.handle(applyCredit: request, keys: TestKeys.meter(TestKeys.serial + 1), now: Self.now)
                == .failure(Nak(.authenticationFailed)))
        #expect(b.creditUnits == 0)
    }

    /// §5.2: a repeat of the last accepted command gets the same answer and is not executed again; any other
    /// command at or below the last counter is a replay.
    @Test func repeatsAndReplays() {
        var meter = Self.freshMeter()
        let credit = Self.signer.applyCredit(sequence: 1, units: 5000, counter: 100)
        let first = meter.handle(applyCredit: credit, keys: Self.keys, now: Self.now)
        #expect(first == .success(CreditResult(outcome: .applied, lastAppliedSequence: 1, creditUnits: 5000)))
        let eventsAfterFirst = meter.nextEventIndex
        let repeated = meter.handle(applyCredit: credit, keys: Self.keys, now: Self.now + 5)
        #expect(repeated == first)  // "applied", the first answer, not "already applied"
        #expect(meter.creditUnits == 5000)
        #expect(meter.nextEventIndex == eventsAfterFirst)
        // The same purchase under a new counter: already applied, nothing added.
        let again = Self.signer.applyCredit(sequence: 1, units: 5000, counter: 101)
        #expect(meter.handle(applyCredit: again, keys: Self.keys, now: Self.now)
                == .success(CreditResult(outcome: .alreadyApplied, lastAppliedSequence: 1, creditUnits: 5000)))
        // The first command is no longer the last accepted one: a replay now.
        #expect(meter.handle(applyCredit: credit, keys: Self.keys, now: Self.now)
                == .failure(Nak(.replayedCommand, detail: 101)))
        // Another command type with the same counter as the last: a replay, not a repeat.
        #expect(meter.handle(setRelay: Self.signer.setRelay(.open, counter: 101), keys: Self.keys, now: Self.now)
                == .failure(Nak(.replayedCommand, detail: 101)))
        #expect(meter.relay == .closed)
        // A refused command uses its counter up and its repeat gets the same NAK.
        let gap = Self.signer.applyCredit(sequence: 3, units: 1, counter: 102)
        #expect(meter.handle(applyCredit: gap, keys: Self.keys, now: Self.now)
                == .failure(Nak(.sequenceGap, detail: 1)))
        #expect(meter.handle(applyCredit: Self.signer.applyCredit(sequence: 2, units: 1, counter: 103), keys: Self.keys,
                             now: Self.now).map(\.outcome) == .success(.applied))
        // Counter 102's repeat is no longer the last: replayed even though sequence 3 would now fit.
        #expect(meter.handle(applyCredit: gap, keys: Self.keys, now: Self.now)
                == .failure(Nak(.replayedCommand, detail: 103)))
        #expect(meter.lastAppliedSequence == 2 && meter.creditUnits == 5001)
        #expect(meter.lastSequence == LastSequence(lastAppliedSequence: 2, lastCommandCounter: 103, keyRevision: 1))
    }

    /// Card and remote credit share one sequence space: neither can load a purchase the other loaded.
    @Test func cardsAndCommandsCannotDoubleLoad() {
        var meter = Self.freshMeter()
        let card = TestKeys.cardIssuer.userCard(
            cardSerial: 1, generation: 1, meterSerial: TestKeys.serial, revision: 1, accountNumber: 1,
            unitKind: .wattHours, credit: .init(firstSequence: 1, lastSequence: 2, units: 3000), issueTime: Self.now)
        #expect(meter.insertCard(card, keys: Self.keys, now: Self.now).result
                == .creditApplied(units: 3000, sequences: 1...2))
        let two = Self.signer.applyCredit(sequence: 2, units: 1000, counter: 1)
        #expect(meter.handle(applyCredit: two, keys: Self.keys, now: Self.now).map(\.outcome)
                == .success(.alreadyApplied))
        let three = Self.signer.applyCredit(sequence: 3, units: 1000, counter: 2)
        #expect(meter.handle(applyCredit: three, keys: Self.keys, now: Self.now).map(\.outcome) == .success(.applied))
        let card3 = TestKeys.cardIssuer.userCard(
            cardSerial: 1, generation: 1, meterSerial: TestKeys.serial, revision: 1, accountNumber: 1,
            unitKind: .wattHours, credit: .init(firstSequence: 3, lastSequence: 3, units: 1000), issueTime: Self.now)
        #expect(meter.insertCard(card3, keys: Self.keys, now: Self.now).result == .alreadyApplied(lastApplied: 3))
        #expect(meter.creditUnits == 4000)
    }

    @Test func relayThresholdsClockAlarmsAndAddress() {
        var meter = Self.freshMeter()  // no credit: exhausted, relay open
        #expect(meter.relay == .open && meter.relayReason == .creditExhausted)
        #expect(meter.handle(setRelay: Self.signer.setRelay(.closed, counter: 1), keys: Self.keys, now: Self.now)
                == .failure(Nak(.notPermitted)))
        _ = meter.handle(applyCredit: Self.signer.applyCredit(sequence: 1, units: 50_000, counter: 2), keys: Self.keys,
                         now: Self.now)
        #expect(meter.relay == .closed)
        #expect(meter.handle(setRelay: Self.signer.setRelay(.open, counter: 3), keys: Self.keys, now: Self.now)
                == .success(RelayStatus(relay: .open, reason: .remoteCommand)))
        // Credit does not close a relay opened by command.
        _ = meter.handle(applyCredit: Self.signer.applyCredit(sequence: 2, units: 1, counter: 4), keys: Self.keys,
                         now: Self.now)
        #expect(meter.relay == .open && meter.consume(units: 10, now: Self.now) == 0)
        #expect(meter.handle(setRelay: Self.signer.setRelay(.closed, counter: 5), keys: Self.keys, now: Self.now)
                == .success(RelayStatus(relay: .closed, reason: .none)))
        let inverted = Self.signer.setThresholds(Thresholds(alarmUnits: 1, cutoffUnits: 2), counter: 6)
        #expect(meter.handle(setThresholds: inverted, keys: Self.keys, now: Self.now)
                == .failure(Nak(.valueOutOfRange)))
        #expect(meter.handle(setThresholds: Self.signer.setThresholds(Thresholds(alarmUnits: 60_000, cutoffUnits: 2000),
                                                                        counter: 7), keys: Self.keys, now: Self.now)
                == .success(Thresholds(alarmUnits: 60_000, cutoffUnits: 2000)))
        #expect(meter.alarms.contains(.lowCredit))
        #expect(meter.handle(setClock: Self.signer.setClock(Self.now + 95, counter: 8), keys: Self.keys, now: Self.now)
                == .success(ClockChange(previousTime: Self.now, newTime: Self.now + 95)))
        #expect(meter.status(now: Self.now + 5).meterTime == Self.now + 100)
        meter.raise([.tamper], now: Self.now)
        #expect(meter.handle(acknowledgeAlarms: Self.signer.acknowledgeAlarms([.tamper, .lowCredit], counter: 9),
                             keys: Self.keys, now: Self.now) == .success(AlarmsRemaining(alarms: [.lowCredit])))
        // SET_ADDRESS takes the tool key; the meter's command key does not do.
        let withCommandKey = Self.signer.sign(SetAddressRequest(newAddress: 9, auth: .unsigned), counter: 10)
        #expect(meter.handle(setAddress: withCommandKey, keys: Self.keys, now: Self.now)
                == .failure(Nak(.authenticationFailed)))
        let withTool = CommandSigner.setAddress(9, serial: TestKeys.serial, counter: 10, tool: Self.keys.tool)
        #expect(meter.handle(setAddress: withTool, keys: Self.keys, now: Self.now)
                == .success(AddressAssigned(busAddress: 9)))
        #expect(meter.busAddress == 9)
        // Events were logged with indices, READ_EVENTS pages through them.
        let page = meter.events(from: 0, max: 16)
        #expect(page.events.first?.knownCode == .powerUp)
        #expect(page.events.map(\.index) == Array(0..<UInt32(page.events.count)))
        #expect(meter.events(from: meter.nextEventIndex - 1, max: 16).events.last?.knownCode == .addressChanged)
    }

    @Test func keysForAnotherMeterAreAnInternalError() {
        var meter = Self.freshMeter()
        let request = Self.signer.applyCredit(sequence: 1, units: 5, counter: 1)
        #expect(meter.handle(applyCredit: request, keys: TestKeys.meter(revision: 2), now: Self.now)
                == .failure(Nak(.internalError)))
        #expect(meter.insertCard(GoldenCards.user, keys: TestKeys.meter(1), now: Self.now).result
                == .refused(.keysUnavailable))
    }
}
