// Meter messages (docs/PROTOCOL.md §4.2). Field order here is wire order.

/// The trailer of every authenticated request (§5): command counter, key revision and a truncated MAC.
public struct Authentication: Hashable, Sendable {
    public static let length = 13
    public static let macLength = 8

    /// Strictly increasing per meter for accepted commands (§5.2).
    public var counter: UInt32
    /// The revision of the meter key that made the MAC.
    public var keyRevision: UInt8
    /// First 8 bytes of HMAC-SHA-256 over the authenticated bytes (§5.1).
    public var mac: [UInt8]

    public init(counter: UInt32, keyRevision: UInt8, mac: [UInt8]) {
        precondition(mac.count == Self.macLength, "MAC must be \(Self.macLength) bytes")
        self.counter = counter
        self.keyRevision = keyRevision
        self.mac = mac
    }

    init(reading r: inout ByteReader) throws(PayloadError) {
        self.counter = try r.u32("auth.counter")
        self.keyRevision = try r.u8("auth.keyRevision")
        self.mac = try r.bytes(Self.macLength, "auth.mac")
    }

    func write(to w: inout ByteWriter) {
        w.u32(self.counter)
        w.u8(self.keyRevision)
        w.bytes(self.mac)
    }

    var fields: [Field] {
        [Field("counter", .unsigned(UInt64(self.counter))),
         Field("keyRevision", .unsigned(UInt64(self.keyRevision))),
         Field("mac", .bytes(self.mac))]
    }

    /// The bytes a MAC covers (§5.1): command, target serial, then the request payload up to the MAC.
    public static func authenticatedBytes(command: Command, serial: UInt32, payloadBeforeMAC: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.bytes(Array("MGW1".utf8))
        w.u8(command.rawValue)
        w.u32(serial)
        w.bytes(payloadBeforeMAC)
        return w.bytes
    }
}

/// A request whose payload ends in an `Authentication` trailer.
public protocol AuthenticatedRequest: NativeRequest {
    var auth: Authentication { get set }
}

extension AuthenticatedRequest {
    /// The bytes the MAC is computed over for a meter with `serial` (§5.1).
    public func authenticatedBytes(serial: UInt32) -> [UInt8] {
        let payload = self.payload
        return Authentication.authenticatedBytes(
            command: Self.command, serial: serial, payloadBeforeMAC: Array(payload.dropLast(Authentication.macLength)))
    }
}

func readEnum<E: RawRepresentable>(_ type: E.Type, _ r: inout ByteReader, _ field: String) throws(PayloadError) -> E
where E.RawValue == UInt8 {
    let raw = try r.u8(field)
    guard let value = E(rawValue: raw) else { throw .invalidValue(field: field, value: UInt64(raw)) }
    return value
}

// MARK: IDENTIFY 0x01

public struct IdentifyRequest: NativeRequest {
    public typealias Response = IdentifyResponse
    public static let command = Command.identify
    public init() {}
    public init(reading r: inout ByteReader) throws(PayloadError) {}
    public func write(to w: inout ByteWriter) {}
    public var fields: [Field] { [] }
}

public struct IdentifyResponse: NativeMessage {
    public static let command = Command.identify
    public static let isResponse = true
    public static let maxModelLength = 32

    public var kind: DeviceKind
    public var firmware: (major: UInt8, minor: UInt8, patch: UInt8)
    public var hardwareRevision: UInt8
    public var protocolVersion: UInt8
    public var keyRevision: UInt8
    public var capabilities: Capabilities
    /// ASCII, at most 32 bytes.
    public var model: String

