import MeterProtocol
import Prepaid

/// The worked examples of docs/PROTOCOL.md §9, one per message. Each is also a golden fixture
/// (Fixtures/frames/NAME.hex and NAME.json); `FixtureTests` checks the three agree.
enum ProtocolExamples {
    static let serial: UInt32 = 20_251_125
    static let writerSerial: UInt32 = 90_000_001
    static let address: UInt8 = 5
    static let writerAddress: UInt8 = 100
    /// 2026-11-25T08:30:00Z.
    static let time: UInt32 = 1_795_595_400
    /// A MAC for tests that need any well-formed trailer.
    static let mac: [UInt8] = [0x3A, 0x91, 0x0C, 0x5E, 0xD2, 0x47, 0x8B, 0x16]

    static func auth(_ counter: UInt32) -> Authentication {
        Authentication(counter: counter, keyRevision: 1, mac: mac)
    }

    /// The test issuer of docs/CARD.md: system key 00 01 ... 1F, issuer 1. The examples' MACs are real under it.
    static let testKeys = IssuerKeys(systemKey: SystemKey(bytes: Array(0..<32))!, issuerID: 1)
    static let signer = CommandSigner(keys: testKeys.meter(serial: serial, revision: 1))

    static func signed<R: AuthenticatedRequest>(_ request: R, _ counter: UInt32) -> R {
        signer.sign(request, counter: counter)
    }

    static func request<M: NativeRequest>(_ m: M, seq: UInt8, address: UInt8 = address, serial: UInt32 = serial)
        -> Frame
    {
        Frame(request: m, address: address, serial: serial, sequence: seq)
    }

    static func response<M: NativeMessage>(_ m: M, to request: Frame, address: UInt8 = address,
                                           serial: UInt32 = serial) -> Frame
    {
        Frame(response: m, to: request, address: address, serial: serial)
    }

    static var all: [(name: String, frame: Frame)] {
        var out: [(String, Frame)] = []
        func pair<M: NativeRequest>(_ name: String, _ req: M, seq: UInt8, _ resp: M.Response,
                                    address: UInt8 = address, serial: UInt32 = serial) {
            let r = request(req, seq: seq, address: address, serial: serial)
            out.append(("\(name)-request", r))
            out.append(("\(name)-response", response(resp, to: r, address: address, serial: serial)))
        }
        pair("identify", IdentifyRequest(), seq: 0x01,
             IdentifyResponse(kind: .electricity, firmware: (2, 4, 1), hardwareRevision: 3, keyRevision: 1,
                              capabilities: [.relay, .cardReader, .remoteCredit, .eventLog], model: "DDSY-1088"))
        pair("read-status", ReadStatusRequest(), seq: 0x02,
             MeterStatus(kind: .electricity, registerUnits: 1_234_567, creditUnits: 45_300, demand: 1_840,
                         meterTime: time, lastAppliedSequence: 41, alarms: [.lowCredit], relay: .closed,
                         relayReason: .none, alarmThresholdUnits: 50_000, cutoffThresholdUnits: 5_000))
        pair("read-events", ReadEventsRequest(fromIndex: 10, maxCount: 2), seq: 0x03,
             EventPage(nextIndex: 12, events: [
                MeterEvent(index: 10, time: time - 3600, code: .creditApplied, value: 100_000),
                MeterEvent(index: 11, time: time - 60, code: .lowCreditAlarm, value: 45_360),
             ]))
        pair("set-relay", signed(SetRelayRequest(target: .open, auth: auth(0)), 1_001), seq: 0x04,
             RelayStatus(relay: .open, reason: .remoteCommand))
        pair("set-thresholds",
             signed(SetThresholdsRequest(thresholds: Thresholds(alarmUnits: 20_000, cutoffUnits: 2_000), auth: auth(0)),
                    1_002),
             seq: 0x05, Thresholds(alarmUnits: 20_000, cutoffUnits: 2_000))
        pair("set-clock", signed(SetClockRequest(time: time, auth: auth(0)), 1_003), seq: 0x06,
             ClockChange(previousTime: time - 95, newTime: time))
        pair("apply-credit", signed(ApplyCreditRequest(purchaseSequence: 42, units: 100_000, auth: auth(0)), 1_004), seq: 0x07,
             CreditResult(outcome: .applied, lastAppliedSequence: 42, creditUnits: 145_300))
        pair("read-last-sequence", ReadLastSequenceRequest(), seq: 0x08,
             LastSequence(lastAppliedSequence: 42, lastCommandCounter: 1_004, keyRevision: 1))
        pair("ack-alarms", signed(AcknowledgeAlarmsRequest(mask: [.lowCredit, .tamper], auth: auth(0)), 1_005), seq: 0x09,
             AlarmsRemaining(alarms: []))
        // Discovery: broadcast with a 4-bit prefix; one meter answers with its own address and serial.
        let discover = Frame(request: DiscoverRequest(prefixBits: 4, prefix: 0x0000_0000),
                             address: Frame.broadcastAddress, serial: Frame.anySerial, sequence: 0x0A)
        out.append(("discover-request", discover))
        out.append(("discover-response",
                    Frame(response: DiscoverResponse(kind: .electricity, busAddress: address), to: discover,
                          address: address, serial: serial)))
        pair("set-address", CommandSigner.setAddress(7, serial: serial, counter: 1_006, tool: testKeys.tool(revision: 1)), seq: 0x0B,
             AddressAssigned(busAddress: 7), address: Frame.bySerialAddress)
        out.append(("broadcast-time",
                    Frame(address: Frame.broadcastAddress, serial: Frame.anySerial, sequence: 0x0C,
                          command: .broadcastTime, payload: BroadcastTime(time: time).payload)))
        // A refusal: credit with a purchase sequence past lastApplied + 1.
        let gap = request(signed(ApplyCreditRequest(purchaseSequence: 44, units: 50_000, auth: auth(0)), 1_007), seq: 0x0D)
        out.append(("apply-credit-gap-request", gap))
        out.append(("apply-credit-gap-nak",
                    Frame(nak: Nak(.sequenceGap, detail: 42), to: gap, address: address, serial: serial)))

        func writer<M: NativeRequest>(_ name: String, _ req: M, seq: UInt8, _ resp: M.Response) {
            pair(name, req, seq: seq, resp, address: writerAddress, serial: writerSerial)
        }
        writer("writer-status", WriterStatusRequest(), seq: 0x20,
               WriterStatus(state: .ready, lastError: 0, cardsWritten: 1_532, cardPresent: true))
        writer("card-presence", CardPresenceRequest(), seq: 0x21,
               CardPresence(media: .memory256, capacity: 256, insertion: 77))
        writer("read-card", ReadCardRequest(offset: 0, length: 16), seq: 0x22,
               CardData(insertion: 77, offset: 0, data: [0x4D, 0x47, 0x01, 0x01] + [UInt8](repeating: 0, count: 12)))
        writer("write-card", WriteCardRequest(insertion: 77, offset: 16, data: Array(0x10..<0x20)), seq: 0x23,
               CardWritten(insertion: 77, offset: 16, length: 16))
        writer("erase-card", EraseCardRequest(insertion: 77), seq: 0x24, CardErased(insertion: 77))
        writer("beep", BeepRequest(durationMs: 150, count: 2), seq: 0x25, BeepDone())
        return out
    }
}
