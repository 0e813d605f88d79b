/// One native frame (docs/PROTOCOL.md §2): fixed 13-byte header, payload, CRC-16.
///
/// ```
/// SOF VER FLAGS ADDR SERIAL(4) SEQ CMD LEN(2) HCS | PAYLOAD(LEN) | CRC(2)
/// ```
/// Multi-byte fields are big-endian.
public struct Frame: Hashable, Sendable {
    /// Start of frame marker (§2.1).
    public static let startMarker: UInt8 = 0x7E
    /// The version this implementation speaks (§2.1).
    public static let currentVersion: UInt8 = 1
    /// Bytes before the payload, including the header check (§2.1).
    public static let headerLength = 13
    /// Bytes after the payload (the CRC-16).
    public static let trailerLength = 2
    /// The largest payload a conforming sender produces and a receiver accepts (§2.2).
    public static let maxPayloadLength = 512
    public static let maxFrameLength = headerLength + maxPayloadLength + trailerLength
    /// A header that is followed by no payload plus its CRC: the smallest possible frame.
    public static let minFrameLength = headerLength + trailerLength

    public var version: UInt8
    public var flags: Flags
    public var address: UInt8
    public var serial: UInt32
    public var sequence: UInt8
    /// The raw command byte; `knownCommand` maps it to `Command` when this implementation knows it.
    public var command: UInt8
    public var payload: [UInt8]

    public init(
        version: UInt8 = Frame.currentVersion,
        flags: Flags = [],
        address: UInt8,
        serial: UInt32 = Frame.anySerial,
        sequence: UInt8,
        command: UInt8,
        payload: [UInt8] = []
    ) {
        self.version = version
        self.flags = flags
        self.address = address
        self.serial = serial
        self.sequence = sequence
        self.command = command
        self.payload = payload
    }

    public init(
        flags: Flags = [], address: UInt8, serial: UInt32 = Frame.anySerial, sequence: UInt8,
        command: Command, payload: [UInt8] = []
    ) {
        self.init(
            flags: flags, address: address, serial: serial, sequence: sequence, command: command.rawValue,
            payload: payload)
    }

    public var knownCommand: Command? { Command(rawValue: self.command) }
    public var isResponse: Bool { self.flags.contains(.response) }
    public var isNak: Bool { self.flags.contains(.nak) }
    public var isBroadcast: Bool { self.address == Frame.broadcastAddress }
    public var encodedLength: Int { Frame.headerLength + self.payload.count + Frame.trailerLength }

    /// Whether a device with this bus address and serial processes this frame (docs/PROTOCOL.md §3). Broadcasts
    /// are processed by everyone (and answered by no one but DISCOVER's matches).
    public func isAddressed(toAddress address: UInt8, serial: UInt32) -> Bool {
        switch self.address {
        case Frame.broadcastAddress: return true
        case Frame.bySerialAddress: return self.serial == serial
        case (Frame.maxUnicastAddress + 1)..<Frame.bySerialAddress: return false
        default: return self.address == address && (self.serial == Frame.anySerial || self.serial == serial)
        }
    }

    // MARK: Addressing (§3)

    /// Address 0: every meter acts, none answers (except DISCOVER).
    public static let broadcastAddress: UInt8 = 0
    /// Highest unicast bus address.
    public static let maxUnicastAddress: UInt8 = 247
    /// Address 0xFF: match on the serial field alone, whatever bus address the meter has.
    public static let bySerialAddress: UInt8 = 0xFF
    /// Serial 0xFFFFFFFF in a request: any serial (match on the bus address alone).
    public static let anySerial: UInt32 = 0xFFFF_FFFF

    /// Flag bits of byte 2 (§2.1). Reserved bits are sent as 0 and ignored on receipt.
    public struct Flags: OptionSet, Hashable, Sendable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// Set on every frame a device sends in answer to a request.
        public static let response = Flags(rawValue: 0x80)
        /// Set with `response` when the request was refused; the payload is a `Nak`.
        public static let nak = Flags(rawValue: 0x40)
        public static let known: Flags = [.response, .nak]
    }

    // MARK: Encoding

    /// The frame's bytes on the wire. A payload longer than `maxPayloadLength` is a programming error.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(self.encodedLength)
        self.encode(into: &out)
        return out
    }

    /// Appends the frame's bytes to `out`.
    public func encode(into out: inout [UInt8]) {
        precondition(self.payload.count <= Frame.maxPayloadLength, "payload exceeds \(Frame.maxPayloadLength) bytes")
        let start = out.count
        out.append(Frame.startMarker)
        out.append(self.version)
        out.append(self.flags.rawValue)
        out.append(self.address)
        out.append(UInt8(truncatingIfNeeded: self.serial >> 24))
        out.append(UInt8(truncatingIfNeeded: self.serial >> 16))
        out.append(UInt8(truncatingIfNeeded: self.serial >> 8))
        out.append(UInt8(truncatingIfNeeded: self.serial))
        out.append(self.sequence)
        out.append(self.command)
        out.append(UInt8(truncatingIfNeeded: self.payload.count >> 8))
        out.append(UInt8(truncatingIfNeeded: self.payload.count))
        out.append(CRC8.checksum(out[start...]))
        out.append(contentsOf: self.payload)
        let crc = CRC16.checksum(out[start...])
        out.append(UInt8(truncatingIfNeeded: crc >> 8))
        out.append(UInt8(truncatingIfNeeded: crc))
    }
}

extension Frame {
    /// The response frame a device sends to `request`: same sequence and command, the device's own identity.
    public static func response(
        to request: Frame, address: UInt8, serial: UInt32, payload: [UInt8], nak: Bool = false
    ) -> Frame {
        Frame(
            flags: nak ? [.response, .nak] : [.response], address: address, serial: serial,
            sequence: request.sequence, command: request.command, payload: payload)
    }
}