    public struct Capabilities: OptionSet, Hashable, Sendable {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }
        public static let relay = Capabilities(rawValue: 1 << 0)
        public static let cardReader = Capabilities(rawValue: 1 << 1)
        public static let remoteCredit = Capabilities(rawValue: 1 << 2)
        public static let eventLog = Capabilities(rawValue: 1 << 3)
        public static let emergencyCredit = Capabilities(rawValue: 1 << 4)
        public static let cardWriter = Capabilities(rawValue: 1 << 5)
        static let names: [(Capabilities, String)] = [
            (.relay, "relay"), (.cardReader, "card-reader"), (.remoteCredit, "remote-credit"),
            (.eventLog, "event-log"), (.emergencyCredit, "emergency-credit"), (.cardWriter, "card-writer"),
        ]
        public var names: [String] {
            (0..<16).compactMap { bit in
                let m = Capabilities(rawValue: 1 << bit)
                guard self.contains(m) else { return nil }
                return Self.names.first { $0.0 == m }?.1 ?? "bit-\(bit)"
            }
        }
    }

    public init(
        kind: DeviceKind, firmware: (UInt8, UInt8, UInt8), hardwareRevision: UInt8,
        protocolVersion: UInt8 = Frame.currentVersion, keyRevision: UInt8, capabilities: Capabilities, model: String
    ) {
        precondition(model.utf8.count <= Self.maxModelLength && model.utf8.allSatisfy { $0 < 0x80 })
        self.kind = kind
        self.firmware = firmware
        self.hardwareRevision = hardwareRevision
        self.protocolVersion = protocolVersion
        self.keyRevision = keyRevision
        self.capabilities = capabilities
        self.model = model
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.kind = try readEnum(DeviceKind.self, &r, "kind")
        self.firmware = (try r.u8("firmware.major"), try r.u8("firmware.minor"), try r.u8("firmware.patch"))
        self.hardwareRevision = try r.u8("hardwareRevision")
        self.protocolVersion = try r.u8("protocolVersion")
        self.keyRevision = try r.u8("keyRevision")
        self.capabilities = Capabilities(rawValue: try r.u16("capabilities"))
        let length = try r.u8("modelLength")
        guard length <= Self.maxModelLength else { throw .invalidValue(field: "modelLength", value: UInt64(length)) }
        let model = try r.bytes(Int(length), "model")
        guard let bad = model.first(where: { $0 >= 0x80 || $0 < 0x20 }) else {
            self.model = String(decoding: model, as: UTF8.self)
            return
        }
        throw .invalidValue(field: "model", value: UInt64(bad))
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.kind.rawValue)
        w.u8(self.firmware.major)
        w.u8(self.firmware.minor)
        w.u8(self.firmware.patch)
        w.u8(self.hardwareRevision)
        w.u8(self.protocolVersion)
        w.u8(self.keyRevision)
        w.u16(self.capabilities.rawValue)
        w.u8(UInt8(self.model.utf8.count))
        w.bytes(Array(self.model.utf8))
    }

    public var firmwareVersion: String { "\(self.firmware.major).\(self.firmware.minor).\(self.firmware.patch)" }

    public var fields: [Field] {
        [Field("kind", .code(UInt64(self.kind.rawValue), name: self.kind.name)),
         Field("firmware", .text(self.firmwareVersion)),
         Field("hardwareRevision", .unsigned(UInt64(self.hardwareRevision))),
         Field("protocolVersion", .unsigned(UInt64(self.protocolVersion))),
         Field("keyRevision", .unsigned(UInt64(self.keyRevision))),
         Field("capabilities", .bits(UInt64(self.capabilities.rawValue), names: self.capabilities.names)),
         Field("model", .text(self.model))]
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.kind == b.kind && a.firmware == b.firmware && a.hardwareRevision == b.hardwareRevision
            && a.protocolVersion == b.protocolVersion && a.keyRevision == b.keyRevision
            && a.capabilities == b.capabilities && a.model == b.model
    }

    public func hash(into h: inout Hasher) { h.combine(self.payload) }
}

// MARK: READ_STATUS 0x02

public struct ReadStatusRequest: NativeRequest {
    public typealias Response = MeterStatus
    public static let command = Command.readStatus
    public init() {}
    public init(reading r: inout ByteReader) throws(PayloadError) {}
    public func write(to w: inout ByteWriter) {}
    public var fields: [Field] { [] }
}

/// The meter's registers and state. Register, credit and thresholds are in the kind's unit (Wh or L).
public struct MeterStatus: NativeMessage {
    public static let command = Command.readStatus
    public static let isResponse = true

