// Modbus RTU, pure (Modbus Application Protocol v1.1b3; Modbus over Serial Line v1.02). Bytes in, values out.

/// Function codes this implementation speaks.
public enum ModbusFunction: UInt8, CaseIterable, Sendable {
    case readCoils = 0x01
    case readDiscreteInputs = 0x02
    case readHoldingRegisters = 0x03
    case readInputRegisters = 0x04
    case writeSingleCoil = 0x05
    case writeSingleRegister = 0x06
    case writeMultipleCoils = 0x0F
    case writeMultipleRegisters = 0x10
    case readWriteMultipleRegisters = 0x17
    /// Encapsulated interface transport; MEI type 0x0E is Read Device Identification.
    case encapsulatedInterface = 0x2B
}

/// Exception codes (MAP §7).
public enum ModbusException: UInt8, CaseIterable, Sendable, Error {
    case illegalFunction = 0x01
    case illegalDataAddress = 0x02
    case illegalDataValue = 0x03
    case serverDeviceFailure = 0x04
    case acknowledge = 0x05
    case serverDeviceBusy = 0x06
    case memoryParityError = 0x08
    case gatewayPathUnavailable = 0x0A
    case gatewayTargetFailedToRespond = 0x0B

    public var name: String {
        switch self {
        case .illegalFunction: "illegal function"
        case .illegalDataAddress: "illegal data address"
        case .illegalDataValue: "illegal data value"
        case .serverDeviceFailure: "server device failure"
        case .acknowledge: "acknowledge"
        case .serverDeviceBusy: "server device busy"
        case .memoryParityError: "memory parity error"
        case .gatewayPathUnavailable: "gateway path unavailable"
        case .gatewayTargetFailedToRespond: "gateway target device failed to respond"
        }
    }
}

/// Why bytes are not a valid Modbus message. A closed set.
public enum ModbusError: Error, Hashable, Sendable {
    case tooShort(Int)
    case crcMismatch
    case unknownFunction(UInt8)
    /// A field is out of the range the standard allows, or the byte count disagrees with the data.
    case malformed(String)
    /// The response answers another function than the request's.
    case functionMismatch(expected: UInt8, got: UInt8)
    /// An exception response with a code the standard does not define.
    case unknownException(UInt8)

    public var explanation: String {
        switch self {
        case .tooShort(let n): "\(n) bytes is too short for a Modbus RTU frame (at least 4)"
        case .crcMismatch: "CRC-16/MODBUS mismatch: corrupted in transit"
        case .unknownFunction(let f): "unknown function code 0x\(String(f, radix: 16))"
        case .malformed(let why): "malformed: \(why)"
        case .functionMismatch(let e, let g): "answer to function \(g), expected \(e)"
        case .unknownException(let c): "exception with undefined code \(c)"
        }
    }
}

/// Address byte, PDU, CRC: one RTU frame. Its end is found by 3.5 characters of silence (`ModbusTiming`),
/// never by guessing lengths from CRCs.
public struct ModbusADU: Hashable, Sendable {
    /// 0 broadcast (never answered), 1...247 servers.
    public var address: UInt8
    /// Function code and data.
    public var pdu: [UInt8]

    public init(address: UInt8, pdu: [UInt8]) {
        self.address = address
        self.pdu = pdu
    }

    public static let broadcastAddress: UInt8 = 0
    /// The standard's limit: 256 bytes per RTU frame.
    public static let maxLength = 256

    public func encoded() -> [UInt8] { ModbusCRC.appending(to: [self.address] + self.pdu) }

    /// A frame as delimited by line silence: checked, split into address and PDU.
    public init(frame: [UInt8]) throws(ModbusError) {
        try self.init(framed: frame)
        guard ModbusCRC.verifies(frame) else { throw .crcMismatch }
    }

    /// A frame ``ModbusRTUFramer`` delivered: its CRC is already checked, so it is not computed twice.
    public init(framed frame: [UInt8]) throws(ModbusError) {
        guard frame.count >= 4 else { throw .tooShort(frame.count) }
        guard frame.count <= Self.maxLength else { throw .malformed("\(frame.count) bytes exceeds 256") }
        self.address = frame[0]
        self.pdu = Array(frame[1..<(frame.count - 2)])
    }
}

