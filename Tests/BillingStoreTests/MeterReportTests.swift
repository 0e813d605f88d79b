import BillingStore
import Foundation
import GRDB
import MeterProtocol
import MetergwTestSupport
import Testing

/// `report meters` and `report alarms` on datasets worked out by hand, the consumption report against a brute
/// force over the raw readings, and the readings' key.
@Suite struct MeterReportTests {
    static let offset: Int64 = 28800
    static let nov1 = LocalTime.parseDate("2026-11-01")!
    static let nov30 = LocalTime.parseDate("2026-11-30")!
    /// Unix time of local day `nov1 + day` at `hour`.
    static func t(_ day: Int64, _ hour: Int64) -> Int64 { (nov1 + day) * 86400 - offset + hour * 3600 }

    @Test func meterReportShowsReadingsCreditConsumptionAndPurchases() throws {
        let store = try makeStore()
        _ = try store.addMeter(serial: 7, kind: .electricity, tariff: "flat", lastApplied: 40, by: desk)
        let meter = try store.meter("20251125").id!
        try store.insertReadings([
            ReadingInput(meterID: meter, time: Self.t(-1, 23), register: 1000, credit: 9000),
            ReadingInput(meterID: meter, time: Self.t(0, 1), register: 1100, credit: 8900),
            ReadingInput(meterID: meter, time: Self.t(5, 12), register: 1600),
            // After the period: neither the last reading nor the credit of a November report.
            ReadingInput(meterID: meter, time: Self.t(30, 12), register: 2000, credit: 5000),
        ], by: desk)
        _ = try store.sell(account: "1", amount: .fen(10000), requestID: "a", mode: .remote, by: desk)
        _ = try store.sell(account: "1", amount: .fen(5000), requestID: "b", mode: .remote, by: desk)
        _ = try store.markApplied(meter: "20251125", upTo: 1, source: "remote", by: desk)

        var steps: [String] = []
        let rows = try store.meterReport(fromDay: Self.nov1, toDay: Self.nov30) { steps.append("\($0)/\($1)") }
        #expect(steps == ["1/2", "2/2"])
        #expect(rows.map(\.serial) == [7, 20_251_125])
        let idle = rows[0]
        #expect(idle.account == nil && idle.lastReadingTime == nil && idle.consumption == nil && idle.credit == nil)
        #expect(idle.lastAppliedSequence == 40 && idle.pendingPurchases == 0 && idle.pendingUnits == 0)
        let busy = rows[1]
        #expect(busy.kind == "electricity" && busy.account == 1 && busy.accountNumber == 10_000_001)
        #expect(busy.tariff == "flat" && busy.unitKind == 1)
        #expect(busy.lastReadingTime == Self.t(5, 12) && busy.lastRegister == 1600)
        #expect(busy.credit == 8900 && busy.creditTime == Self.t(0, 1))
        // The credit is looked for in the period only: from November 2nd no reading carried one.
        let later = try store.meterReport(fromDay: Self.nov1 + 1, toDay: Self.nov30)[1]
        #expect(later.credit == nil && later.creditTime == nil && later.lastRegister == 1600)
        #expect(busy.consumption == 600)
        let consumption = try store.consumptionReport(fromDay: Self.nov1, toDay: Self.nov30, by: .month)
        #expect(consumption.map(\.units) == [busy.consumption!])
        let second = try store.purchase(2)
        #expect(busy.lastAppliedSequence == 1 && busy.pendingPurchases == 1 && busy.pendingUnits == second.units)
    }

    @Test func alarmEpisodesRunFromRaisedToClearedWithAcknowledgements() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        let low = Int64(Alarms.lowCredit.rawValue)
        let tamper = Int64(Alarms.tamper.rawValue)
        let battery = Int64(Alarms.batteryLow.rawValue)
        func alarms(_ time: Int64, _ bits: Int64) throws {
            _ = try store.recordAlarms(AlarmInput(meterID: meter, time: time, alarms: bits), by: desk)
        }
        // October: a tamper episode over before November (not listed); low credit raised Oct 30 and still set.
        try alarms(Self.t(-5, 0), tamper)
        try alarms(Self.t(-4, 0), 0)
        try alarms(Self.t(-2, 0), low)
        // November: tamper raised on the 3rd with low credit still set, acknowledged on the 3rd at 12:00 (the meter
        // logs it), cleared on the 4th; low credit clears on the 10th; battery low raised on the 20th and cleared
        // on December 2nd, after the period.
        try alarms(Self.t(2, 0), low | tamper)
        try alarms(Self.t(3, 0), low)
        try alarms(Self.t(9, 0), 0)
        try alarms(Self.t(19, 0), battery)
        try alarms(Self.t(31, 0), 0)
        // December: a new episode that starts after the period (not listed).
        try alarms(Self.t(32, 0), tamper)
        _ = try store.insertEvents([
            EventInput(meterID: meter, index: 1, time: Self.t(2, 12), code: 0x0070, value: tamper),
            // An acknowledgement of another bit says nothing about battery low.
            EventInput(meterID: meter, index: 2, time: Self.t(19, 1), code: 0x0070, value: low),
        ], by: desk)