    public var kind: DeviceKind
    /// Total consumption register, in the kind's unit.
    public var registerUnits: UInt64
    /// Remaining credit in the kind's unit; negative while emergency credit is in use.
    public var creditUnits: Int64
    /// Instantaneous demand: W for energy, L/h for water.
    public var demand: UInt32
    /// The meter's clock, seconds since 1970-01-01 UTC.
    public var meterTime: UInt32
    public var lastAppliedSequence: UInt32
    public var alarms: Alarms
    public var relay: RelayState
    public var relayReason: RelayReason
    public var alarmThresholdUnits: UInt32
    public var cutoffThresholdUnits: UInt32

    public init(
        kind: DeviceKind, registerUnits: UInt64, creditUnits: Int64, demand: UInt32, meterTime: UInt32,
        lastAppliedSequence: UInt32, alarms: Alarms, relay: RelayState, relayReason: RelayReason,
        alarmThresholdUnits: UInt32, cutoffThresholdUnits: UInt32
    ) {
        self.kind = kind
        self.registerUnits = registerUnits
        self.creditUnits = creditUnits
        self.demand = demand
        self.meterTime = meterTime
        self.lastAppliedSequence = lastAppliedSequence
        self.alarms = alarms
        self.relay = relay
        self.relayReason = relayReason
        self.alarmThresholdUnits = alarmThresholdUnits
        self.cutoffThresholdUnits = cutoffThresholdUnits
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.kind = try readEnum(DeviceKind.self, &r, "kind")
        self.registerUnits = try r.u64("register")
        self.creditUnits = try r.i64("credit")
        self.demand = try r.u32("demand")
        self.meterTime = try r.u32("meterTime")
        self.lastAppliedSequence = try r.u32("lastAppliedSequence")
        self.alarms = Alarms(rawValue: try r.u16("alarms"))
        self.relay = try readEnum(RelayState.self, &r, "relay")
        self.relayReason = try readEnum(RelayReason.self, &r, "relayReason")
        self.alarmThresholdUnits = try r.u32("alarmThreshold")
        self.cutoffThresholdUnits = try r.u32("cutoffThreshold")
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.kind.rawValue)
        w.u64(self.registerUnits)
        w.i64(self.creditUnits)
        w.u32(self.demand)
        w.u32(self.meterTime)
        w.u32(self.lastAppliedSequence)
        w.u16(self.alarms.rawValue)
        w.u8(self.relay.rawValue)
        w.u8(self.relayReason.rawValue)
        w.u32(self.alarmThresholdUnits)
        w.u32(self.cutoffThresholdUnits)
    }

    public var fields: [Field] {
        let unit = self.kind.registerUnit
        return [
            Field("kind", .code(UInt64(self.kind.rawValue), name: self.kind.name)),
            Field("register", .quantity(Int64(clamping: self.registerUnits), unit: unit)),
            Field("credit", .quantity(self.creditUnits, unit: unit)),
            Field("demand", .quantity(Int64(self.demand), unit: self.kind.demandUnit)),
            Field("meterTime", .time(self.meterTime)),
            Field("lastAppliedSequence", .unsigned(UInt64(self.lastAppliedSequence))),
            Field("alarms", .bits(UInt64(self.alarms.rawValue), names: self.alarms.names)),
            Field("relay", .code(UInt64(self.relay.rawValue), name: self.relay.name)),
            Field("relayReason", .code(UInt64(self.relayReason.rawValue), name: self.relayReason.name)),
            Field("alarmThreshold", .quantity(Int64(self.alarmThresholdUnits), unit: unit)),
            Field("cutoffThreshold", .quantity(Int64(self.cutoffThresholdUnits), unit: unit)),
        ]
    }
}

// MARK: READ_EVENTS 0x03

public struct ReadEventsRequest: NativeRequest {
    public typealias Response = EventPage
    public static let command = Command.readEvents
    public static let maxCount: UInt8 = 16

    /// Index of the first event wanted; the log numbers events from 0 and keeps the latest 256.
    public var fromIndex: UInt32
    /// 1...16.
    public var maxCount: UInt8

    public init(fromIndex: UInt32, maxCount: UInt8 = ReadEventsRequest.maxCount) {
        self.fromIndex = fromIndex
        self.maxCount = maxCount
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.fromIndex = try r.u32("fromIndex")
        self.maxCount = try r.u8("maxCount")
        guard (1...Self.maxCount).contains(self.maxCount) else {
            throw .invalidValue(field: "maxCount", value: UInt64(self.maxCount))
        }
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.fromIndex)
        w.u8(self.maxCount)
    }

    public var fields: [Field] {
        [Field("fromIndex", .unsigned(UInt64(self.fromIndex))), Field("maxCount", .unsigned(UInt64(self.maxCount)))]
    }
}

