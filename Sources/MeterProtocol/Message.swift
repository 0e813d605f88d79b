/// A typed payload of one command in one direction (docs/PROTOCOL.md §4).
public protocol NativeMessage: Hashable, Sendable {
    static var command: Command { get }
    static var isResponse: Bool { get }
    /// Reads the payload; requests must consume it exactly, responses may leave later-revision bytes (§4.1).
    init(reading reader: inout ByteReader) throws(PayloadError)
    func write(to writer: inout ByteWriter)
    /// The fields in spec order, with units, for people and for JSON.
    var fields: [Field] { get }
}

/// A request, and the response type a device answers it with.
public protocol NativeRequest: NativeMessage {
    associatedtype Response: NativeMessage
}

extension NativeMessage {
    public var payload: [UInt8] {
        var writer = ByteWriter()
        self.write(to: &writer)
        return writer.bytes
    }

    public init(payload: [UInt8]) throws(PayloadError) {
        var reader = ByteReader(payload)
        try self.init(reading: &reader)
        try reader.end(strict: !Self.isResponse)
    }
}

extension NativeMessage where Self: NativeRequest {
    public static var isResponse: Bool { false }
}

/// One named value of a decoded message.
public struct Field: Hashable, Sendable {
    public var name: String
    public var value: FieldValue

    public init(_ name: String, _ value: FieldValue) {
        self.name = name
        self.value = value
    }
}

/// A decoded value with what a person needs to read it.
public indirect enum FieldValue: Hashable, Sendable {
    case unsigned(UInt64)
    case signed(Int64)
    /// An integer in a unit (`Wh`, `L`, `W`, `ms`, `s`).
    case quantity(Int64, unit: String)
    case text(String)
    case flag(Bool)
    case bytes([UInt8])
    /// An enumerated code and its name (`unknown` when undefined).
    case code(UInt64, name: String)
    /// A bit set and the names of its set bits.
    case bits(UInt64, names: [String])
    /// Seconds since 1970-01-01T00:00:00Z, shown as UTC.
    case time(UInt32)
    case records([[Field]])
}

// MARK: Decoding a frame into a message

/// A decoded frame: its header and what its payload means.
public enum DecodedMessage: Hashable, Sendable {
    case message(any NativeMessage)
    case nak(Nak)
    /// The payload did not parse as the command's message; the frame itself was valid.
    case invalid(PayloadError)

    public static func == (lhs: DecodedMessage, rhs: DecodedMessage) -> Bool {
        switch (lhs, rhs) {
        case (.message(let a), .message(let b)): a.isEqual(to: b)
        case (.nak(let a), .nak(let b)): a == b
        case (.invalid(let a), .invalid(let b)): a == b
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .message(let m):
            hasher.combine(0)
            hasher.combine(m.payload)
        case .nak(let n): hasher.combine(n)
        case .invalid(let e): hasher.combine(e)
        }
    }
}

extension NativeMessage {
    func isEqual(to other: any NativeMessage) -> Bool {
        guard let other = other as? Self else { return false }
        return self == other
    }
}

extension Frame {
    /// Every message type, keyed by command and direction.
    static let messageTypes: [UInt16: any NativeMessage.Type] = {
        let all: [any NativeMessage.Type] = [
            IdentifyRequest.self, IdentifyResponse.self,
            ReadStatusRequest.self, MeterStatus.self,
            ReadEventsRequest.self, EventPage.self,
            SetRelayRequest.self, RelayStatus.self,
            SetThresholdsRequest.self, Thresholds.self,
            SetClockRequest.self, ClockChange.self,
            ApplyCreditRequest.self, CreditResult.self,
            ReadLastSequenceRequest.self, LastSequence.self,
            AcknowledgeAlarmsRequest.self, AlarmsRemaining.self,
            DiscoverRequest.self, DiscoverResponse.self,
            SetAddressRequest.self, AddressAssigned.self,
            BroadcastTime.self,
            WriterStatusRequest.self, WriterStatus.self,
            CardPresenceRequest.self, CardPresence.self,
            ReadCardRequest.self, CardData.self,
            WriteCardRequest.self, CardWritten.self,
            EraseCardRequest.self, CardErased.self,
            BeepRequest.self, BeepDone.self,
        ]
        var map: [UInt16: any NativeMessage.Type] = [:]
        for type in all {
            let key = Self.key(type.command.rawValue, type.isResponse)
            precondition(map[key] == nil, "two message types for \(type.command.name)")
            map[key] = type
        }
        return map
    }()

    static func key(_ command: UInt8, _ response: Bool) -> UInt16 { UInt16(command) << 1 | (response ? 1 : 0) }

    /// What the payload means, per the command and direction in the header.
    public func decodeMessage() -> DecodedMessage {
        guard self.version <= Frame.currentVersion else { return .invalid(.unsupportedVersion(self.version)) }
        if self.isNak {
            do throws(PayloadError) { return .nak(try Nak(payload: self.payload)) } catch { return .invalid(error) }
        }
        guard let type = Frame.messageTypes[Frame.key(self.command, self.isResponse)] else {
            return .invalid(.unknownCommand(self.command))
        }
        do throws(PayloadError) {
            return .message(try type.init(payload: self.payload))
        } catch {
            return .invalid(error)
        }
    }

    /// A request frame for `message` to a device.
    public init<M: NativeRequest>(request message: M, address: UInt8, serial: UInt32 = Frame.anySerial, sequence: UInt8)
    {
        self.init(address: address, serial: serial, sequence: sequence, command: M.command, payload: message.payload)
    }

    /// The response frame a device sends with `message` to `request`.
    public init<M: NativeMessage>(response message: M, to request: Frame, address: UInt8, serial: UInt32) {
        self = Frame.response(to: request, address: address, serial: serial, payload: message.payload)
    }

    /// The NAK frame a device sends to refuse `request`.
    public init(nak: Nak, to request: Frame, address: UInt8, serial: UInt32) {
        self = Frame.response(to: request, address: address, serial: serial, payload: nak.payload, nak: true)
    }
}

/// The payload of a refusal (flags RESPONSE|NAK): a code and a detail word (§6).
public struct Nak: Hashable, Sendable, Error {
    public var code: UInt8
    public var detail: UInt32

    public init(_ code: NakCode, detail: UInt32 = 0) {
        self.code = code.rawValue
        self.detail = detail
    }

    public init(rawCode: UInt8, detail: UInt32) {
        self.code = rawCode
        self.detail = detail
    }

    public var knownCode: NakCode? { NakCode(rawValue: self.code) }

    public init(payload: [UInt8]) throws(PayloadError) {
        var r = ByteReader(payload)
        self.code = try r.u8("code")
        self.detail = try r.u32("detail")
    }

    public var payload: [UInt8] {
        var w = ByteWriter()
        w.u8(self.code)
        w.u32(self.detail)
        return w.bytes
    }

    public var fields: [Field] {
        var out = [Field("code", .code(UInt64(self.code), name: self.knownCode?.name ?? "unknown"))]
        out.append(Field(self.knownCode?.detailName ?? "detail", .unsigned(UInt64(self.detail))))
        return out
    }
}
