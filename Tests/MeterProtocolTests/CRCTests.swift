import MetergwTestSupport
import Testing
@testable import MeterProtocol

@Suite struct CRCTests {
    static let check = Array("123456789".utf8)

    @Test func catalogueCheckValues() {
        #expect(CRC16.checksum(Self.check) == 0x29B1)
        #expect(CRC16.checksum(Self.check) == CRC16.checkValue)
        #expect(CRC8.checksum(Self.check) == 0xF4)
        #expect(CRC8.checksum(Self.check) == CRC8.checkValue)
        #expect(CRC16.checksum([UInt8]()) == 0xFFFF)
    }

    /// The slicing-by-8 path agrees with the bit-by-bit definition at every length and alignment.
    @Test func slicingMatchesBitwiseDefinition() {
        var rng = SeededGenerator(seed: 0xC0FFEE)
        for length in 0..<300 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(CRC16.checksum(data) == Self.bitwiseCRC16(data), "length \(length)")
            #expect(CRC16.checksum(data.dropFirst(length / 3)) == Self.bitwiseCRC16(Array(data.dropFirst(length / 3))))
        }
    }

    @Test func continuingEqualsWhole() {
        var rng = SeededGenerator(seed: 7)
        let data = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for cut in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let first = CRC16.checksum(data[..<cut])
            #expect(CRC16.checksum(data[cut...], continuing: first) == CRC16.checksum(data))
            #expect(CRC8.checksum(data[cut...], continuing: CRC8.checksum(data[..<cut])) == CRC8.checksum(data))
        }
    }

    static func bitwiseCRC16(_ data: [UInt8]) -> UInt16 {
        var crc: UInt16 = 0xFFFF
        for byte in data {
            crc ^= UInt16(byte) << 8
            for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        }
        return crc
    }
}

