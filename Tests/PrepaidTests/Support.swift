import Foundation
import MeterProtocol
@testable import Prepaid

/// The published test key (docs/CARD.md §3.4): system key 00 01 02 ... 1F, issuer 1. Never used for real meters.
enum TestKeys {
    static let systemKey = SystemKey(bytes: Array(0..<32))!
    static let issuer = IssuerKeys(systemKey: systemKey, issuerID: 1)
    static let cardIssuer = CardIssuer(keys: issuer)
    /// Meter serial of the protocol examples.
    static let serial: UInt32 = 20_251_125
    /// 2026-11-25T08:30:00Z, the protocol examples' time.
    static let time: UInt32 = 0x6B06_9C88

    static func meter(_ serial: UInt32 = TestKeys.serial, revision: UInt8 = 1) -> MeterKeyring {
        issuer.meter(serial: serial, revision: revision)
    }
}

/// Card fixtures: `Fixtures/cards/NAME.hex`, 16 bytes a line.
enum CardFixtures {
    static var regenerate: Bool { ProcessInfo.processInfo.environment["METERGW_REGENERATE_FIXTURES"] == "1" }
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/cards")

    static func hexText(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: bytes.count, by: 16).map { hexString(bytes[$0..<min($0 + 16, bytes.count)]) }
            .joined(separator: "\n") + "\n"
    }

    static func read(_ name: String) throws -> [UInt8] {
        let text = try String(contentsOf: directory.appendingPathComponent("\(name).hex"), encoding: .utf8)
        return parseHex(text) ?? []
    }

    static func write(_ name: String, _ bytes: [UInt8]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try hexText(bytes).write(to: directory.appendingPathComponent("\(name).hex"), atomically: true, encoding: .utf8)
    }
}
