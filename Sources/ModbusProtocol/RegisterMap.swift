// Register maps as data (docs/INTEROP.md "Register maps"): what a technician writes for a new meter model. Each entry says where a
// value lives, how it is encoded, and how it becomes an integer in metergw's units. Pure: no files here; the
// caller reads the JSON.

/// One meter model's registers.
public struct RegisterMap: Codable, Hashable, Sendable {
    public var name: String
    public var description: String
    /// Where the register list comes from (the manufacturer's document, with its version).
    public var source: String
    /// The line settings such meters ship with, e.g. "9600:8N1".
    public var defaultLine: String?
    public var registers: [Entry]

    public init(name: String, description: String, source: String, defaultLine: String?, registers: [Entry]) {
        self.name = name
        self.description = description
        self.source = source
        self.defaultLine = defaultLine
        self.registers = registers
    }

    public struct Entry: Codable, Hashable, Sendable {
        /// metergw's name for the value, e.g. "importEnergy".
        public var name: String
        /// Which reading it feeds: register (energy/volume total), demand, voltage, current, frequency, ...
        public var reading: String
        public var table: Table
        /// Zero-based protocol address (the manual's 30001 is input register 0).
        public var address: UInt16
        public var type: ValueType
        /// For 32/64-bit values: which 16-bit word comes first.
        public var wordOrder: WordOrder?
        /// stored = raw × multiply / divide (rounded to nearest), e.g. kWh float -> Wh: multiply 1000.
        public var multiply: Int64?
        public var divide: Int64?
        /// The stored integer's unit: Wh, L, W, dV, mA, cHz, ...
        public var unit: String
        /// Where this register is documented (table and row of the manufacturer's document).
        public var reference: String?
        /// The meter accepts writes to it (function 05/06/0F/10); emulators refuse others with exception 2.
        public var writable: Bool?

        public var registerCount: UInt16 { self.type.registerCount }
    }

    public enum Table: String, Codable, Hashable, Sendable {
        case holding, input, coil, discrete
    }

    public enum ValueType: String, Codable, Hashable, Sendable {
        case u16, s16, u32, s32, u64, float32, bcd16, bcd32

        public var registerCount: UInt16 {
            switch self {
            case .u16, .s16, .bcd16: 1
            case .u32, .s32, .float32, .bcd32: 2
            case .u64: 4
            }
        }
    }

    public enum WordOrder: String, Codable, Hashable, Sendable {
        /// High word first (Modbus's usual big-endian, "ABCD").
        case big
        /// Low word first ("CDAB"), as many meters send 32-bit values.
        case little
    }

    public enum Failure: Error, Hashable, Sendable {
        case wrongRegisterCount(entry: String, expected: Int, got: Int)
        case notBCD(entry: String)
        case notFinite(entry: String)
        case overflow(entry: String)
        case invalid(String)

        public var explanation: String {
            switch self {
            case .wrongRegisterCount(let e, let x, let g): "\(e): needs \(x) registers, got \(g)"
            case .notBCD(let e): "\(e): register is not BCD"
            case .notFinite(let e): "\(e): the meter sent NaN or infinity"
            case .overflow(let e): "\(e): value too large for a 64-bit integer"
            case .invalid(let why): why
            }
        }
    }

    /// Checks what JSON cannot: sensible scales, register ranges that fit, unique names.
    public func validate() throws(Failure) {
        var names = Set<String>()
        for e in self.registers {
            guard names.insert(e.name).inserted else { throw .invalid("register \(e.name) appears twice") }
            guard (e.multiply ?? 1) > 0, (e.divide ?? 1) > 0 else {
                throw .invalid("\(e.name): multiply and divide must be positive")
            }
            guard UInt32(e.address) + UInt32(e.registerCount) <= 0x1_0000 else {
                throw .invalid("\(e.name): address \(e.address) + \(e.registerCount) registers passes 65535")
            }
        }
    }

    /// The integer value of `entry` from its raw registers.
    public static func value(of entry: Entry, registers: [UInt16]) throws(Failure) -> Int64 {
        guard registers.count == Int(entry.registerCount) else {
            throw .wrongRegisterCount(entry: entry.name, expected: Int(entry.registerCount), got: registers.count)
        }
        let words = (entry.wordOrder ?? .big) == .big ? registers : registers.reversed()
        let multiply = entry.multiply ?? 1
        let divide = entry.divide ?? 1
        switch entry.type {
        case .u16, .s16, .u32, .s32, .u64, .bcd16, .bcd32:
            let raw = try Self.integer(entry, words)
            let (product, overflow) = raw.multipliedReportingOverflow(by: multiply)
            guard !overflow else { throw .overflow(entry: entry.name) }
            return Self.divideRounded(product, by: divide)
        case .float32:
            let bits = UInt32(words[0]) << 16 | UInt32(words[1])
            guard let scaled = Self.scaledFloat32(bits: bits, multiply: multiply, divide: divide) else {
                throw (bits >> 23) & 0xFF == 0xFF ? .notFinite(entry: entry.name) : .overflow(entry: entry.name)
            }
            return scaled
        }
    }

