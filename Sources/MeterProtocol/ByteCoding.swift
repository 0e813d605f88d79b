/// Why a payload could not be read as the message its command names (docs/PROTOCOL.md §4). A closed set.
public enum PayloadError: Error, Hashable, Sendable {
    /// The payload ended before `field` (needed `needed` more bytes).
    case truncated(field: String, needed: Int)
    /// A request carried bytes after its last field (requests are exact, §4.1).
    case trailingBytes(count: Int)
    /// A field holds a value the protocol does not define.
    case invalidValue(field: String, value: UInt64)
    /// The command byte is not one this implementation knows.
    case unknownCommand(UInt8)
    /// The frame's version is newer than this implementation.
    case unsupportedVersion(UInt8)
    /// A message that must be broadcast was addressed, or the other way round.
    case invalidAddressing(String)
    /// An answer in another protocol (Modbus RTU, DL/T 645) that does not read as the request's answer, and why.
    case malformed(String)

    public var explanation: String {
        switch self {
        case .truncated(let field, let needed): "payload ends before \(field) (\(needed) more bytes needed)"
        case .trailingBytes(let count): "\(count) unexpected bytes after the last field"
        case .invalidValue(let field, let value): "\(field) has undefined value \(value)"
        case .unknownCommand(let code): "unknown command 0x\(hex2(code))"
        case .unsupportedVersion(let v): "protocol version \(v) is newer than this implementation (1)"
        case .invalidAddressing(let why): why
        case .malformed(let why): why
        }
    }
}

/// Reads big-endian fields from a payload, naming the field in any error.
public struct ByteReader {
    private let bytes: [UInt8]
    public private(set) var index: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.index = 0
    }

    public var remaining: Int { self.bytes.count - self.index }

    public mutating func u8(_ field: String) throws(PayloadError) -> UInt8 {
        try self.need(1, field)
        defer { self.index += 1 }
        return self.bytes[self.index]
    }

    public mutating func u16(_ field: String) throws(PayloadError) -> UInt16 {
        UInt16(truncatingIfNeeded: try self.uint(2, field))
    }

    public mutating func u32(_ field: String) throws(PayloadError) -> UInt32 {
        UInt32(truncatingIfNeeded: try self.uint(4, field))
    }

    public mutating func u64(_ field: String) throws(PayloadError) -> UInt64 { try self.uint(8, field) }

    public mutating func i64(_ field: String) throws(PayloadError) -> Int64 {
        Int64(bitPattern: try self.uint(8, field))
    }

    public mutating func bytes(_ count: Int, _ field: String) throws(PayloadError) -> [UInt8] {
        try self.need(count, field)
        defer { self.index += count }
        return Array(self.bytes[self.index..<(self.index + count)])
    }

    public mutating func rest() -> [UInt8] {
        defer { self.index = self.bytes.count }
        return Array(self.bytes[self.index...])
    }

    /// Requests must be exact; a response may grow at its end in a later revision (§4.1).
    public func end(strict: Bool) throws(PayloadError) {
        if strict && self.remaining > 0 { throw .trailingBytes(count: self.remaining) }
    }

    private mutating func uint(_ width: Int, _ field: String) throws(PayloadError) -> UInt64 {
        try self.need(width, field)
        var value: UInt64 = 0
        for i in 0..<width { value = value << 8 | UInt64(self.bytes[self.index + i]) }
        self.index += width
        return value
    }

    private func need(_ count: Int, _ field: String) throws(PayloadError) {
        if self.remaining < count { throw .truncated(field: field, needed: count - self.remaining) }
    }
}

/// Writes big-endian fields.
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ v: UInt8) { self.bytes.append(v) }
    public mutating func u16(_ v: UInt16) { self.uint(UInt64(v), 2) }
    public mutating func u32(_ v: UInt32) { self.uint(UInt64(v), 4) }
    public mutating func u64(_ v: UInt64) { self.uint(v, 8) }
    public mutating func i64(_ v: Int64) { self.uint(UInt64(bitPattern: v), 8) }
    public mutating func bytes<C: Collection>(_ v: C) where C.Element == UInt8 { self.bytes.append(contentsOf: v) }

    private mutating func uint(_ v: UInt64, _ width: Int) {
        for i in stride(from: width - 1, through: 0, by: -1) { self.bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) }
    }
}

@usableFromInline
func hex2(_ byte: UInt8) -> String {
    let digits = Array("0123456789ABCDEF")
    return String([digits[Int(byte >> 4)], digits[Int(byte & 0x0F)]])
}

/// Upper-case hex with a space between bytes, as the spec's examples are written.
public func hexString<C: Collection>(_ bytes: C, separator: String = " ") -> String where C.Element == UInt8 {
    bytes.map(hex2).joined(separator: separator)
}

/// Parses hex text: pairs of digits, with any whitespace, `:`, `-` or `0x` prefixes between bytes ignored.
public func parseHex(_ text: String) -> [UInt8]? {
    var out: [UInt8] = []
    var high: UInt8?
    var previous: Character = " "
    for ch in text {
        if ch == "x" || ch == "X" {
            // Only as part of a "0x" prefix at a byte boundary.
            guard previous == "0", let h = high, h == 0 else { return nil }
            high = nil
            previous = ch
            continue
        }
        previous = ch
        if ch.isWhitespace || ch == ":" || ch == "-" || ch == "," {
            if high != nil { return nil }
            continue
        }
        guard let v = ch.hexDigitValue else { return nil }
        if let h = high {
            out.append(h << 4 | UInt8(v))
            high = nil
        } else {
            high = UInt8(v)
        }
    }
    return high == nil ? out : nil
}