/// One entry of the meter's event log.
public struct MeterEvent: Hashable, Sendable {
    public static let length = 18

    public var index: UInt32
    public var time: UInt32
    public var code: UInt16
    /// Meaning depends on the code: units credited, refusal code, seconds of clock change, card serial.
    public var value: Int64

    public init(index: UInt32, time: UInt32, code: EventCode, value: Int64) {
        self.init(index: index, time: time, rawCode: code.rawValue, value: value)
    }

    public init(index: UInt32, time: UInt32, rawCode: UInt16, value: Int64) {
        self.index = index
        self.time = time
        self.code = rawCode
        self.value = value
    }

    public var knownCode: EventCode? { EventCode(rawValue: self.code) }

    var fields: [Field] {
        [Field("index", .unsigned(UInt64(self.index))),
         Field("time", .time(self.time)),
         Field("code", .code(UInt64(self.code), name: self.knownCode?.name ?? "unknown")),
         Field("value", .signed(self.value))]
    }
}

public struct EventPage: NativeMessage {
    public static let command = Command.readEvents
    public static let isResponse = true

    /// The index the next recorded event will get (so `nextIndex` events have been recorded in all).
    public var nextIndex: UInt32
    public var events: [MeterEvent]

    public init(nextIndex: UInt32, events: [MeterEvent]) {
        precondition(events.count <= Int(ReadEventsRequest.maxCount))
        self.nextIndex = nextIndex
        self.events = events
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.nextIndex = try r.u32("nextIndex")
        let count = try r.u8("count")
        guard count <= ReadEventsRequest.maxCount else { throw .invalidValue(field: "count", value: UInt64(count)) }
        self.events = []
        for i in 0..<Int(count) {
            let name = "events[\(i)]"
            self.events.append(
                MeterEvent(
                    index: try r.u32("\(name).index"), time: try r.u32("\(name).time"),
                    rawCode: try r.u16("\(name).code"), value: try r.i64("\(name).value")))
        }
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.nextIndex)
        w.u8(UInt8(self.events.count))
        for e in self.events {
            w.u32(e.index)
            w.u32(e.time)
            w.u16(e.code)
            w.i64(e.value)
        }
    }

    public var fields: [Field] {
        [Field("nextIndex", .unsigned(UInt64(self.nextIndex))),
         Field("events", .records(self.events.map(\.fields)))]
    }
}

// MARK: SET_RELAY 0x04

public struct SetRelayRequest: AuthenticatedRequest {
    public typealias Response = RelayStatus
    public static let command = Command.setRelay

    /// `.open` cuts supply, `.closed` restores it.
    public var target: RelayState
    public var auth: Authentication

    public init(target: RelayState, auth: Authentication) {
        self.target = target
        self.auth = auth
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.target = try readEnum(RelayState.self, &r, "target")
        self.auth = try Authentication(reading: &r)
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.target.rawValue)
        self.auth.write(to: &w)
    }

    public var fields: [Field] {
        [Field("target", .code(UInt64(self.target.rawValue), name: self.target.name))] + self.auth.fields
    }
}

public struct RelayStatus: NativeMessage {
    public static let command = Command.setRelay
    public static let isResponse = true

    public var relay: RelayState
    public var reason: RelayReason

    public init(relay: RelayState, reason: RelayReason) {
        self.relay = relay
        self.reason = reason
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.relay = try readEnum(RelayState.self, &r, "relay")
        self.reason = try readEnum(RelayReason.self, &r, "relayReason")
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.relay.rawValue)
        w.u8(self.reason.rawValue)
    }

    public var fields: [Field] {
        [Field("relay", .code(UInt64(self.relay.rawValue), name: self.relay.name)),
         Field("relayReason", .code(UInt64(self.reason.rawValue), name: self.reason.name))]
    }
}

// MARK: SET_THRESHOLDS 0x05

public struct SetThresholdsRequest: AuthenticatedRequest {
    public typealias Response = Thresholds
    public static let command = Command.setThresholds

