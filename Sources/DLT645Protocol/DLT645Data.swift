// Data identifiers (DI) and their BCD values (DL/T 645-2007 appendix A), as integers with their unit.

/// A data identifier DI3.DI2.DI1.DI0, written as on the standard's tables (e.g. 0x00010000 = forward active
/// energy total); sent DI0 first.
public struct DataIdentifier: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    /// Wire order: DI0 first.
    public var bytes: [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: self.value >> (8 * $0)) } }

    public init?(wire: ArraySlice<UInt8>) {
        guard wire.count >= 4 else { return nil }
        let b = Array(wire.prefix(4))
        self.value = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    public var description: String {
        self.bytes.reversed().map { b in
            let s = String(b, radix: 16, uppercase: true)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: " ")
    }

    // Energy (XXXXXX.XX kWh, 4 bytes)
    public static let combinedActiveTotal = DataIdentifier(0x0000_0000)
    public static let forwardActiveTotal = DataIdentifier(0x0001_0000)
    public static func forwardActiveTariff(_ n: UInt8) -> DataIdentifier { DataIdentifier(0x0001_0000 | UInt32(n) << 8) }
    public static let reverseActiveTotal = DataIdentifier(0x0002_0000)
    // Instantaneous values
    public static func voltage(phase: UInt8) -> DataIdentifier { DataIdentifier(0x0201_0000 | UInt32(phase) << 8) }
    public static func current(phase: UInt8) -> DataIdentifier { DataIdentifier(0x0202_0000 | UInt32(phase) << 8) }
    public static let totalActivePower = DataIdentifier(0x0203_0000)
    // Clock and status
    public static let date = DataIdentifier(0x0400_0101)
    public static let time = DataIdentifier(0x0400_0102)
    public static func statusWord(_ n: UInt8) -> DataIdentifier { DataIdentifier(0x0400_0500 | UInt32(n)) }
    public static let communicationAddress = DataIdentifier(0x0400_0401)
}

/// How a DI's value is laid out, and the integer unit metergw keeps it in.
public struct DataFormat: Hashable, Sendable {
    /// Value bytes on the wire.
    public var length: Int
    /// Decimal places in the standard's format (XXXXXX.XX kWh has 2).
    public var decimals: Int
    /// The highest bit of the most significant byte is a sign (power, current).
    public var signed: Bool
    /// Unit of the standard's value, and the unit metergw stores it in with the multiplier between them.
    public var unit: String
    public var storedUnit: String
    /// stored = standard digits × storedMultiplier (e.g. kWh with 2 decimals -> Wh: digits × 10).
    public var storedMultiplier: Int64

    public static let energy = DataFormat(length: 4, decimals: 2, signed: false, unit: "kWh", storedUnit: "Wh",
                                          storedMultiplier: 10)
    public static let voltage = DataFormat(length: 2, decimals: 1, signed: false, unit: "V", storedUnit: "dV",
                                           storedMultiplier: 1)
    public static let current = DataFormat(length: 3, decimals: 3, signed: true, unit: "A", storedUnit: "mA",
                                           storedMultiplier: 1)
    /// XX.XXXX kW: 0.1 W steps.
    public static let power = DataFormat(length: 3, decimals: 4, signed: true, unit: "kW", storedUnit: "dW",
                                         storedMultiplier: 1)
    public static let statusWord = DataFormat(length: 2, decimals: 0, signed: false, unit: "", storedUnit: "bits",
                                              storedMultiplier: 1)

    /// The format of the DIs this implementation knows.
    public static func of(_ di: DataIdentifier) -> DataFormat? {
        switch di.value >> 16 {
        case 0x0000, 0x0001, 0x0002: return .energy
        case 0x0201: return .voltage
        case 0x0202: return .current
        case 0x0203: return .power
        default: return di.value & 0xFFFF_FF00 == 0x0400_0500 ? .statusWord : nil
        }
    }
}

/// BCD as the standard lays it out: least significant byte first, two digits a byte.
public enum BCD {
    public enum Failure: Error, Hashable, Sendable {
        case notBCD(UInt8)
        case wrongLength(expected: Int, got: Int)
    }

    /// The digits of `bytes` as an integer (no sign handling).
    public static func decode(_ bytes: ArraySlice<UInt8>) throws(Failure) -> Int64 {
        var value: Int64 = 0
        for byte in bytes.reversed() {
            let hi = byte >> 4, lo = byte & 0x0F
            guard hi <= 9, lo <= 9 else { throw .notBCD(byte) }
            value = value * 100 + Int64(hi) * 10 + Int64(lo)
        }
        return value
    }

