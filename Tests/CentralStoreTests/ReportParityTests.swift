import BillingStore
import Foundation
import MeterProtocol
import MetergwTestSupport
import Prepaid
import Synchronization
import Testing

@testable import CentralStore

/// The desk's reports on both stores (docs/STORE.md §6, "One desk, two stores"): the same meters and readings on a
/// fresh SQLite file (through the store's own `insertReadings`) and on a fresh central database (through a
/// gateway's real `ingest` of a sync batch) give the same `report consumption`, `report meters` and `report alarms`
/// rows and progress, edge cases included.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct ReportParityTests {
    let cluster: PostgresCluster
    let database: String
    let url: CentralURL

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.database = try self.cluster.createDatabase(prefix: "report")
        self.url = try CentralURL(parsing: self.cluster.url(database: self.database))
    }

    static let desk = Actor("desk", now: 0x6B06_9C88)
    static let now = at(nov30 + 10)
    static let offset: Int64 = 28800  // both stores' default local time, UTC+8
    static let nov1: Int64 = 20758  // 2026-11-01, local day number
    static let nov30 = nov1 + 29
    /// Local midnight starting local day `day`, plus `seconds`.
    static func at(_ day: Int64, _ seconds: Int64 = 0) -> Int64 { day * 86400 - Self.offset + seconds }

    static let electricity: UInt32 = 1001
    static let idle: UInt32 = 1002
    static let water: UInt32 = 2001

    /// (meter, time, register): period boundaries in UTC+8, a register that goes back, a meter first read inside
    /// the period, and one never read.
    static let readings: [(UInt32, Int64, Int64, Int64?)] = [
        (electricity, at(nov1, -1), 1_000, nil),           // the last second of October, local
        (electricity, at(nov1), 1_100, nil),               // local midnight: already November 1
        (electricity, at(nov1, 12 * 3600), 1_500, 80_000),
        (electricity, at(nov1 + 2, 10 * 3600), 2_000, 70_000),
        (electricity, at(nov1 + 2, 86399), 2_100, nil),
        (electricity, at(nov1 + 3, 8 * 3600), 50, nil),   // replaced or reset: the register went back
        (electricity, at(nov30, 86399), 400, nil),
        (electricity, at(nov30 + 1), 9_999, nil),          // December 1, local: outside November
        (water, at(nov1 + 4, 3600), 300, nil),             // first reading ever, inside the period
        (water, at(nov1 + 4, 7200), 350, 9_000),
        (water, at(nov1 + 5, 3600), 320, nil),
    ]

    static let low = Int64(Alarms.lowCredit.rawValue)
    static let tamper = Int64(Alarms.tamper.rawValue)
    static let battery = Int64(Alarms.batteryLow.rawValue)
    /// (time, alarms) of the electricity meter, changes only: an episode over before November, one raised before
    /// it and cleared in it, one acknowledged, one cleared after the period, one raised after it and lasting.
    static let alarms: [(Int64, Int64)] = [
        (at(nov1 - 5), tamper), (at(nov1 - 4), 0), (at(nov1 - 2), low), (at(nov1 + 2), low | tamper),
        (at(nov1 + 3), low), (at(nov1 + 9), 0), (at(nov1 + 19), battery), (at(nov30 + 2), 0),
        (at(nov30 + 3), tamper),
    ]
    /// (index, time, mask) of the meter's "alarms acknowledged" events (0070); the second is for another bit.
    static let acks: [(Int64, Int64, Int64)] = [(1, at(nov1 + 2, 12 * 3600), tamper), (2, at(nov1 + 19, 3600), low)]

    /// The desk's part on any store: a tariff per unit and three meters, and (`sale`) the remote sale.
    static func meters(_ db: any BillingDesk, sale: Bool = true) async throws {
        _ = try await db.addTariff(try Tariff.flat(name: "power", currency: .cny, unitKind: .wattHours,
                                                   price: Price(microMinorPerUnit: 500)),
                                   validFrom: 0, utcOffsetSeconds: Int32(Self.offset), by: Self.desk)
        _ = try await db.addTariff(try Tariff.flat(name: "water", currency: .cny, unitKind: .litres,
                                                   price: Price(microMinorPerUnit: 3_000)),
                                   validFrom: 0, utcOffsetSeconds: Int32(Self.offset), by: Self.desk)
        for (serial, kind, tariff) in [(Self.electricity, DeviceKind.electricity, "power"),
                                       (Self.idle, .electricity, "power"), (Self.water, .water, "water")] {
            _ = try await db.addMeter(serial: serial, kind: kind, tariff: tariff, bus: nil, address: nil,
                                      keyRevision: 1, lastApplied: 0, by: Self.desk)
        }
        // An account with the electricity meter and a remote sale still on its way: the pending columns.
        _ = try await db.openAccount(name: "Li Wei", address: nil, phone: nil, number: nil, currency: .cny,
                                     by: Self.desk)
        _ = try await db.assignMeter(String(Self.electricity), to: "1", by: Self.desk)
        if sale { try await Self.sale(db) }
    }

    /// A remote sale still on its way: the pending columns (flat tariffs: the same units before or after the
    /// readings).
    static func sale(_ db: any BillingDesk) async throws {
        _ = try await db.sell(account: "1", amount: Money(minor: 1_000, .cny), requestID: "r-1",
                              mode: .remote, by: Self.desk)
    }

    /// What a report's progress callback saw, from whichever task the store calls it on.
    final class ProgressLog: Sendable {
        let steps = Mutex<[String]>([])
    }

    /// Every report the test compares, each with the progress it reported.
    static func reports(_ db: any BillingDesk) async throws -> [String] {
        var out: [String] = []
        for (name, from, to, by) in [("november by day", nov1, nov30, BillingDatabase.Granularity.day),
                                     ("october to november by month", nov1 - 31, nov30, .month),
                                     ("one day", nov1 + 2, nov1 + 2, .day),
                                     ("december by month", nov30 + 1, nov30 + 31, .month),
                                     ("before any reading", nov1 - 400, nov1 - 300, .day)] {
            let progress = ProgressLog()
            let rows = try await db.consumptionRows(fromDay: from, toDay: to, by: by) { done, total in
                progress.steps.withLock { $0.append("\(done)/\(total)") }
            }
            out.append("consumption \(name): \(rows) progress \(progress.steps.withLock { $0 })")
        }
        for (name, from, to) in [("november", nov1, nov30), ("november 3", nov1 + 2, nov1 + 2),
                                 ("december", nov30 + 1, nov30 + 31), ("before any reading", nov1 - 400, nov1 - 300)] {
            let progress = ProgressLog()
            let rows = try await db.meterRows(fromDay: from, toDay: to) { done, total in
                progress.steps.withLock { $0.append("\(done)/\(total)") }
            }
            out.append("meters \(name): \(rows) progress \(progress.steps.withLock { $0 })")
        }
        for (name, from, to) in [("november", nov1, nov30), ("december", nov30 + 1, nov30 + 31),
                                 ("before any alarm", nov1 - 400, nov1 - 300)] {
            let progress = ProgressLog()
            let rows = try await db.alarmEpisodes(fromDay: from, toDay: to, now: Self.now) { done, total in
                progress.steps.withLock { $0.append("\(done)/\(total)") }
            }
            out.append("alarms \(name): \(rows) progress \(progress.steps.withLock { $0 })")
        }
        out.append("offset \(try await db.utcOffsetSeconds())")
        return out
    }

    @Test func theSameReadingsAndAlarmsGiveTheSameReportsOnBothStores() async throws {
        let sqlite = try BillingDatabase.open(path: FileManager.default.temporaryDirectory
            .appendingPathComponent("metergw-report-parity-\(UUID().uuidString).sqlite").path)
        try await Self.meters(sqlite)
        var ids: [UInt32: Int64] = [:]
        for meter in try await sqlite.meters() { ids[UInt32(meter.serial)] = meter.id! }
        _ = try sqlite.insertReadings(Self.readings.map {
            ReadingInput(meterID: ids[$0.0]!, time: $0.1, register: $0.2, credit: $0.3)
        }, by: Self.desk)
        for (time, bits) in Self.alarms {
            _ = try sqlite.recordAlarms(AlarmInput(meterID: ids[Self.electricity]!, time: time, alarms: bits),
                                        by: Self.desk)
        }
        _ = try sqlite.insertEvents(Self.acks.map {
            EventInput(meterID: ids[Self.electricity]!, index: $0.0, time: $0.1, code: 0x0070, value: $0.2)
        }, by: Self.desk)
        let local = try await Self.reports(sqlite)

        let gateway = "report-\(self.database.replacing("_", with: "-"))"
        let central = try await CentralDatabase.with(self.url) { admin in
            try await admin.migrate()
            // The centre numbers the sale for a meter no gateway serves, and such credit must reach the meter
            // before a gateway may serve it: the gateway sends the rows, then the meters are nobody's again.
            try await Self.meters(admin, sale: false)
            _ = try await admin.addGateway(name: gateway, password: "password-of-\(gateway)", now: 100)
            try await admin.assign(meterSerials: [Self.electricity, Self.idle, Self.water], toGateway: gateway,
                                   by: Actor("test", now: 0))
            let gatewayURL = CentralURL(host: "127.0.0.1", port: self.cluster.port,
                                        username: CentralDatabase.login(ofGateway: gateway),
                                        password: "password-of-\(gateway)", database: self.database)
            let receipt = try await CentralDatabase.with(gatewayURL) { gw in
                var extra = SyncBatch.Extra()
                extra.events = Self.acks.map {
                    .init(meterSerial: Self.electricity, index: $0.0, time: $0.1, code: 0x0070, value: $0.2)
                }
                return try await gw.ingest(SyncBatch(
                    fromSequence: 1, toSequence: Int64(Self.readings.count + Self.alarms.count + Self.acks.count),
                    readings: Self.readings.map {
                        .init(meterSerial: $0.0, time: $0.1, registerUnits: $0.2, creditUnits: $0.3)
                    },
                    alarms: Self.alarms.map { .init(meterSerial: Self.electricity, time: $0.0, alarms: Int32($0.1)) },
                    extra: extra),
                    now: 200)
            }
            #expect(receipt.readingsInserted == Self.readings.count && receipt.alarmsInserted == Self.alarms.count)
            #expect(receipt.othersInserted == Self.acks.count && receipt.conflicts == 0)
            try await admin.assign(meterSerials: [Self.electricity, Self.idle, Self.water], toGateway: nil,
                                   by: Actor("test", now: 0))
            try await Self.sale(admin)
            return try await Self.reports(admin)
        }

        #expect(local.count == central.count)
        for (a, b) in zip(local, central) {
            #expect(a == b)
        }
        // The edge cases are in the compared rows: the register that went back, the meter first read in the
        // period, the reading at local midnight counted in November, the idle meter absent.
        let days = try await sqlite.consumptionRows(fromDay: Self.nov1, toDay: Self.nov30, by: .day, progress: nil)
        let byMeterDay = days.map { "\($0.meterSerial) \($0.period) \($0.units)" }
        #expect(byMeterDay == [
            "1001 2026-11-01 500", "1001 2026-11-03 600", "1001 2026-11-04 -2050", "1001 2026-11-30 350",
            "2001 2026-11-05 50", "2001 2026-11-06 -30",
        ])
        #expect(local[0].hasSuffix("progress [\"1/3\", \"2/3\", \"3/3\"]"))
        let november = try await sqlite.meterRows(fromDay: Self.nov1, toDay: Self.nov30, progress: nil)
        #expect(november.map(\.lastRegister) == [400, nil, 320])
        #expect(november.map(\.consumption) == [-600, nil, 20])
        #expect(november.map(\.credit) == [70_000, nil, 9_000])
        #expect(november.map(\.accountNumber).compactMap { $0 }.count == 1)
        #expect(november[0].pendingPurchases == 1 && november[0].pendingUnits > 0)
        let episodes = try await sqlite.alarmEpisodes(fromDay: Self.nov1, toDay: Self.nov30, now: Self.now,
                                                      progress: nil)
        #expect(episodes.map(\.alarm) == ["low-credit", "tamper", "battery-low"])
        #expect(episodes.map(\.acknowledged) == [nil, Self.at(Self.nov1 + 2, 12 * 3600), nil])
        #expect(episodes.map(\.cleared) == [Self.at(Self.nov1 + 9), Self.at(Self.nov1 + 3), Self.at(Self.nov30 + 2)])
    }
}
