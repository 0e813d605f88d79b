/// CRC-16/MODBUS: poly 0x8005 reflected (0xA001), init 0xFFFF, reflected in and out, xorout 0.
/// Check value over "123456789" is 0x4B37. Sent low byte first (Modbus over serial line v1.02 §2.5.1.2).
public enum ModbusCRC {
    public static let checkValue: UInt16 = 0x4B37

    public static func checksum<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var crc: UInt16 = 0xFFFF
        for byte in bytes { crc = (crc >> 8) ^ table[Int(UInt8(truncatingIfNeeded: crc) ^ byte)] }
        return crc
    }

    static let table: [UInt16] = (0..<256).map { b in
        var crc = UInt16(b)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xA001 : crc >> 1 }
        return crc
    }

    /// `bytes` followed by their CRC, low byte first.
    public static func appending(to bytes: [UInt8]) -> [UInt8] {
        let crc = checksum(bytes)
        return bytes + [UInt8(truncatingIfNeeded: crc), UInt8(truncatingIfNeeded: crc >> 8)]
    }

    /// Whether the last two bytes are the CRC of the rest.
    public static func verifies(_ adu: [UInt8]) -> Bool {
        guard adu.count >= 3 else { return false }
        let crc = checksum(adu.dropLast(2))
        return adu[adu.count - 2] == UInt8(truncatingIfNeeded: crc) && adu[adu.count - 1] == UInt8(crc >> 8)
    }
}
