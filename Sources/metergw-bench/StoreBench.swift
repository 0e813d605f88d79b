// metergw-bench store: the billing store's speed (docs/BENCHMARKS.md "Billing store").
//
//   metergw-bench store [--meters N] [--days N] [--path FILE] [--batch N]
//
// 1. Batch insert: readings through `BillingDatabase.insertReadings` (one transaction per batch, the daily summary
//    kept, WAL, synchronous=FULL) into a file database; rows/s over the whole load.
// 2. The monthly consumption report over every meter for one month of that data (best of 3).
import BillingStore
import Foundation
import MeterProtocol
import Prepaid

enum StoreBench {
    static func run(_ arguments: [String]) {
        var meters = 1000
        var days = 365
        var batch = 35_040
        var path: String?
        var args = arguments[...]
        while let arg = args.popFirst() {
            switch arg {
            case "--meters": meters = Int(args.popFirst() ?? "") ?? meters
            case "--days": days = Int(args.popFirst() ?? "") ?? days
            case "--batch": batch = Int(args.popFirst() ?? "") ?? batch
            case "--path": path = args.popFirst()
            default:
                print("usage: metergw-bench store [--meters N] [--days N] [--batch N] [--path FILE]")
                exit(64)
            }
        }
        let file = path ?? (FileManager.default.temporaryDirectory.path + "/metergw-bench-\(getpid()).sqlite")
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
        do {
            try Self.measure(file: file, meters: meters, days: days, batch: batch)
        } catch {
            print("metergw-bench store: \(error)")
            exit(1)
        }
    }

    static func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    static func measure(file: String, meters: Int, days: Int, batch: Int) throws {
        let store = try BillingDatabase.open(path: file)
        let desk = Actor("bench", now: 1_767_196_800)
        let tariff = try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                     price: Price(majorPerThousandUnits: "0.5283", currency: .cny)!)
        _ = try store.addTariff(tariff, validFrom: 0, by: desk)
        var ids: [Int64] = []
        for serial in 1...meters {
            ids.append(try store.addMeter(serial: UInt32(serial), kind: .electricity, tariff: "flat", by: desk).id!)
        }
        // 2026-01-01T00:00+08:00, then 15-minute readings; registers rise by 0...60 Wh per quarter (seeded).
        let start: Int64 = 1_767_196_800
        let perMeter = days * 96
        let total = meters * perMeter
        var rng = SplitMix64(state: 6)
        var rows: [ReadingInput] = []
        rows.reserveCapacity(batch)
        var inserted = 0
        let loadSeconds = try Self.seconds {
            for id in ids {
                var register: Int64 = 0
                for q in 0..<perMeter {
                    register += Int64(rng.next() % 61)
                    rows.append(ReadingInput(meterID: id, time: start + Int64(q) * 900, register: register))
                    if rows.count == batch {
                        inserted += try store.insertReadings(rows, by: desk)
                        rows.removeAll(keepingCapacity: true)
                    }
                }
            }
            if !rows.isEmpty { inserted += try store.insertReadings(rows, by: desk) }
        }
        precondition(inserted == total, "inserted \(inserted) of \(total)")
        _ = try store.writer.writeWithoutTransaction { try $0.checkpoint(.truncate) }
        let size = (try FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0

        // The report: November 2026 (or the last full month of the data), every meter, per month.
        let firstDay = LocalTime.day(of: start, offset: 28800)
        var monthStart = firstDay
        while LocalTime.nextMonth(day: monthStart) <= firstDay + Int64(days) - 30 { monthStart = LocalTime.nextMonth(day: monthStart) }
        let monthEnd = LocalTime.nextMonth(day: monthStart) - 1
        var best = Double.infinity
        var reportRows = 0
        var sum: Int64 = 0
        for _ in 0..<3 {
            best = min(best, try Self.seconds {
                let report = try store.consumptionReport(fromDay: monthStart, toDay: monthEnd, by: .month)
                reportRows = report.count
                sum = report.reduce(0) { $0 + $1.units }
            })
        }
        print("metergw-bench store: \(meters) meters x \(days) days of 15-minute readings = \(total) rows, "
              + "batches of \(batch), file \(file)")
        print("batch-insert          \(Int(Double(total) / loadSeconds)) rows/s   (\(String(format: "%.1f", loadSeconds)) s;"
              + " target 100000 rows/s: \(Double(total) / loadSeconds >= 100_000 ? "ok" : "MISSED"))")
        print("monthly-report        \(String(format: "%.3f", best)) s   (\(LocalTime.monthText(day: monthStart)), "
              + "\(reportRows) meter rows, \(sum) Wh in all; target 2 s: \(best < 2 ? "ok" : "MISSED"))")
        // `report meters` over the same month: per meter its last reading, consumption, credit and purchases.
        var bestMeters = Double.infinity
        var meterRows = 0
        for _ in 0..<3 {
            bestMeters = min(bestMeters, try Self.seconds {
                meterRows = try store.meterReport(fromDay: monthStart, toDay: monthEnd).count
            })
        }
        print("meter-report          \(String(format: "%.3f", bestMeters)) s   (\(meterRows) meters; target 2 s: "
              + "\(bestMeters < 2 ? "ok" : "MISSED"))")
        print("database size         \(size / 1_048_576) MiB (\(size) bytes after a WAL checkpoint)")
    }
}