    /// `value` as `length` BCD bytes, least significant first. Values too large for `length` are a programming error.
    public static func encode(_ value: Int64, length: Int) -> [UInt8] {
        precondition(value >= 0)
        var v = value
        var out: [UInt8] = []
        for _ in 0..<length {
            let pair = v % 100
            out.append(UInt8(pair / 10) << 4 | UInt8(pair % 10))
            v /= 100
        }
        precondition(v == 0, "\(value) does not fit \(length) BCD bytes")
        return out
    }

    /// A value in the stored unit from the standard's bytes of `format` (sign bit honoured).
    public static func value(_ bytes: ArraySlice<UInt8>, format: DataFormat) throws(Failure) -> Int64 {
        guard bytes.count == format.length else { throw .wrongLength(expected: format.length, got: bytes.count) }
        var raw = Array(bytes)
        var negative = false
        if format.signed, raw[raw.count - 1] & 0x80 != 0 {
            negative = true
            raw[raw.count - 1] &= 0x7F
        }
        let digits = try decode(raw[...])
        return (negative ? -digits : digits) * format.storedMultiplier
    }

    /// The standard's bytes for a stored value (the inverse of `value`); stored values must be whole digits.
    public static func bytes(_ stored: Int64, format: DataFormat) -> [UInt8] {
        let digits = stored.magnitude / UInt64(format.storedMultiplier)
        var out = encode(Int64(digits), length: format.length)
        if format.signed && stored < 0 { out[out.count - 1] |= 0x80 }
        return out
    }
}

/// Read data (0x11) requests and answers.
public enum DLT645Read {
    public static func request(_ di: DataIdentifier, to address: DLT645Address) -> DLT645Frame {
        DLT645Frame(address: address, function: .readData, data: di.bytes)
    }

    /// The DI and value bytes of a normal read answer.
    public static func answer(_ frame: DLT645Frame) -> (DataIdentifier, ArraySlice<UInt8>)? {
        guard frame.isResponse, !frame.isAbnormal, frame.function == .readData || frame.function == .readFollowUp,
            let di = DataIdentifier(wire: frame.data[...])
        else { return nil }
        return (di, frame.data[4...])
    }

    /// Read follow-up data (0x12, DL/T 645-2007 §7.3.2): the DI and the frame's sequence number SEQ (1, 2, ...),
    /// sent while the last answer had the follow-up bit set.
    public static func followUpRequest(_ di: DataIdentifier, sequence: UInt8, to address: DLT645Address)
        -> DLT645Frame
    {
        DLT645Frame(address: address, function: .readFollowUp, data: di.bytes + [sequence])
    }

    /// The DI, value bytes and SEQ of a normal follow-up answer (its data ends with the sequence number).
    public static func followUpAnswer(_ frame: DLT645Frame) -> (DataIdentifier, ArraySlice<UInt8>, UInt8)? {
        guard frame.isResponse, !frame.isAbnormal, frame.function == .readFollowUp, frame.data.count >= 5,
            let di = DataIdentifier(wire: frame.data[...])
        else { return nil }
        return (di, frame.data[4..<(frame.data.count - 1)], frame.data[frame.data.count - 1])
    }

    /// Write data (0x14, §7.4): DI, password (PA P0 P1 P2), operator code (C0...C3), then the value, low byte
    /// first as every field.
    public static func write(_ di: DataIdentifier, value: [UInt8], password: [UInt8], operatorCode: [UInt8],
                             to address: DLT645Address) -> DLT645Frame
    {
        DLT645Frame(address: address, function: .writeData, data: di.bytes + password + operatorCode + value)
    }

    /// Date (04000101: WW DD MM YY on the wire) and time (04000102: ss mm hh) values in BCD.
    public static func dateValue(_ t: CivilTime) -> [UInt8] {
        [t.weekday, t.day, t.month, t.year % 100].map { UInt8($0 / 10) << 4 | UInt8($0 % 10) }
    }

    public static func timeValue(_ t: CivilTime) -> [UInt8] {
        [t.second, t.minute, t.hour].map { UInt8($0 / 10) << 4 | UInt8($0 % 10) }
    }

    /// Broadcast time (0x08): ss mm hh DD MM YY in BCD, to 99 99 99 99 99 99; never answered.
    public static func broadcastTime(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int)
        -> DLT645Frame
    {
        let fields = [second, minute, hour, day, month, year % 100]
        return DLT645Frame(address: .broadcast, function: .broadcastTime,
                           data: fields.map { UInt8($0 / 10) << 4 | UInt8($0 % 10) })
    }
}
