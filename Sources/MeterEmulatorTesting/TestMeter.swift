import MeterEmulator
import MeterProtocol

/// A simplified meter for the bus master's tests and benchmark. It is NOT the prepaid meter model (that is
/// Prepaid's, with keys, MACs, tariffs and supply rules): it answers IDENTIFY, READ_STATUS, READ_LAST_SEQUENCE,
/// READ_EVENTS, DISCOVER by prefix, BROADCAST_TIME, and the authenticated commands with the exactly-once rules
/// that matter on the wire — the purchase sequence rule (docs/PROTOCOL.md §5.3) and the repeat of the last
/// accepted command (§5.2) — but checks no MAC (only the key revision and that the counter increases).
///
/// Its registers are fixed functions of its serial, so a test can tell whose answer it got; `demand` counts the
/// READ_STATUS requests it answered, so a test can tell which request an answer belongs to.
public final class TestMeter: EmulatedDevice {
    public let busAddress: UInt8
    public let serial: UInt32
    public let kind: DeviceKind

    public struct State: Sendable, Equatable {
        public var register: UInt64
        public var credit: Int64
        public var lastAppliedSequence: UInt32 = 0
        public var lastCommandCounter: UInt32 = 0
        public var keyRevision: UInt8 = 1
        public var relay = RelayState.closed
        public var relayReason = RelayReason.none
        public var alarms: Alarms = []
        public var alarmThreshold: UInt32 = 50_000
        public var cutoffThreshold: UInt32 = 5_000
        /// Seconds added to the emulator's clock (SET_CLOCK, BROADCAST_TIME).
        public var clockOffset: Int64 = 0
        /// READ_STATUS requests answered.
        public var statusReads: UInt32 = 0
        /// Purchases applied (each adds its units once).
        public var creditsApplied = 0
        public var events: [MeterEvent] = []
    }

    public private(set) var state: State
    /// Answer this many of the next requests with NAK BUSY.
    public var busyReplies = 0
    /// The last accepted authenticated command and the answer it got (§5.2).
    private var lastAccepted: (command: UInt8, counter: UInt32, mac: [UInt8], answer: (nak: Bool, payload: [UInt8]))?

    public init(busAddress: UInt8, serial: UInt32, kind: DeviceKind = .electricity) {
        self.busAddress = busAddress
        self.serial = serial
        self.kind = kind
        self.state = State(register: Self.register(of: serial), credit: Self.credit(of: serial))
    }

    /// The register a test meter with `serial` starts with (and keeps: it does not consume).
    public static func register(of serial: UInt32) -> UInt64 { UInt64(serial) * 10 + 7 }
    /// The credit it starts with.
    public static func credit(of serial: UInt32) -> Int64 { Int64(serial % 100_000) + 1000 }

    public var summary: JSONValue {
        .object([
            ("kind", .string("test-meter")), ("address", .uint(UInt64(self.busAddress))),
            ("serial", .uint(UInt64(self.serial))), ("credit", .int(self.state.credit)),
            ("lastAppliedSequence", .uint(UInt64(self.state.lastAppliedSequence))),
        ])
    }