/// A request PDU (client to server).
public enum ModbusRequest: Hashable, Sendable {
    case readCoils(address: UInt16, count: UInt16)
    case readDiscreteInputs(address: UInt16, count: UInt16)
    case readHoldingRegisters(address: UInt16, count: UInt16)
    case readInputRegisters(address: UInt16, count: UInt16)
    case writeSingleCoil(address: UInt16, on: Bool)
    case writeSingleRegister(address: UInt16, value: UInt16)
    case writeMultipleCoils(address: UInt16, values: [Bool])
    case writeMultipleRegisters(address: UInt16, values: [UInt16])
    case readWriteMultipleRegisters(readAddress: UInt16, readCount: UInt16, writeAddress: UInt16, values: [UInt16])
    /// Read Device Identification: `code` 1 basic, 2 regular, 3 extended, 4 one object; from `objectID`.
    case readDeviceIdentification(code: UInt8, objectID: UInt8)

    public var function: ModbusFunction {
        switch self {
        case .readCoils: .readCoils
        case .readDiscreteInputs: .readDiscreteInputs
        case .readHoldingRegisters: .readHoldingRegisters
        case .readInputRegisters: .readInputRegisters
        case .writeSingleCoil: .writeSingleCoil
        case .writeSingleRegister: .writeSingleRegister
        case .writeMultipleCoils: .writeMultipleCoils
        case .writeMultipleRegisters: .writeMultipleRegisters
        case .readWriteMultipleRegisters: .readWriteMultipleRegisters
        case .readDeviceIdentification: .encapsulatedInterface
        }
    }

    public var pdu: [UInt8] {
        var out: [UInt8] = []
        self.encodePDU(into: &out)
        return out
    }

    /// The whole RTU frame for server `address`: address, PDU and CRC, written into one buffer.
    public func encodedADU(address: UInt8) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(8)
        out.append(address)
        self.encodePDU(into: &out)
        let crc = ModbusCRC.checksum(out)
        out.append(UInt8(truncatingIfNeeded: crc))
        out.append(UInt8(truncatingIfNeeded: crc >> 8))
        return out
    }

    /// Appends the PDU (function code and data) to `out`.
    func encodePDU(into out: inout [UInt8]) {
        out.append(self.function.rawValue)
        func u16(_ v: UInt16) {
            out.append(UInt8(v >> 8))
            out.append(UInt8(truncatingIfNeeded: v))
        }
        switch self {
        case .readCoils(let a, let n), .readDiscreteInputs(let a, let n), .readHoldingRegisters(let a, let n),
            .readInputRegisters(let a, let n):
            u16(a)
            u16(n)
        case .writeSingleCoil(let a, let on):
            u16(a)
            u16(on ? 0xFF00 : 0x0000)
        case .writeSingleRegister(let a, let v):
            u16(a)
            u16(v)
        case .writeMultipleCoils(let a, let values):
            u16(a)
            u16(UInt16(values.count))
            let packed = Self.pack(values)
            out.append(UInt8(packed.count))
            out += packed
        case .writeMultipleRegisters(let a, let values):
            u16(a)
            u16(UInt16(values.count))
            out.append(UInt8(values.count * 2))
            values.forEach(u16)
        case .readWriteMultipleRegisters(let ra, let rn, let wa, let values):
            u16(ra)
            u16(rn)
            u16(wa)
            u16(UInt16(values.count))
            out.append(UInt8(values.count * 2))
            values.forEach(u16)
        case .readDeviceIdentification(let code, let object):
            out += [0x0E, code, object]
        }
    }

    /// A request as a server receives it (for emulators), with the standard's quantity limits checked.
    public init(pdu: [UInt8]) throws(ModbusError) {
        guard let code = pdu.first else { throw .tooShort(0) }
        guard let function = ModbusFunction(rawValue: code) else { throw .unknownFunction(code) }
        var r = Reader(pdu, from: 1)
        switch function {
        case .readCoils, .readDiscreteInputs:
            let (a, n) = (try r.u16(), try r.u16())
            guard (1...2000).contains(n) else { throw .malformed("bit count \(n) outside 1...2000") }
            self = function == .readCoils ? .readCoils(address: a, count: n) : .readDiscreteInputs(address: a, count: n)
        case .readHoldingRegisters, .readInputRegisters:
            let (a, n) = (try r.u16(), try r.u16())
            guard (1...125).contains(n) else { throw .malformed("register count \(n) outside 1...125") }
            self = function == .readHoldingRegisters
                ? .readHoldingRegisters(address: a, count: n) : .readInputRegisters(address: a, count: n)
        case .writeSingleCoil:
            let (a, v) = (try r.u16(), try r.u16())
            guard v == 0xFF00 || v == 0 else { throw .malformed("coil value 0x\(String(v, radix: 16))") }
            self = .writeSingleCoil(address: a, on: v == 0xFF00)
        case .writeSingleRegister:
            self = .writeSingleRegister(address: try r.u16(), value: try r.u16())
        case .writeMultipleCoils:
            let (a, n, bytes) = (try r.u16(), try r.u16(), try r.u8())
            guard (1...1968).contains(n), Int(bytes) == (Int(n) + 7) / 8 else {
                throw .malformed("coil count \(n) with \(bytes) bytes")
            }
            let packed = try r.bytes(Int(bytes))
            self = .writeMultipleCoils(address: a, values: Self.unpack(packed, count: Int(n)))
        case .writeMultipleRegisters:
            let (a, n, bytes) = (try r.u16(), try r.u16(), try r.u8())
            guard (1...123).contains(n), Int(bytes) == Int(n) * 2 else {
                throw .malformed("register count \(n) with \(bytes) bytes")
            }
            self = .writeMultipleRegisters(address: a, values: try (0..<n).map { _ throws(ModbusError) in try r.u16() })
        case .readWriteMultipleRegisters:
            let (ra, rn, wa, wn, bytes) = (try r.u16(), try r.u16(), try r.u16(), try r.u16(), try r.u8())
            guard (1...125).contains(rn), (1...121).contains(wn), Int(bytes) == Int(wn) * 2 else {
                throw .malformed("read \(rn) / write \(wn) registers with \(bytes) bytes")
            }
            let values = try (0..<wn).map { _ throws(ModbusError) in try r.u16() }
            self = .readWriteMultipleRegisters(readAddress: ra, readCount: rn, writeAddress: wa, values: values)
        case .encapsulatedInterface:
            guard try r.u8() == 0x0E else { throw .malformed("only MEI type 0x0E (device identification)") }
            let (code, object) = (try r.u8(), try r.u8())
            guard (1...4).contains(code) else { throw .malformed("read device id code \(code)") }
            self = .readDeviceIdentification(code: code, objectID: object)
        }
        guard r.atEnd else { throw .malformed("\(pdu.count - r.index) bytes after the request") }
    }

    static func pack(_ bits: [Bool]) -> [UInt8] {
        stride(from: 0, to: bits.count, by: 8).map { start in
            var byte: UInt8 = 0
            for i in 0..<min(8, bits.count - start) where bits[start + i] { byte |= 1 << UInt8(i) }
            return byte
        }
    }

    static func unpack(_ bytes: [UInt8], count: Int) -> [Bool] {
        (0..<count).map { bytes[$0 / 8] & (1 << UInt8($0 % 8)) != 0 }
    }
}

