import Crypto
import MeterProtocol

/// The meter's rules (docs/CARD.md §6): credit from cards and remote commands loaded exactly once, consumption,
/// thresholds, relay and events. A pure value: no clock reads (time is passed in as Unix seconds), no I/O, no keys
/// stored (the caller passes the meter's `MeterKeyring`). Every method returns a typed result and never traps.
public struct PrepaidMeter: Hashable, Sendable, Codable {
    public static let eventLogCapacity = 256
    public static let revokedCardCapacity = 32

    public let serial: UInt32
    public let kind: DeviceKind
    public let issuerID: UInt32
    public var busAddress: UInt8
    public internal(set) var keyRevision: UInt8

    // Credit and sequences (PROTOCOL.md §5.3).
    public internal(set) var lastAppliedSequence: UInt32
    public internal(set) var creditUnits: Int64
    public internal(set) var registerUnits: UInt64

    // Remote commands (PROTOCOL.md §5.2).
    public internal(set) var lastCommandCounter: UInt32
    public internal(set) var lastAcceptedCommand: AcceptedCommand?

    // Supply.
    public internal(set) var alarmThresholdUnits: UInt32
    public internal(set) var cutoffThresholdUnits: UInt32
    public internal(set) var emergencyCreditUnits: UInt32
    public internal(set) var cutoffBehaviour: CardImage.CutoffBehaviour
    public internal(set) var relay: RelayState
    public internal(set) var relayReason: RelayReason
    /// Latched alarms (tamper, magnetic field...) plus the condition alarms, which follow the credit.
    public internal(set) var alarms: Alarms
    /// Set when credit fell to the exhaustion floor; cleared only when credit is above zero again.
    public internal(set) var exhausted: Bool
    /// A user card (or a remote close) has acknowledged the present low-credit cutoff.
    public internal(set) var cutoffAcknowledged: Bool
    /// Instantaneous demand reported in READ_STATUS (W or L/h), set by whoever simulates the load.
    public var demand: UInt32

    // Cards.
    public internal(set) var cardGeneration: UInt16
    public internal(set) var currentCardSerial: UInt32?
    public internal(set) var revokedCardSerials: [UInt32]
    public internal(set) var cardInsertions: UInt32
    public internal(set) var cardRefusals: UInt32

    // Clock and events.
    /// The meter's clock minus the time passed in.
    public internal(set) var clockOffsetSeconds: Int64
    /// When the meter last adopted a BROADCAST_TIME (its own clock then), to allow one a day (PROTOCOL.md §4.2).
    public internal(set) var lastBroadcastTimeAdopted: UInt32?
    public internal(set) var nextEventIndex: UInt32
    var eventLog: [LoggedEvent]

    /// The last accepted authenticated command and the answer it got, for the repeat rule (PROTOCOL.md §5.2).
    public struct AcceptedCommand: Hashable, Sendable, Codable {
        public var command: UInt8
        public var counter: UInt32
        public var mac: [UInt8]
        /// The response payload, or nil when the command was answered with `nak`.
        public var responsePayload: [UInt8]?
        public var nakCode: UInt8
        public var nakDetail: UInt32
    }

    struct LoggedEvent: Hashable, Sendable, Codable {
        var index: UInt32
        var time: UInt32
        var code: UInt16
        var value: Int64
    }

    /// A new meter with no credit (supply off until the first credit), key revision `keyRevision`.
    public init(
        serial: UInt32, kind: DeviceKind, issuerID: UInt32, keyRevision: UInt8 = 1, busAddress: UInt8 = 0,
        alarmThresholdUnits: UInt32 = 10_000, cutoffThresholdUnits: UInt32 = 2_000, now: UInt32
    ) {
        self.serial = serial
        self.kind = kind
        self.issuerID = issuerID
        self.busAddress = busAddress
        self.keyRevision = keyRevision
        self.lastAppliedSequence = 0
        self.creditUnits = 0
        self.registerUnits = 0
        self.lastCommandCounter = 0
        self.lastAcceptedCommand = nil
        self.alarmThresholdUnits = max(alarmThresholdUnits, cutoffThresholdUnits)
        self.cutoffThresholdUnits = cutoffThresholdUnits
        self.emergencyCreditUnits = 0
        self.cutoffBehaviour = .openUntilCardInserted
        self.relay = .closed
        self.relayReason = .none
        self.alarms = []
        self.exhausted = false
        self.cutoffAcknowledged = false
        self.demand = 0
        self.cardGeneration = 0
        self.currentCardSerial = nil
        self.revokedCardSerials = []
        self.cardInsertions = 0
        self.cardRefusals = 0
        self.clockOffsetSeconds = 0
        self.lastBroadcastTimeAdopted = nil
        self.nextEventIndex = 0
        self.eventLog = []
        self.log(.powerUp, 0, now: now)
        self.updateSupply(now: now)
    }

