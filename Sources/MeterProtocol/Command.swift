/// Command codes (docs/PROTOCOL.md §4). 0x01-0x3F address meters, 0x40-0x5F card writers.
public enum Command: UInt8, CaseIterable, Hashable, Sendable {
    case identify = 0x01
    case readStatus = 0x02
    case readEvents = 0x03
    case setRelay = 0x04
    case setThresholds = 0x05
    case setClock = 0x06
    case applyCredit = 0x07
    case readLastSequence = 0x08
    case acknowledgeAlarms = 0x09
    case discover = 0x0A
    case setAddress = 0x0B
    case broadcastTime = 0x0C

    case writerStatus = 0x40
    case cardPresence = 0x41
    case readCard = 0x42
    case writeCard = 0x43
    case eraseCard = 0x44
    case beep = 0x45

    /// The name used in the spec and in decoded output.
    public var name: String {
        switch self {
        case .identify: "IDENTIFY"
        case .readStatus: "READ_STATUS"
        case .readEvents: "READ_EVENTS"
        case .setRelay: "SET_RELAY"
        case .setThresholds: "SET_THRESHOLDS"
        case .setClock: "SET_CLOCK"
        case .applyCredit: "APPLY_CREDIT"
        case .readLastSequence: "READ_LAST_SEQUENCE"
        case .acknowledgeAlarms: "ACK_ALARMS"
        case .discover: "DISCOVER"
        case .setAddress: "SET_ADDRESS"
        case .broadcastTime: "BROADCAST_TIME"
        case .writerStatus: "WRITER_STATUS"
        case .cardPresence: "CARD_PRESENCE"
        case .readCard: "READ_CARD"
        case .writeCard: "WRITE_CARD"
        case .eraseCard: "ERASE_CARD"
        case .beep: "BEEP"
        }
    }

    /// Requests that end in the 13-byte authentication trailer (§5).
    public var isAuthenticated: Bool {
        switch self {
        case .setRelay, .setThresholds, .setClock, .applyCredit, .acknowledgeAlarms, .setAddress: true
        default: false
        }
    }

    /// Display name for any command byte, known or not.
    public static func name(of code: UInt8) -> String {
        Command(rawValue: code)?.name ?? "UNKNOWN_0x\(hex2(code))"
    }
}

/// What a device is (IDENTIFY, READ_STATUS, DISCOVER). Fixes the unit of its registers (§4.2).
public enum DeviceKind: UInt8, CaseIterable, Hashable, Sendable, Codable {
    case electricity = 1
    case water = 2
    case heat = 3
    case cardWriter = 0x10

    public var name: String {
        switch self {
        case .electricity: "electricity"
        case .water: "water"
        case .heat: "heat"
        case .cardWriter: "card-writer"
        }
    }

    /// Unit of the register, credit and thresholds: watt-hours for energy, litres for water.
    public var registerUnit: String {
        switch self {
        case .water: "L"
        case .electricity, .heat, .cardWriter: "Wh"
        }
    }

    /// Unit of instantaneous demand.
    public var demandUnit: String {
        switch self {
        case .water: "L/h"
        case .electricity, .heat, .cardWriter: "W"
        }
    }
}

/// Refusal codes carried in a NAK (§6).
public enum NakCode: UInt8, CaseIterable, Hashable, Sendable {
    case unknownCommand = 0x01
    case malformedPayload = 0x02
    case unsupportedVersion = 0x03
    case authenticationFailed = 0x04
    case replayedCommand = 0x05
    case keyRevisionMismatch = 0x06
    case sequenceGap = 0x07
    case valueOutOfRange = 0x08
    case notPermitted = 0x09
    case busy = 0x0A
    case noCard = 0x0B
    case cardChanged = 0x0C
    case cardWriteFailed = 0x0D
    case internalError = 0x0F

    public var name: String {
        switch self {
        case .unknownCommand: "unknown-command"
        case .malformedPayload: "malformed-payload"
        case .unsupportedVersion: "unsupported-version"
        case .authenticationFailed: "authentication-failed"
        case .replayedCommand: "replayed-command"
        case .keyRevisionMismatch: "key-revision-mismatch"
        case .sequenceGap: "sequence-gap"
        case .valueOutOfRange: "value-out-of-range"
        case .notPermitted: "not-permitted"
        case .busy: "busy"
        case .noCard: "no-card"
        case .cardChanged: "card-changed"
        case .cardWriteFailed: "card-write-failed"
        case .internalError: "internal-error"
        }
    }

    /// What the detail word means for this code, if anything.
    public var detailName: String? {
        switch self {
        case .unsupportedVersion: "highestVersion"
        case .replayedCommand: "lastAcceptedCounter"
        case .keyRevisionMismatch: "currentKeyRevision"
        case .sequenceGap: "lastAppliedSequence"
        case .cardChanged: "currentInsertion"
        default: nil
        }
    }
}

/// Relay (electricity) or valve (water, heat) position.
public enum RelayState: UInt8, CaseIterable, Hashable, Sendable, Codable {
    /// Supply on.
    case closed = 0
    /// Supply off.
    case open = 1