/// A response PDU (server to client).
public enum ModbusResponse: Hashable, Sendable {
    case bits([Bool])
    case registers([UInt16])
    case wroteSingleCoil(address: UInt16, on: Bool)
    case wroteSingleRegister(address: UInt16, value: UInt16)
    case wroteMultiple(address: UInt16, count: UInt16)
    case deviceIdentification(code: UInt8, conformity: UInt8, moreFollows: Bool, nextObjectID: UInt8,
                              objects: [DeviceObject])
    case exception(function: UInt8, ModbusException)

    public struct DeviceObject: Hashable, Sendable {
        /// 0 vendor name, 1 product code, 2 revision, 3 vendor URL, 4 product name, 5 model name, ...
        public var id: UInt8
        public var value: [UInt8]

        public init(id: UInt8, value: [UInt8]) {
            self.id = id
            self.value = value
        }
    }

    /// The response PDU a server sends for `request`.
    public func pdu(for request: ModbusRequest) -> [UInt8] {
        let f = request.function.rawValue
        func u16(_ v: UInt16) -> [UInt8] { [UInt8(v >> 8), UInt8(truncatingIfNeeded: v)] }
        switch self {
        case .bits(let bits):
            let packed = ModbusRequest.pack(bits)
            return [f, UInt8(packed.count)] + packed
        case .registers(let values):
            return [f, UInt8(values.count * 2)] + values.flatMap(u16)
        case .wroteSingleCoil(let a, let on): return [f] + u16(a) + u16(on ? 0xFF00 : 0)
        case .wroteSingleRegister(let a, let v): return [f] + u16(a) + u16(v)
        case .wroteMultiple(let a, let n): return [f] + u16(a) + u16(n)
        case .deviceIdentification(let code, let conformity, let more, let next, let objects):
            var out: [UInt8] = [f, 0x0E, code, conformity, more ? 0xFF : 0x00, next, UInt8(objects.count)]
            for o in objects { out += [o.id, UInt8(o.value.count)] + o.value }
            return out
        case .exception(let function, let code): return [function | 0x80, code.rawValue]
        }
    }