    public var thresholds: Thresholds
    public var auth: Authentication

    public init(thresholds: Thresholds, auth: Authentication) {
        self.thresholds = thresholds
        self.auth = auth
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.thresholds = try Thresholds(reading: &r)
        self.auth = try Authentication(reading: &r)
    }

    public func write(to w: inout ByteWriter) {
        self.thresholds.write(to: &w)
        self.auth.write(to: &w)
    }

    public var fields: [Field] { self.thresholds.fields + self.auth.fields }
}

/// Low-credit thresholds in the meter's unit: an alarm first, then a cutoff (alarm >= cutoff).
public struct Thresholds: NativeMessage {
    public static let command = Command.setThresholds
    public static let isResponse = true

    public var alarmUnits: UInt32
    public var cutoffUnits: UInt32

    public init(alarmUnits: UInt32, cutoffUnits: UInt32) {
        self.alarmUnits = alarmUnits
        self.cutoffUnits = cutoffUnits
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.alarmUnits = try r.u32("alarmThreshold")
        self.cutoffUnits = try r.u32("cutoffThreshold")
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.alarmUnits)
        w.u32(self.cutoffUnits)
    }

    public var fields: [Field] {
        [Field("alarmThreshold", .quantity(Int64(self.alarmUnits), unit: "units")),
         Field("cutoffThreshold", .quantity(Int64(self.cutoffUnits), unit: "units"))]
    }
}

// MARK: SET_CLOCK 0x06

public struct SetClockRequest: AuthenticatedRequest {
    public typealias Response = ClockChange
    public static let command = Command.setClock

    public var time: UInt32
    public var auth: Authentication

    public init(time: UInt32, auth: Authentication) {
        self.time = time
        self.auth = auth
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.time = try r.u32("time")
        self.auth = try Authentication(reading: &r)
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.time)
        self.auth.write(to: &w)
    }

    public var fields: [Field] { [Field("time", .time(self.time))] + self.auth.fields }
}

public struct ClockChange: NativeMessage {
    public static let command = Command.setClock
    public static let isResponse = true

    /// The meter's clock just before the change (its drift is `previousTime - time requested`).
    public var previousTime: UInt32
    public var newTime: UInt32

    public init(previousTime: UInt32, newTime: UInt32) {
        self.previousTime = previousTime
        self.newTime = newTime
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.previousTime = try r.u32("previousTime")
        self.newTime = try r.u32("newTime")
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.previousTime)
        w.u32(self.newTime)
    }

    public var fields: [Field] {
        [Field("previousTime", .time(self.previousTime)), Field("newTime", .time(self.newTime))]
    }
}

// MARK: APPLY_CREDIT 0x07

public struct ApplyCreditRequest: AuthenticatedRequest {
    public typealias Response = CreditResult
    public static let command = Command.applyCredit

    /// The purchase's sequence in the meter's purchase space, shared with cards (§5.3).
    public var purchaseSequence: UInt32
    /// Credit in the meter's unit (Wh or L).
    public var units: UInt32
    public var auth: Authentication

    public init(purchaseSequence: UInt32, units: UInt32, auth: Authentication) {
        self.purchaseSequence = purchaseSequence
        self.units = units
        self.auth = auth
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.purchaseSequence = try r.u32("purchaseSequence")
        self.units = try r.u32("units")
        self.auth = try Authentication(reading: &r)
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.purchaseSequence)
        w.u32(self.units)
        self.auth.write(to: &w)
    }

    public var fields: [Field] {
        [Field("purchaseSequence", .unsigned(UInt64(self.purchaseSequence))),
         Field("units", .quantity(Int64(self.units), unit: "units"))] + self.auth.fields
    }
}

public struct CreditResult: NativeMessage {
    public static let command = Command.applyCredit
    public static let isResponse = true

    public enum Outcome: UInt8, CaseIterable, Hashable, Sendable {
        case applied = 0
        /// The purchase sequence was at or below the last applied one: nothing was added this time.
        case alreadyApplied = 1

        public var name: String { self == .applied ? "applied" : "already-applied" }
    }

    public var outcome: Outcome
    public var lastAppliedSequence: UInt32
    public var creditUnits: Int64