    /// The unit this meter counts and accepts credit in.
    public var unitKind: UnitKind { UnitKind(meterKind: self.kind) ?? .wattHours }

    /// The lowest credit the meter lets consumption reach: minus the emergency credit allowed.
    public var creditFloor: Int64 { -Int64(self.emergencyCreditUnits) }

    // MARK: Reading

    /// The meter's clock at `now`.
    public func meterTime(now: UInt32) -> UInt32 {
        UInt32(clamping: max(0, Int64(now) + self.clockOffsetSeconds))
    }

    /// READ_STATUS (PROTOCOL.md §4.2).
    public func status(now: UInt32) -> MeterStatus {
        MeterStatus(
            kind: self.kind, registerUnits: self.registerUnits, creditUnits: self.creditUnits, demand: self.demand,
            meterTime: self.meterTime(now: now), lastAppliedSequence: self.lastAppliedSequence, alarms: self.alarms,
            relay: self.relay, relayReason: self.relayReason, alarmThresholdUnits: self.alarmThresholdUnits,
            cutoffThresholdUnits: self.cutoffThresholdUnits)
    }

    /// READ_LAST_SEQUENCE.
    public var lastSequence: LastSequence {
        LastSequence(lastAppliedSequence: self.lastAppliedSequence, lastCommandCounter: self.lastCommandCounter,
                     keyRevision: self.keyRevision)
    }

    /// READ_EVENTS: up to `max` (1...16) events from index `from`; events older than the log holds are skipped.
    public func events(from: UInt32, max: UInt8) -> EventPage {
        let limit = Int(Swift.min(Swift.max(max, 1), ReadEventsRequest.maxCount))
        let page = self.eventLog.lazy.filter { $0.index >= from }.prefix(limit).map {
            MeterEvent(index: $0.index, time: $0.time, rawCode: $0.code, value: $0.value)
        }
        return EventPage(nextIndex: self.nextEventIndex, events: Array(page))
    }

    // MARK: Consumption and supply

    /// Counts `units` of consumption at `now` and returns how many were actually supplied: none while the relay is
    /// open, and consumption stops where the relay opens (cutoff or exhaustion).
    @discardableResult
    public mutating func consume(units: UInt64, now: UInt32) -> UInt64 {
        var left = units
        var supplied: UInt64 = 0
        while left > 0 && self.relay == .closed {
            var stop = self.creditFloor
            if self.cutoffBehaviour == .openUntilCardInserted && !self.cutoffAcknowledged
                && self.creditUnits > Int64(self.cutoffThresholdUnits) {
                stop = Swift.max(stop, Int64(self.cutoffThresholdUnits))
            }
            guard self.creditUnits > stop else { break }
            let room = UInt64(bitPattern: self.creditUnits &- stop)  // positive and below 2^64: exact
            let n = Swift.min(left, room)
            self.creditUnits -= Int64(n)
            self.registerUnits = self.registerUnits.addingReportingOverflow(n).overflow
                ? UInt64.max : self.registerUnits + n
            supplied += n
            left -= n
            self.updateSupply(now: now)
        }
        self.updateSupply(now: now)
        return supplied
    }

    /// Raises latched alarms such as tamper or magnetic field (for simulators), with their events.
    public mutating func raise(_ latched: Alarms, now: UInt32) {
        let new = latched.subtracting(Self.conditionAlarms)
        if new.contains(.tamper) && !self.alarms.contains(.tamper) { self.log(.tamper, 0, now: now) }
        if new.contains(.magneticField) && !self.alarms.contains(.magneticField) {
            self.log(.magneticField, 0, now: now)
        }
        self.alarms.formUnion(new)
    }