    /// The response to `request` in `pdu`, checked against what the request asked for.
    public init(pdu: [UInt8], for request: ModbusRequest) throws(ModbusError) {
        guard let code = pdu.first else { throw .tooShort(0) }
        let expected = request.function.rawValue
        if code == expected | 0x80 {
            guard pdu.count == 2 else { throw .malformed("exception response of \(pdu.count) bytes") }
            guard let exception = ModbusException(rawValue: pdu[1]) else { throw .unknownException(pdu[1]) }
            self = .exception(function: expected, exception)
            return
        }
        guard code == expected else { throw .functionMismatch(expected: expected, got: code) }
        var r = Reader(pdu, from: 1)
        switch request {
        case .readCoils(_, let n), .readDiscreteInputs(_, let n):
            let count = try r.u8()
            guard Int(count) == (Int(n) + 7) / 8 else { throw .malformed("\(count) bytes for \(n) bits") }
            self = .bits(ModbusRequest.unpack(try r.bytes(Int(count)), count: Int(n)))
        case .readHoldingRegisters(_, let n), .readInputRegisters(_, let n),
            .readWriteMultipleRegisters(_, let n, _, _):
            let count = try r.u8()
            guard Int(count) == Int(n) * 2 else { throw .malformed("\(count) bytes for \(n) registers") }
            self = .registers(try r.words(Int(n)))
        case .writeSingleCoil:
            let (a, v) = (try r.u16(), try r.u16())
            self = .wroteSingleCoil(address: a, on: v == 0xFF00)
        case .writeSingleRegister:
            self = .wroteSingleRegister(address: try r.u16(), value: try r.u16())
        case .writeMultipleCoils, .writeMultipleRegisters:
            self = .wroteMultiple(address: try r.u16(), count: try r.u16())
        case .readDeviceIdentification:
            guard try r.u8() == 0x0E else { throw .malformed("MEI type") }
            let (code, conformity, more, next, count) = (try r.u8(), try r.u8(), try r.u8(), try r.u8(), try r.u8())
            var objects: [DeviceObject] = []
            for _ in 0..<count {
                let id = try r.u8()
                let length = try r.u8()
                objects.append(DeviceObject(id: id, value: try r.bytes(Int(length))))
            }
            self = .deviceIdentification(code: code, conformity: conformity, moreFollows: more == 0xFF,
                                         nextObjectID: next, objects: objects)
        }
        guard r.atEnd else { throw .malformed("\(pdu.count - r.index) bytes after the response") }
    }
}

/// Inter-character and inter-frame silences (Modbus over Serial Line §2.5.1.1): 1.5 and 3.5 character times,
/// fixed at 750 µs and 1750 µs above 19200 baud.
public enum ModbusTiming {
    /// Microseconds of silence that end a frame (t3.5).
    public static func frameSilenceMicros(baud: Int, bitsPerCharacter: Int = 11) -> Int {
        baud > 19_200 ? 1_750 : (bitsPerCharacter * 1_000_000 * 7 + baud * 2 - 1) / (baud * 2)
    }

    /// Microseconds of silence inside a frame beyond which the frame is broken (t1.5).
    public static func characterGapMicros(baud: Int, bitsPerCharacter: Int = 11) -> Int {
        baud > 19_200 ? 750 : (bitsPerCharacter * 1_000_000 * 3 + baud * 2 - 1) / (baud * 2)
    }
}

struct Reader {
    let bytes: [UInt8]
    var index: Int

    init(_ bytes: [UInt8], from index: Int) {
        self.bytes = bytes
        self.index = index
    }

    var atEnd: Bool { self.index == self.bytes.count }

    mutating func u8() throws(ModbusError) -> UInt8 {
        guard self.index < self.bytes.count else { throw .malformed("ends early") }
        defer { self.index += 1 }
        return self.bytes[self.index]
    }

    mutating func u16() throws(ModbusError) -> UInt16 { UInt16(try self.u8()) << 8 | UInt16(try self.u8()) }

    /// `n` big-endian 16-bit words, checked once for length (a register read's hot path).
    mutating func words(_ n: Int) throws(ModbusError) -> [UInt16] {
        guard n >= 0, self.index + 2 * n <= self.bytes.count else { throw .malformed("ends early") }
        let start = self.index
        defer { self.index += 2 * n }
        var words = [UInt16](repeating: 0, count: n)
        for i in 0..<n { words[i] = UInt16(self.bytes[start + 2 * i]) << 8 | UInt16(self.bytes[start + 2 * i + 1]) }
        return words
    }

    mutating func bytes(_ n: Int) throws(ModbusError) -> [UInt8] {
        guard self.index + n <= self.bytes.count else { throw .malformed("ends early") }
        defer { self.index += n }
        return Array(self.bytes[self.index..<(self.index + n)])
    }
}