    public init(outcome: Outcome, lastAppliedSequence: UInt32, creditUnits: Int64) {
        self.outcome = outcome
        self.lastAppliedSequence = lastAppliedSequence
        self.creditUnits = creditUnits
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.outcome = try readEnum(Outcome.self, &r, "outcome")
        self.lastAppliedSequence = try r.u32("lastAppliedSequence")
        self.creditUnits = try r.i64("credit")
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.outcome.rawValue)
        w.u32(self.lastAppliedSequence)
        w.i64(self.creditUnits)
    }

    public var fields: [Field] {
        [Field("outcome", .code(UInt64(self.outcome.rawValue), name: self.outcome.name)),
         Field("lastAppliedSequence", .unsigned(UInt64(self.lastAppliedSequence))),
         Field("credit", .quantity(self.creditUnits, unit: "units"))]
    }
}

// MARK: READ_LAST_SEQUENCE 0x08

public struct ReadLastSequenceRequest: NativeRequest {
    public typealias Response = LastSequence
    public static let command = Command.readLastSequence
    public init() {}
    public init(reading r: inout ByteReader) throws(PayloadError) {}
    public func write(to w: inout ByteWriter) {}
    public var fields: [Field] { [] }
}

/// What a gateway reads before resending anything after a crash (§5.3).
public struct LastSequence: NativeMessage {
    public static let command = Command.readLastSequence
    public static let isResponse = true

    public var lastAppliedSequence: UInt32
    public var lastCommandCounter: UInt32
    public var keyRevision: UInt8

    public init(lastAppliedSequence: UInt32, lastCommandCounter: UInt32, keyRevision: UInt8) {
        self.lastAppliedSequence = lastAppliedSequence
        self.lastCommandCounter = lastCommandCounter
        self.keyRevision = keyRevision
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.lastAppliedSequence = try r.u32("lastAppliedSequence")
        self.lastCommandCounter = try r.u32("lastCommandCounter")
        self.keyRevision = try r.u8("keyRevision")
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.lastAppliedSequence)
        w.u32(self.lastCommandCounter)
        w.u8(self.keyRevision)
    }

    public var fields: [Field] {
        [Field("lastAppliedSequence", .unsigned(UInt64(self.lastAppliedSequence))),
         Field("lastCommandCounter", .unsigned(UInt64(self.lastCommandCounter))),
         Field("keyRevision", .unsigned(UInt64(self.keyRevision)))]
    }
}

// MARK: ACK_ALARMS 0x09

public struct AcknowledgeAlarmsRequest: AuthenticatedRequest {
    public typealias Response = AlarmsRemaining
    public static let command = Command.acknowledgeAlarms

    public var mask: Alarms
    public var auth: Authentication

    public init(mask: Alarms, auth: Authentication) {
        self.mask = mask
        self.auth = auth
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.mask = Alarms(rawValue: try r.u16("mask"))
        self.auth = try Authentication(reading: &r)
    }

    public func write(to w: inout ByteWriter) {
        w.u16(self.mask.rawValue)
        self.auth.write(to: &w)
    }

    public var fields: [Field] {
        [Field("mask", .bits(UInt64(self.mask.rawValue), names: self.mask.names))] + self.auth.fields
    }
}

/// Alarms still active after an acknowledgement (conditions that persist stay set).
public struct AlarmsRemaining: NativeMessage {
    public static let command = Command.acknowledgeAlarms
    public static let isResponse = true

    public var alarms: Alarms

    public init(alarms: Alarms) { self.alarms = alarms }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.alarms = Alarms(rawValue: try r.u16("alarms"))
    }

    public func write(to w: inout ByteWriter) { w.u16(self.alarms.rawValue) }

    public var fields: [Field] { [Field("alarms", .bits(UInt64(self.alarms.rawValue), names: self.alarms.names))] }
}

// MARK: DISCOVER 0x0A

/// Broadcast: every meter whose serial starts with `prefix` (its top `prefixBits` bits) answers (§7).
public struct DiscoverRequest: NativeRequest {
    public typealias Response = DiscoverResponse
    public static let command = Command.discover

    /// 0...32; 0 matches every meter.
    public var prefixBits: UInt8
    /// Compared on its top `prefixBits` bits; the other bits must be zero.
    public var prefix: UInt32

