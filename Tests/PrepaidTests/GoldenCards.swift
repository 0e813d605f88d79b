import MeterProtocol
@testable import Prepaid

/// The golden card images of `Fixtures/cards/` and how they are made (docs/CARD.md §7), all under the test key.
enum GoldenCards {
    static let issuer = TestKeys.cardIssuer
    static let serial = TestKeys.serial
    static let time = TestKeys.time
    static let userCardSerial: UInt32 = 100_001
    static let account: UInt64 = 88_001_234

    /// Purchases 42 and 43 (100 kWh + 50 kWh) for meter 20251125 on the account's first card.
    static var user: [UInt8] {
        issuer.userCard(cardSerial: userCardSerial, generation: 1, meterSerial: serial, revision: 1,
                        accountNumber: account, unitKind: .wattHours,
                        credit: .init(firstSequence: 42, lastSequence: 43, units: 150_000), issueTime: time)
    }

    /// The lost first card's replacement: a new serial, generation 2, carrying purchase 44 (50 kWh).
    static var replacement: [UInt8] {
        issuer.userCard(cardSerial: 100_002, generation: 2, meterSerial: serial, revision: 1,
                        accountNumber: account, unitKind: .wattHours,
                        credit: .init(firstSequence: 44, lastSequence: 44, units: 50_000), issueTime: time + 86_400)
    }

    static var check: [UInt8] { issuer.checkCard(cardSerial: 900_001, revision: 1, issueTime: time) }

    /// Alarm at 20 kWh, cutoff at 2 kWh, 3 kWh emergency credit, open at cutoff until a card is inserted.
    static var setup: [UInt8] {
        issuer.setupCard(
            cardSerial: 900_002, revision: 1, issueTime: time,
            setup: .init(thresholds: Thresholds(alarmUnits: 20_000, cutoffUnits: 2_000), emergencyCreditUnits: 3_000,
                         cutoffBehaviour: .openUntilCardInserted))
    }

    /// Moves meter 20251125 from key revision 1 to 2.
    static var keyChange: [UInt8] {
        issuer.setupCard(cardSerial: 900_003, revision: 1, issueTime: time, meterSerial: serial,
                         setup: .init(keyChange: issuer.keyChange(serial: serial, from: 1, to: 2)))
    }

    /// Meter 20251125 as in PROTOCOL.md §9: last applied 41, register 1234567 Wh, credit 45300 Wh.
    static func exampleMeter() -> PrepaidMeter {
        var meter = PrepaidMeter(serial: serial, kind: .electricity, issuerID: 1, now: time - 90 * 86_400)
        let first = issuer.userCard(
            cardSerial: userCardSerial, generation: 1, meterSerial: serial, revision: 1, accountNumber: account,
            unitKind: .wattHours, credit: .init(firstSequence: 1, lastSequence: 41, units: 1_279_867),
            issueTime: time - 90 * 86_400)
        _ = meter.insertCard(first, keys: TestKeys.meter(), now: time - 90 * 86_400)
        meter.consume(units: 1_234_567, now: time - 3600)
        return meter
    }

    /// The user card after insertion into the example meter: credit applied, write-back filled and MAC'd.
    static var userWrittenBack: [UInt8] {
        var meter = exampleMeter()
        return meter.insertCard(user, keys: TestKeys.meter(), now: time).writtenImage ?? []
    }

    static var all: [(name: String, bytes: [UInt8])] {
        [("user", user), ("user-written-back", userWrittenBack), ("replacement", replacement), ("check", check),
         ("setup", setup), ("setup-key-change", keyChange)]
    }
}
