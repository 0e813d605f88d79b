// The two checks of a native frame (docs/PROTOCOL.md §2.3).
//
// CRC-16 uses slicing-by-8: eight 256-entry tables let the loop fold eight input bytes per step, which is what
// takes a table CRC from ~500 MB/s to well past 1 GB/s without leaving portable Swift.

/// CRC-16/IBM-3740 (a.k.a. CRC-16/CCITT-FALSE): poly 0x1021, init 0xFFFF, no reflection, xorout 0.
/// Check value over "123456789" is 0x29B1. Protects a whole frame (PROTOCOL.md §2.3).
public enum CRC16 {
    public static let checkValue: UInt16 = 0x29B1
    public static let initial: UInt16 = 0xFFFF

    /// CRC of `bytes`, continuing from `crc` (pass the previous result to checksum data in pieces).
    @inlinable
    public static func checksum<C: Collection>(_ bytes: C, continuing crc: UInt16 = initial) -> UInt16
    where C.Element == UInt8 {
        if let fast = bytes.withContiguousStorageIfAvailable({ Self.update(crc, UnsafeRawBufferPointer($0)) }) {
            return fast
        }
        return Array(bytes).withUnsafeBytes { Self.update(crc, $0) }
    }

    @usableFromInline
    static func update(_ crc: UInt16, _ buffer: UnsafeRawBufferPointer) -> UInt16 {
        tables.withUnsafeBufferPointer { t in
            var crc = crc
            var i = 0
            let n = buffer.count
            // Eight bytes per step: the high two bytes mix with the running CRC, the other six go straight in.
            while n - i >= 8 {
                let b0 = buffer[i] ^ UInt8(truncatingIfNeeded: crc >> 8)
                let b1 = buffer[i + 1] ^ UInt8(truncatingIfNeeded: crc)
                crc = t[7 &* 256 &+ Int(b0)] ^ t[6 &* 256 &+ Int(b1)]
                    ^ t[5 &* 256 &+ Int(buffer[i + 2])] ^ t[4 &* 256 &+ Int(buffer[i + 3])]
                    ^ t[3 &* 256 &+ Int(buffer[i + 4])] ^ t[2 &* 256 &+ Int(buffer[i + 5])]
                    ^ t[1 &* 256 &+ Int(buffer[i + 6])] ^ t[Int(buffer[i + 7])]
                i &+= 8
            }
            while i < n {
                crc = (crc << 8) ^ t[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ buffer[i])]
                i &+= 1
            }
            return crc
        }
    }

    /// tables[k*256 + b] is the CRC contribution of byte b followed by k zero bytes.
    @usableFromInline
    static let tables: [UInt16] = {
        var t = [UInt16](repeating: 0, count: 8 * 256)
        for b in 0..<256 {
            var crc = UInt16(b) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
            t[b] = crc
        }
        for k in 1..<8 {
            for b in 0..<256 {
                let prev = t[(k - 1) * 256 + b]
                t[k * 256 + b] = (prev << 8) ^ t[Int(prev >> 8)]
            }
        }
        return t
    }()
}

/// CRC-8/SMBUS: poly 0x07, init 0x00, no reflection, xorout 0. Check value over "123456789" is 0xF4.
/// Protects the fixed header so a false start marker in noise is rejected at once (PROTOCOL.md §2.3).
public enum CRC8 {
    public static let checkValue: UInt8 = 0xF4

    @inlinable
    public static func checksum<C: Collection>(_ bytes: C, continuing crc: UInt8 = 0) -> UInt8
    where C.Element == UInt8 {
        if let fast = bytes.withContiguousStorageIfAvailable({ Self.update(crc, UnsafeRawBufferPointer($0)) }) {
            return fast
        }
        return Array(bytes).withUnsafeBytes { Self.update(crc, $0) }
    }

    @usableFromInline
    static func update(_ crc: UInt8, _ buffer: UnsafeRawBufferPointer) -> UInt8 {
        table.withUnsafeBufferPointer { t in
            var crc = crc
            for byte in buffer { crc = t[Int(crc ^ byte)] }
            return crc
        }
    }

    @usableFromInline
    static let table: [UInt8] = (0..<256).map { b in
        var crc = UInt8(b)
        for _ in 0..<8 { crc = crc & 0x80 != 0 ? (crc << 1) ^ 0x07 : crc << 1 }
        return crc
    }
}