    public init(prefixBits: UInt8, prefix: UInt32) {
        precondition(prefixBits <= 32)
        self.prefixBits = prefixBits
        self.prefix = prefix & Self.mask(prefixBits)
    }

    public static func mask(_ bits: UInt8) -> UInt32 { bits == 0 ? 0 : UInt32.max << (32 - UInt32(bits)) }

    /// Whether a meter with `serial` answers this request.
    public func matches(serial: UInt32) -> Bool { serial & Self.mask(self.prefixBits) == self.prefix }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.prefixBits = try r.u8("prefixBits")
        self.prefix = try r.u32("prefix")
        guard self.prefixBits <= 32 else { throw .invalidValue(field: "prefixBits", value: UInt64(self.prefixBits)) }
        guard self.prefix & ~Self.mask(self.prefixBits) == 0 else {
            throw .invalidValue(field: "prefix", value: UInt64(self.prefix))
        }
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.prefixBits)
        w.u32(self.prefix)
    }

    public var fields: [Field] {
        [Field("prefixBits", .unsigned(UInt64(self.prefixBits))), Field("prefix", .unsigned(UInt64(self.prefix)))]
    }
}

/// A matching meter's answer; its serial is in the frame header.
public struct DiscoverResponse: NativeMessage {
    public static let command = Command.discover
    public static let isResponse = true

    public var kind: DeviceKind
    /// The meter's bus address, 0 when none is assigned yet.
    public var busAddress: UInt8

    public init(kind: DeviceKind, busAddress: UInt8) {
        self.kind = kind
        self.busAddress = busAddress
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.kind = try readEnum(DeviceKind.self, &r, "kind")
        self.busAddress = try r.u8("busAddress")
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.kind.rawValue)
        w.u8(self.busAddress)
    }

    public var fields: [Field] {
        [Field("kind", .code(UInt64(self.kind.rawValue), name: self.kind.name)),
         Field("busAddress", .unsigned(UInt64(self.busAddress)))]
    }
}

// MARK: SET_ADDRESS 0x0B

/// Assigns a bus address; sent to address 0xFF with the meter's serial, authenticated with the tool key (§5.4).
public struct SetAddressRequest: AuthenticatedRequest {
    public typealias Response = AddressAssigned
    public static let command = Command.setAddress

    public var newAddress: UInt8
    public var auth: Authentication

    public init(newAddress: UInt8, auth: Authentication) {
        self.newAddress = newAddress
        self.auth = auth
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.newAddress = try r.u8("newAddress")
        guard (1...Frame.maxUnicastAddress).contains(self.newAddress) else {
            throw .invalidValue(field: "newAddress", value: UInt64(self.newAddress))
        }
        self.auth = try Authentication(reading: &r)
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.newAddress)
        self.auth.write(to: &w)
    }

    public var fields: [Field] { [Field("newAddress", .unsigned(UInt64(self.newAddress)))] + self.auth.fields }
}

public struct AddressAssigned: NativeMessage {
    public static let command = Command.setAddress
    public static let isResponse = true

    public var busAddress: UInt8

    public init(busAddress: UInt8) { self.busAddress = busAddress }
    public init(reading r: inout ByteReader) throws(PayloadError) { self.busAddress = try r.u8("busAddress") }
    public func write(to w: inout ByteWriter) { w.u8(self.busAddress) }
    public var fields: [Field] { [Field("busAddress", .unsigned(UInt64(self.busAddress)))] }
}

// MARK: BROADCAST_TIME 0x0C

/// Broadcast only, never answered: meters adopt `time` if it is within 300 s of their clock (§4.2).
public struct BroadcastTime: NativeMessage {
    public static let command = Command.broadcastTime
    public static let isResponse = false
    /// The largest correction a meter accepts without authentication.
    public static let maxCorrectionSeconds: UInt32 = 300

    public var time: UInt32

    public init(time: UInt32) { self.time = time }
    public init(reading r: inout ByteReader) throws(PayloadError) { self.time = try r.u32("time") }
    public func write(to w: inout ByteWriter) { w.u32(self.time) }
    public var fields: [Field] { [Field("time", .time(self.time))] }
}