    public var name: String { self == .closed ? "closed" : "open" }
}

/// Why the relay is where it is (§4.2 READ_STATUS).
public enum RelayReason: UInt8, CaseIterable, Hashable, Sendable, Codable {
    case none = 0
    case lowCreditCutoff = 1
    case creditExhausted = 2
    case remoteCommand = 3
    case tamper = 4
    case manual = 5

    public var name: String {
        switch self {
        case .none: "none"
        case .lowCreditCutoff: "low-credit-cutoff"
        case .creditExhausted: "credit-exhausted"
        case .remoteCommand: "remote-command"
        case .tamper: "tamper"
        case .manual: "manual"
        }
    }
}

/// Alarm bits of READ_STATUS and ACK_ALARMS (§4.2).
public struct Alarms: OptionSet, Hashable, Sendable, Codable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let lowCredit = Alarms(rawValue: 1 << 0)
    public static let cutoff = Alarms(rawValue: 1 << 1)
    public static let creditExhausted = Alarms(rawValue: 1 << 2)
    public static let emergencyCredit = Alarms(rawValue: 1 << 3)
    public static let tamper = Alarms(rawValue: 1 << 4)
    public static let magneticField = Alarms(rawValue: 1 << 5)
    public static let reverseFlow = Alarms(rawValue: 1 << 6)
    public static let batteryLow = Alarms(rawValue: 1 << 7)
    public static let clockInvalid = Alarms(rawValue: 1 << 8)
    public static let memoryFault = Alarms(rawValue: 1 << 9)

    static let names: [(Alarms, String)] = [
        (.lowCredit, "low-credit"), (.cutoff, "cutoff"), (.creditExhausted, "credit-exhausted"),
        (.emergencyCredit, "emergency-credit"), (.tamper, "tamper"), (.magneticField, "magnetic-field"),
        (.reverseFlow, "reverse-flow"), (.batteryLow, "battery-low"), (.clockInvalid, "clock-invalid"),
        (.memoryFault, "memory-fault"),
    ]

    /// Names of the set bits; undefined bits appear as `bit-N`.
    public var names: [String] {
        var out: [String] = []
        for bit in 0..<16 {
            let mask = Alarms(rawValue: 1 << bit)
            guard self.contains(mask) else { continue }
            out.append(Self.names.first { $0.0 == mask }?.1 ?? "bit-\(bit)")
        }
        return out
    }
}

/// Event codes of the meter's log (§4.2 READ_EVENTS).
public enum EventCode: UInt16, CaseIterable, Hashable, Sendable {
    case powerUp = 0x0001
    case powerDown = 0x0002
    case creditApplied = 0x0010
    case creditRefused = 0x0011
    case lowCreditAlarm = 0x0020
    case cutoff = 0x0021
    case supplyRestored = 0x0022
    case creditExhausted = 0x0023
    case relayOpenedByCommand = 0x0030
    case relayClosedByCommand = 0x0031
    case clockSet = 0x0040
    case thresholdsChanged = 0x0050
    case tamper = 0x0060
    case magneticField = 0x0061
    case alarmsAcknowledged = 0x0070
    case cardInserted = 0x0080
    case cardRefused = 0x0081
    case keyChanged = 0x0090
    case addressChanged = 0x00A0

    public var name: String {
        switch self {
        case .powerUp: "power-up"
        case .powerDown: "power-down"
        case .creditApplied: "credit-applied"
        case .creditRefused: "credit-refused"
        case .lowCreditAlarm: "low-credit-alarm"
        case .cutoff: "cutoff"
        case .supplyRestored: "supply-restored"
        case .creditExhausted: "credit-exhausted"
        case .relayOpenedByCommand: "relay-opened-by-command"
        case .relayClosedByCommand: "relay-closed-by-command"
        case .clockSet: "clock-set"
        case .thresholdsChanged: "thresholds-changed"
        case .tamper: "tamper"
        case .magneticField: "magnetic-field"
        case .alarmsAcknowledged: "alarms-acknowledged"
        case .cardInserted: "card-inserted"
        case .cardRefused: "card-refused"
        case .keyChanged: "key-changed"
        case .addressChanged: "address-changed"
        }
    }
}

/// Card writer state (§4.3 WRITER_STATUS).
public enum WriterState: UInt8, CaseIterable, Hashable, Sendable {
    case ready = 0
    case busy = 1
    case fault = 2

    public var name: String {
        switch self {
        case .ready: "ready"
        case .busy: "busy"
        case .fault: "fault"
        }
    }
}

/// The card in a writer's slot (§4.3 CARD_PRESENCE).
public enum CardMedia: UInt8, CaseIterable, Hashable, Sendable {
    case none = 0
    /// SLE4442-class memory card, 256 bytes.
    case memory256 = 1
    /// SLE4428-class memory card, 1024 bytes.
    case memory1024 = 2
    case unknown = 0xFF

    public var name: String {
        switch self {
        case .none: "none"
        case .memory256: "memory-256"
        case .memory1024: "memory-1024"
        case .unknown: "unknown"
        }
    }
}