    /// Alarms that follow the credit and are never cleared by an acknowledgement.
    static let conditionAlarms: Alarms = [.lowCredit, .cutoff, .creditExhausted, .emergencyCredit]

    /// Recomputes condition alarms and the relay from the credit, with events on each change.
    mutating func updateSupply(now: UInt32) {
        let credit = self.creditUnits
        if credit <= self.creditFloor { self.exhausted = true }
        if credit > 0 { self.exhausted = false }
        if credit > Int64(self.cutoffThresholdUnits) { self.cutoffAcknowledged = false }
        let inCutoff = credit <= Int64(self.cutoffThresholdUnits)

        var conditions: Alarms = []
        if credit <= Int64(self.alarmThresholdUnits) { conditions.insert(.lowCredit) }
        if inCutoff { conditions.insert(.cutoff) }
        if self.exhausted { conditions.insert(.creditExhausted) }
        if credit < 0 { conditions.insert(.emergencyCredit) }
        let before = self.alarms
        if conditions.contains(.lowCredit) && !before.contains(.lowCredit) {
            self.log(.lowCreditAlarm, credit, now: now)
        }
        if conditions.contains(.cutoff) && !before.contains(.cutoff) { self.log(.cutoff, credit, now: now) }
        if conditions.contains(.creditExhausted) && !before.contains(.creditExhausted) {
            self.log(.creditExhausted, credit, now: now)
        }
        self.alarms = before.subtracting(Self.conditionAlarms).union(conditions)

        // The relay: a remote or manual opening stays until commanded; otherwise credit decides.
        guard self.relayReason != .remoteCommand && self.relayReason != .tamper && self.relayReason != .manual else {
            return
        }
        let cutoffOpen = inCutoff && self.cutoffBehaviour == .openUntilCardInserted && !self.cutoffAcknowledged
        if self.exhausted {
            self.relay = .open
            self.relayReason = .creditExhausted
        } else if cutoffOpen {
            self.relay = .open
            self.relayReason = .lowCreditCutoff
        } else if self.relay == .open {
            self.relay = .closed
            self.relayReason = .none
            self.log(.supplyRestored, credit, now: now)
        }
    }

    // MARK: Events

    mutating func log(_ code: EventCode, _ value: Int64, now: UInt32) {
        self.eventLog.append(LoggedEvent(index: self.nextEventIndex, time: self.meterTime(now: now),
                                         code: code.rawValue, value: value))
        if self.eventLog.count > Self.eventLogCapacity {
            self.eventLog.removeFirst(self.eventLog.count - Self.eventLogCapacity)
        }
        self.nextEventIndex &+= 1
    }

    // MARK: Credit (shared by cards and APPLY_CREDIT)

    enum CreditDecision { case apply, alreadyApplied }

    /// The purchase-sequence rule for a block `first...last` (PROTOCOL.md §5.3, docs/CARD.md §6.1).
    func decide(first: UInt32, last: UInt32) -> Result<CreditDecision, MeterRefusal> {
        guard first >= 1, last >= first else { return .failure(.invalidCreditBlock) }
        if last <= self.lastAppliedSequence { return .success(.alreadyApplied) }
        if first <= self.lastAppliedSequence {
            return .failure(.overlapsApplied(lastApplied: self.lastAppliedSequence))
        }
        if first > self.lastAppliedSequence &+ 1 || self.lastAppliedSequence == UInt32.max {
            return .failure(.sequenceGap(lastApplied: self.lastAppliedSequence))
        }
        return .success(.apply)
    }

    mutating func addCredit(_ units: UInt32, last: UInt32, now: UInt32) -> MeterRefusal? {
        let (sum, overflow) = self.creditUnits.addingReportingOverflow(Int64(units))
        guard !overflow else { return .creditLimit }
        self.creditUnits = sum
        self.lastAppliedSequence = last
        self.log(.creditApplied, Int64(units), now: now)
        self.updateSupply(now: now)
        return nil
    }
}