    /// The raw registers that hold `value` (in the entry's stored unit), in the entry's word order: the inverse of
    /// ``value(of:registers:)``, for emulators and writes. Integer arithmetic only, floats rounded to nearest.
    public static func registers(of entry: Entry, value: Int64) throws(Failure) -> [UInt16] {
        let multiply = entry.multiply ?? 1
        let divide = entry.divide ?? 1
        var words: [UInt16]
        switch entry.type {
        case .float32:
            guard let bits = Self.float32Bits(numerator: value, times: divide, over: multiply) else {
                throw .overflow(entry: entry.name)
            }
            words = [UInt16(bits >> 16), UInt16(truncatingIfNeeded: bits)]
        default:
            let (product, overflow) = value.multipliedReportingOverflow(by: divide)
            guard !overflow else { throw .overflow(entry: entry.name) }
            let raw = Self.divideRounded(product, by: multiply)
            let count = Int(entry.registerCount)
            var u: UInt64
            switch entry.type {
            case .u16, .u32, .u64:
                guard raw >= 0, count == 4 || raw < Int64(1) << (16 * count) else { throw .overflow(entry: entry.name) }
                u = UInt64(raw)
            case .s16, .s32:
                let limit = Int64(1) << (16 * count - 1)
                guard raw >= -limit, raw < limit else { throw .overflow(entry: entry.name) }
                u = UInt64(bitPattern: raw) & ((UInt64(1) << (16 * count)) - 1)
            case .bcd16, .bcd32:
                guard raw >= 0 else { throw .overflow(entry: entry.name) }
                var v = raw
                u = 0
                for i in 0..<(4 * count) {
                    u |= UInt64(v % 10) << (4 * UInt64(i))
                    v /= 10
                }
                guard v == 0 else { throw .overflow(entry: entry.name) }
            case .float32: preconditionFailure("handled above")
            }
            words = (0..<count).map { i in UInt16(truncatingIfNeeded: u >> (16 * UInt64(count - 1 - i))) }
        }
        return (entry.wordOrder ?? .big) == .big ? words : words.reversed()
    }

    /// The IEEE 754 single nearest to n × a / b (round half up on the magnitude), in integer arithmetic; nil
    /// beyond the float's range.
    public static func float32Bits(numerator n: Int64, times a: Int64, over b: Int64) -> UInt32? {
        precondition(a > 0 && b > 0)
        let negative = n < 0
        var m = UInt128(n.magnitude) * UInt128(a)
        var d = UInt128(b)
        guard m != 0 else { return negative ? 0x8000_0000 : 0 }
        // Scale so that 2^23 <= m / d < 2^24; value = (m / d) × 2^(-k).
        var k = 0
        while m / d >= UInt128(1) << 24 {
            d <<= 1
            k -= 1
        }
        while m / d < UInt128(1) << 23 {
            m <<= 1
            k += 1
            if k > 200 { return negative ? 0x8000_0000 : 0 }
        }
        var mantissa = (m + d / 2) / d
        if mantissa == UInt128(1) << 24 {
            mantissa >>= 1
            k -= 1
        }
        let exponent = 150 - k
        guard exponent < 255 else { return nil }
        // Below the normal range: flush to zero (no meter register holds such values).
        guard exponent > 0 else { return negative ? 0x8000_0000 : 0 }
        let bits = UInt32(exponent) << 23 | UInt32(mantissa & 0x7F_FFFF)
        return negative ? bits | 0x8000_0000 : bits
    }

    static func integer(_ entry: Entry, _ words: [UInt16]) throws(Failure) -> Int64 {
        var u: UInt64 = 0
        for w in words { u = u << 16 | UInt64(w) }
        switch entry.type {
        case .u16, .u32: return Int64(u)
        case .s16: return Int64(Int16(bitPattern: UInt16(u)))
        case .s32: return Int64(Int32(bitPattern: UInt32(u)))
        case .u64:
            guard u <= UInt64(Int64.max) else { throw .overflow(entry: entry.name) }
            return Int64(u)
        case .bcd16, .bcd32:
            var value: Int64 = 0
            for shift in stride(from: words.count * 16 - 4, through: 0, by: -4) {
                let digit = (u >> UInt64(shift)) & 0xF
                guard digit <= 9 else { throw .notBCD(entry: entry.name) }
                value = value * 10 + Int64(digit)
            }
            return value
        case .float32: preconditionFailure("floats are scaled, not read as integers")
        }
    }

    /// round(n / d), halves away from zero.
    static func divideRounded(_ n: Int64, by d: Int64) -> Int64 {
        guard d != 1 else { return n }
        let q = n / d, r = n % d
        if r.magnitude * 2 >= d.magnitude { return q + (n < 0 ? -1 : 1) }
        return q
    }

    /// An IEEE 754 single, times multiply / divide, rounded to the nearest integer, in integer arithmetic only
    /// (no Float or Double touches a meter register). nil for NaN, infinity, or a result beyond Int64.
    public static func scaledFloat32(bits: UInt32, multiply: Int64, divide: Int64) -> Int64? {
        let negative = bits >> 31 == 1
        let exponent = Int((bits >> 23) & 0xFF)
        let fraction = UInt64(bits & 0x7F_FFFF)
        guard exponent != 0xFF else { return nil }
        // value = mantissa × 2^shift exactly; work in 128 bits so no step rounds or overflows silently.
        let mantissa = UInt128(exponent == 0 ? fraction : fraction | 0x80_0000)
        let shift = exponent == 0 ? -149 : exponent - 150
        var n = mantissa * UInt128(multiply)
        var d = UInt128(divide)
        if shift >= 0 {
            guard n.leadingZeroBitCount > shift else { return nil }
            n <<= shift
        } else {
            // Below 2^-100 of the divisor the value rounds to 0 whatever the numerator (n < 2^88 here).
            guard -shift < 100 else { return 0 }
            d <<= -shift
        }
        let rounded = (n + d / 2) / d
        guard rounded <= UInt128(Int64.max) else { return nil }
        return negative ? -Int64(rounded) : Int64(rounded)
    }
}
