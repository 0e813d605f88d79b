import Foundation
import MeterProtocol
import Testing
@testable import Prepaid

/// Consumption, thresholds, cutoff, exhaustion and emergency credit (docs/CARD.md §6.4).
@Suite struct SupplyTests {
    static let keys = TestKeys.meter()
    static let now = TestKeys.time

    static func meter(credit: UInt32, emergency: UInt32 = 0) -> PrepaidMeter {
        var m = PrepaidMeter(serial: TestKeys.serial, kind: .electricity, issuerID: 1,
                             alarmThresholdUnits: 10_000, cutoffThresholdUnits: 2_000, now: now)
        if emergency > 0 {
            _ = m.insertCard(TestKeys.cardIssuer.setupCard(cardSerial: 9, revision: 1, issueTime: now,
                                                           setup: .init(emergencyCreditUnits: emergency)),
                             keys: keys, now: now)
        }
        _ = m.insertCard(card(1, credit), keys: keys, now: now)
        return m
    }

    static func card(_ sequence: UInt32, _ units: UInt32, generation: UInt16 = 1) -> [UInt8] {
        let credit: CardImage.CreditBlock = units == 0 ? .none
            : .init(firstSequence: sequence, lastSequence: sequence, units: units)
        return TestKeys.cardIssuer.userCard(
            cardSerial: 77, generation: generation, meterSerial: TestKeys.serial, revision: 1, accountNumber: 1,
            unitKind: .wattHours, credit: credit, issueTime: now)
    }

    func codes(_ meter: PrepaidMeter, from: UInt32) -> [EventCode] {
        var out: [EventCode] = []
        var index = from
        while index < meter.nextEventIndex {
            let page = meter.events(from: index, max: 16)
            out += page.events.compactMap(\.knownCode)
            index = (page.events.last?.index ?? index) + 1
        }
        return out
    }

    @Test func lowCreditAlarmThenCutoffUntilACardThenExhaustion() {
        var m = Self.meter(credit: 15_000)
        #expect(m.relay == .closed && m.alarms.isEmpty)
        let mark = m.nextEventIndex
        #expect(m.consume(units: 6_000, now: Self.now) == 6_000)  // 9000 left: below the alarm
        #expect(m.alarms == [.lowCredit] && m.relay == .closed)
        // The cutoff stops consumption exactly at the threshold and opens the relay.
        #expect(m.consume(units: 10_000, now: Self.now) == 7_000)
        #expect(m.creditUnits == 2_000 && m.relay == .open && m.relayReason == .lowCreditCutoff)
        #expect(m.alarms == [.lowCredit, .cutoff])
        #expect(m.consume(units: 100, now: Self.now) == 0)
        // The customer's card, even without credit, restores supply until credit runs out.
        #expect(m.insertCard(Self.card(0, 0), keys: Self.keys, now: Self.now).result == .noCredit)
        #expect(m.relay == .closed)
        #expect(m.consume(units: 5_000, now: Self.now) == 2_000)
        #expect(m.creditUnits == 0 && m.relay == .open && m.relayReason == .creditExhausted)
        #expect(m.alarms == [.lowCredit, .cutoff, .creditExhausted])
        // A card without credit does not restore an exhausted supply; new credit does.
        _ = m.insertCard(Self.card(0, 0), keys: Self.keys, now: Self.now)
        #expect(m.relay == .open)
        #expect(m.insertCard(Self.card(2, 20_000), keys: Self.keys, now: Self.now).result
                == .creditApplied(units: 20_000, sequences: 2...2))
        #expect(m.relay == .closed && m.alarms.isEmpty && m.creditUnits == 20_000)
        #expect(m.registerUnits == 15_000)
        #expect(codes(m, from: mark) == [.lowCreditAlarm, .cutoff, .cardInserted, .supplyRestored, .creditExhausted,
                                         .cardInserted, .cardInserted, .creditApplied, .supplyRestored])
    }

    @Test func alarmOnlyCutoffKeepsSupplyOn() {
        var m = Self.meter(credit: 5_000)
        _ = m.insertCard(TestKeys.cardIssuer.setupCard(cardSerial: 9, revision: 1, issueTime: Self.now,
                                                       setup: .init(cutoffBehaviour: .alarmOnly)),
                         keys: Self.keys, now: Self.now)
        #expect(m.consume(units: 4_000, now: Self.now) == 4_000)
        #expect(m.relay == .closed && m.alarms.contains(.cutoff))
        #expect(m.consume(units: 4_000, now: Self.now) == 1_000)
        #expect(m.relayReason == .creditExhausted)
    }

    @Test func emergencyCreditLendsUnitsThatNewCreditRepays() {
        var m = Self.meter(credit: 2_500, emergency: 3_000)
        #expect(m.consume(units: 500, now: Self.now) == 500)  // to the cutoff
        _ = m.insertCard(Self.card(0, 0), keys: Self.keys, now: Self.now)
        #expect(m.consume(units: 10_000, now: Self.now) == 5_000)  // 2000 credit + 3000 emergency
        #expect(m.creditUnits == -3_000 && m.relay == .open && m.alarms.contains(.emergencyCredit))
        #expect(m.status(now: Self.now).creditUnits == -3_000)
        // Credit that does not clear the debt leaves supply off.
        _ = m.insertCard(Self.card(2, 2_000), keys: Self.keys, now: Self.now)
        #expect(m.creditUnits == -1_000 && m.relay == .open)
        _ = m.insertCard(Self.card(3, 11_500), keys: Self.keys, now: Self.now)
        #expect(m.creditUnits == 10_500 && m.relay == .closed && m.alarms.isEmpty)
    }

    @Test func statusAndCodableRoundTrip() throws {
        var m = Self.meter(credit: 45_300)
        m.demand = 1840
        let status = m.status(now: Self.now)
        #expect(status.creditUnits == 45_300 && status.lastAppliedSequence == 1 && status.demand == 1840)
        let data = try JSONEncoder().encode(m)
        let back = try JSONDecoder().decode(PrepaidMeter.self, from: data)
        #expect(back == m)
        // The state file holds no key material.
        let text = String(decoding: data, as: UTF8.self)
        let root = hexString(Self.keys.root.exportBytesForSecureStorage(), separator: "").lowercased()
        #expect(!text.lowercased().contains(root))
    }

    @Test func theEventLogKeepsTheLatest256() {
        var m = Self.meter(credit: 1)
        for i in 0..<300 {
            _ = m.insertCard([UInt8](repeating: UInt8(i & 0xFF), count: 3), keys: Self.keys, now: Self.now)
        }
        #expect(m.nextEventIndex > 300)
        let page = m.events(from: 0, max: 16)
        #expect(page.events.count == 16)
        #expect(page.events.first?.index == m.nextEventIndex - 256)
        #expect(m.events(from: m.nextEventIndex, max: 16).events.isEmpty)
    }
}