        var steps = 0
        let now = Self.t(40, 0)
        let episodes = try store.alarmReport(fromDay: Self.nov1, toDay: Self.nov30, now: now) { _, _ in steps += 1 }
        #expect(steps == 1)
        #expect(episodes.map(\.alarm) == ["low-credit", "tamper", "battery-low"])
        #expect(episodes.map(\.raised) == [Self.t(-2, 0), Self.t(2, 0), Self.t(19, 0)])
        #expect(episodes.map(\.cleared) == [Self.t(9, 0), Self.t(3, 0), Self.t(31, 0)])
        #expect(episodes.map(\.acknowledged) == [nil, Self.t(2, 12), nil])
        #expect(episodes.map(\.durationSeconds) == [11 * 86400, 86400, 12 * 86400])

        // December alone: battery low (cleared on the 2nd) and the tamper still set, lasting until now.
        let december = try store.alarmReport(fromDay: Self.nov30 + 1, toDay: Self.nov30 + 31, now: now)
        #expect(december.map(\.alarm) == ["battery-low", "tamper"])
        #expect(december[1].cleared == nil && december[1].durationSeconds == now - Self.t(32, 0))
    }

    /// The per-meter consumption walk gives what the raw readings give, day by day, on seeded random data.
    @Test(arguments: [1, 2, 3] as [UInt64]) func consumptionMatchesABruteForceOverRawReadings(seed: UInt64) throws {
        var random = SeededGenerator(seed: seed)
        let store = try makeStore()
        for serial in [11, 12] as [UInt32] {
            _ = try store.addMeter(serial: serial, kind: .electricity, tariff: "flat", by: desk)
        }
        let ids = try store.meterIDs()
        var readings: [Int64: [(time: Int64, register: Int64)]] = [:]
        for (_, id) in ids {
            var register = Int64.random(in: 0...1000, using: &random)
            var time = Self.t(-10, 0)
            while time < Self.t(45, 0) {
                time += Int64.random(in: 600...(3 * 86400), using: &random)
                register += Int64.random(in: 0...500, using: &random)
                readings[id, default: []].append((time, register))
            }
            // In shuffled batches, as pollers and card uploads deliver them.
            let batch = readings[id]!.shuffled(using: &random).map {
                ReadingInput(meterID: id, time: $0.time, register: $0.register)
            }
            try store.insertReadings(Array(batch.prefix(batch.count / 2)), by: desk)
            try store.insertReadings(Array(batch.dropFirst(batch.count / 2)), by: desk)
        }
        let report = try store.consumptionReport(fromDay: Self.nov1, toDay: Self.nov30, by: .day)
        var expected: [String] = []
        for (serial, id) in ids.sorted(by: { $0.key < $1.key }) {
            let all = readings[id]!.sorted { $0.time < $1.time }
            let days = Dictionary(grouping: all) { LocalTime.day(of: $0.time, offset: Self.offset) }
            for day in Self.nov1...Self.nov30 {
                guard let today = days[day] else { continue }
                let before = all.last { LocalTime.day(of: $0.time, offset: Self.offset) < day }
                let units = today.last!.register - (before?.register ?? today.first!.register)
                expected.append("\(LocalTime.dateText(day: day)) \(serial) \(units)")
            }
        }
        #expect(report.map { "\($0.period) \($0.meterSerial) \($0.units)" } == expected)
        #expect(expected.count > 10)
    }

    /// The readings' key is (meter, second): times are whole seconds everywhere (the protocol's meter time, the
    /// store's columns), so a second reading in the same second is a repeat and the first one stays.
    @Test func oneReadingPerMeterPerSecond() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        let time = Self.t(0, 12)
        #expect(try store.insertReadings([ReadingInput(meterID: meter, time: time, register: 100)], by: desk) == 1)
        #expect(try store.insertReadings([ReadingInput(meterID: meter, time: time, register: 101),
                                          ReadingInput(meterID: meter, time: time + 1, register: 102)], by: desk) == 1)
        let stored = try store.writer.read { db in
            try Row.fetchAll(db, sql: "SELECT time, register FROM reading ORDER BY time")
                .map { [$0[0], $0[1]] as [Int64] }
        }
        #expect(stored == [[time, 100], [time + 1, 102]])
    }
}
