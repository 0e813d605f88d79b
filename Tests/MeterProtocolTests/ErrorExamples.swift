import MeterProtocol

/// Byte streams that are not (only) valid frames: the error-frames set of the golden fixtures.
enum ErrorExamples {
    static var all: [(name: String, bytes: [UInt8])] {
        let identify = ProtocolExamples.all.first { $0.name == "identify-request" }!.frame.encoded()
        let status = ProtocolExamples.all.first { $0.name == "read-status-response" }!.frame.encoded()
        var badCRC = identify
        badCRC[badCRC.count - 1] ^= 0x01

        // A header that passes its check but claims 768 payload bytes.
        var oversize: [UInt8] = [0x7E, 0x01, 0x00, 0x05, 0x01, 0x35, 0x02, 0xF5, 0x01, 0x02, 0x03, 0x00]
        oversize.append(CRC8.checksum(oversize))

        var badHeader = identify
        badHeader[12] ^= 0xFF

        let noise: [UInt8] = [0x00, 0xFF, 0x13, 0x7E, 0x7E, 0x55, 0xAA, 0x7E, 0x01]

        var unknownCommand = Frame(address: 5, serial: ProtocolExamples.serial, sequence: 0x30, command: 0x3F)
        unknownCommand.payload = [0x01, 0x02]

        var malformed = Frame(flags: [.response], address: 5, serial: ProtocolExamples.serial, sequence: 0x31,
                              command: .readStatus, payload: Array(status[13..<(13 + 20)]))
        malformed.flags = [.response]

        var newer = Frame(address: 5, serial: ProtocolExamples.serial, sequence: 0x32, command: .identify)
        newer.version = 2

        return [
            ("error-bad-crc", badCRC),
            ("error-truncated", Array(status.prefix(20))),
            ("error-oversize-length", oversize + [0x00, 0x01, 0x02, 0x03] + identify),
            ("error-bad-header-check", badHeader + identify),
            ("error-noise-between-frames", noise + identify + noise + status + noise),
            ("error-corrupted-then-good", Array(badCRC.prefix(10)) + status),
            ("error-unknown-command", unknownCommand.encoded()),
            ("error-malformed-payload", malformed.encoded()),
            ("error-newer-version", newer.encoded()),
        ]
    }
}