    public func handle(_ request: Frame, now: UInt32) -> Frame? {
        if request.isBroadcast { return self.broadcast(request, now: now) }
        guard request.version <= Frame.currentVersion else {
            return self.nak(.unsupportedVersion, detail: UInt32(Frame.currentVersion), to: request)
        }
        if self.busyReplies > 0 {
            self.busyReplies -= 1
            return self.nak(.busy, to: request)
        }
        let message: any NativeMessage
        switch request.decodeMessage() {
        case .message(let m): message = m
        case .invalid(.unknownCommand): return self.nak(.unknownCommand, to: request)
        case .invalid, .nak: return self.nak(.malformedPayload, to: request)
        }
        let time = UInt32(clamping: Int64(now) + self.state.clockOffset)
        switch message {
        case is IdentifyRequest:
            return self.reply(IdentifyResponse(kind: self.kind, firmware: (0, 9, 0), hardwareRevision: 1,
                                               keyRevision: self.state.keyRevision,
                                               capabilities: [.relay, .remoteCredit, .eventLog],
                                               model: "TestMeter (simplified)"), to: request)
        case is ReadStatusRequest:
            self.state.statusReads &+= 1
            return self.reply(self.status(time: time), to: request)
        case is ReadLastSequenceRequest:
            return self.reply(LastSequence(lastAppliedSequence: self.state.lastAppliedSequence,
                                           lastCommandCounter: self.state.lastCommandCounter,
                                           keyRevision: self.state.keyRevision), to: request)
        case let r as ReadEventsRequest:
            let from = Int(r.fromIndex)
            let page = self.state.events.dropFirst(from).prefix(Int(r.maxCount))
            return self.reply(EventPage(nextIndex: UInt32(self.state.events.count), events: Array(page)), to: request)
        case let r as ApplyCreditRequest:
            return self.authenticated(request, r.auth) { () -> Frame in
                if r.purchaseSequence <= self.state.lastAppliedSequence {
                    return self.reply(CreditResult(outcome: .alreadyApplied,
                                                   lastAppliedSequence: self.state.lastAppliedSequence,
                                                   creditUnits: self.state.credit), to: request)
                }
                guard r.purchaseSequence == self.state.lastAppliedSequence + 1 else {
                    return self.nak(.sequenceGap, detail: self.state.lastAppliedSequence, to: request)
                }
                self.state.credit += Int64(r.units)
                self.state.lastAppliedSequence = r.purchaseSequence
                self.state.creditsApplied += 1
                self.log(.creditApplied, value: Int64(r.units), time: time)
                return self.reply(CreditResult(outcome: .applied, lastAppliedSequence: r.purchaseSequence,
                                               creditUnits: self.state.credit), to: request)
            }
        case let r as SetRelayRequest:
            return self.authenticated(request, r.auth) { () -> Frame in
                if r.target == .closed && self.state.credit <= 0 {
                    return self.nak(.notPermitted, to: request)
                }
                self.state.relay = r.target
                self.state.relayReason = .remoteCommand
                self.log(r.target == .open ? .relayOpenedByCommand : .relayClosedByCommand, value: 0, time: time)
                return self.reply(RelayStatus(relay: self.state.relay, reason: self.state.relayReason), to: request)
            }
        case let r as SetThresholdsRequest:
            return self.authenticated(request, r.auth) { () -> Frame in
                guard r.thresholds.alarmUnits >= r.thresholds.cutoffUnits else {
                    return self.nak(.valueOutOfRange, to: request)
                }
                self.state.alarmThreshold = r.thresholds.alarmUnits
                self.state.cutoffThreshold = r.thresholds.cutoffUnits
                return self.reply(r.thresholds, to: request)
            }
        case let r as SetClockRequest:
            return self.authenticated(request, r.auth) { () -> Frame in
                self.state.clockOffset += Int64(r.time) - Int64(time)
                return self.reply(ClockChange(previousTime: time, newTime: r.time), to: request)
            }
        case let r as AcknowledgeAlarmsRequest:
            return self.authenticated(request, r.auth) { () -> Frame in
                self.state.alarms.subtract(r.mask)
                return self.reply(AlarmsRemaining(alarms: self.state.alarms), to: request)
            }
        default:
            return self.nak(.unknownCommand, to: request)
        }
    }

    /// DISCOVER answers by prefix; BROADCAST_TIME sets the clock; nothing else is answered (§3).
    private func broadcast(_ request: Frame, now: UInt32) -> Frame? {
        switch request.decodeMessage() {
        case .message(let d as DiscoverRequest) where d.matches(serial: self.serial):
            return self.reply(DiscoverResponse(kind: self.kind, busAddress: self.busAddress), to: request)
        case .message(let t as BroadcastTime):
            self.state.clockOffset = Int64(t.time) - Int64(now)
            return nil
        default:
            return nil
        }
    }

    /// §5.2 without the MAC: key revision, repeat of the last accepted command, counter must increase.
    private func authenticated(_ request: Frame, _ auth: Authentication, _ execute: () -> Frame) -> Frame {
        guard auth.keyRevision == self.state.keyRevision else {
            return self.nak(.keyRevisionMismatch, detail: UInt32(self.state.keyRevision), to: request)
        }
        if let last = self.lastAccepted, last.command == request.command, last.counter == auth.counter,
            last.mac == auth.mac
        {
            // Answered as the first time, not executed again.
            return Frame.response(to: request, address: self.busAddress, serial: self.serial,
                                  payload: last.answer.payload, nak: last.answer.nak)
        }
        guard auth.counter > self.state.lastCommandCounter else {
            return self.nak(.replayedCommand, detail: self.state.lastCommandCounter, to: request)
        }
        self.state.lastCommandCounter = auth.counter
        let answer = execute()
        self.lastAccepted = (request.command, auth.counter, auth.mac, (answer.isNak, answer.payload))
        return answer
    }

    private func status(time: UInt32) -> MeterStatus {
        MeterStatus(kind: self.kind, registerUnits: self.state.register, creditUnits: self.state.credit,
                    demand: self.state.statusReads, meterTime: time,
                    lastAppliedSequence: self.state.lastAppliedSequence, alarms: self.state.alarms,
                    relay: self.state.relay, relayReason: self.state.relayReason,
                    alarmThresholdUnits: self.state.alarmThreshold, cutoffThresholdUnits: self.state.cutoffThreshold)
    }

    private func log(_ code: EventCode, value: Int64, time: UInt32) {
        self.state.events.append(MeterEvent(index: UInt32(self.state.events.count), time: time, code: code,
                                            value: value))
    }

    private func reply<M: NativeMessage>(_ message: M, to request: Frame) -> Frame {
        Frame(response: message, to: request, address: self.busAddress, serial: self.serial)
    }

    private func nak(_ code: NakCode, detail: UInt32 = 0, to request: Frame) -> Frame {
        Frame(nak: Nak(code, detail: detail), to: request, address: self.busAddress, serial: self.serial)
    }
}
