import BillingStore
import CentralStore
import Dispatch
import Foundation
import MetergwTestSupport

/// `metergw-bench central`: sync into a local PostgreSQL (docs/BENCHMARKS.md "Central store"): readings per second
/// from one gateway's login through `CentralDatabase.ingest` (multi-row inserts under row-level security, one
/// transaction and acknowledgement per batch), and the catch-up after a day offline of a gateway with 512 meters
/// read every 15 minutes; then the desk's reports (`metergw report consumption|meters|alarms --url`) over the
/// days loaded. The cluster is started for the run with PostgreSQL's durable defaults (fsync on).
enum CentralBenchmark {
    struct Settings: Sendable {
        var readings = 1_000_000
        var batch = 5_000
        var meters = 512
        var json = false
    }

    static func main(_ arguments: ArraySlice<String>) -> Never {
        var settings = Settings()
        var arguments = arguments
        while let argument = arguments.popFirst() {
            switch argument {
            case "--readings": settings.readings = Int(arguments.popFirst() ?? "") ?? settings.readings
            case "--batch": settings.batch = Int(arguments.popFirst() ?? "") ?? settings.batch
            case "--meters": settings.meters = Int(arguments.popFirst() ?? "") ?? settings.meters
            case "--json": settings.json = true
            default:
                print("usage: metergw-bench central [--readings N] [--batch N] [--meters N] [--json]")
                exit(64)
            }
        }
        final class Outcome: @unchecked Sendable {
            var failure: (any Error)?
        }
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        let run = settings
        Task {
            do {
                try await Self.run(run)
            } catch {
                outcome.failure = error
            }
            done.signal()
        }
        done.wait()
        if let failure = outcome.failure {
            print("metergw-bench central: \(failure)")
            exit(1)
        }
        exit(0)
    }

    static func run(_ settings: Settings) async throws {
        let cluster = try PostgresCluster.start(durable: true)
        defer { cluster.stop() }
        let database = try cluster.createDatabase(prefix: "bench")
        let admin = try CentralURL(parsing: cluster.url(database: database))
        let serials = (0..<settings.meters).map { UInt32(100_000 + $0) }
        try await CentralDatabase.with(admin) { db in
            try await db.migrate()
            try await db.benchmarkFixture(meterSerials: serials)
            _ = try await db.addGateway(name: "bench", password: "bench-password-1", now: 0)
            try await db.assign(meterSerials: serials, toGateway: "bench", by: Actor("bench", now: 0))
        }
        let gateway = CentralURL(host: "127.0.0.1", port: cluster.port,
                                 username: CentralDatabase.login(ofGateway: "bench"), password: "bench-password-1",
                                 database: database)
        let clock = ContinuousClock()
        var sequence: Int64 = 0
        // Throughput: readings of every meter, 15 minutes apart, in batches.
        func batches(count: Int, from start: Int64) -> [SyncBatch] {
            var result: [SyncBatch] = []
            var readings: [SyncBatch.Reading] = []
            readings.reserveCapacity(settings.batch)
            for i in 0..<count {
                let meter = i % serials.count
                let slot = Int64(i / serials.count)
                readings.append(.init(meterSerial: serials[meter], time: start + slot * 900,
                                      registerUnits: 1_000 + slot * 250, creditUnits: 500_000 - slot * 250))
                if readings.count == settings.batch || i == count - 1 {
                    sequence += 1
                    result.append(SyncBatch(fromSequence: sequence, toSequence: sequence, readings: readings))
                    readings.removeAll(keepingCapacity: true)
                }
            }
            return result
        }
        let load = batches(count: settings.readings, from: 1_700_000_000)
        let (throughput, catchUp) = try await CentralDatabase.with(gateway) { gw in
            var start = clock.now
            var inserted = 0
            for batch in load { inserted += try await gw.ingest(batch, now: 0).readingsInserted }
            let loadTime = clock.now - start
            precondition(inserted == settings.readings, "every reading is new")
            // A day offline: 96 readings per meter, sent in bounded batches once the link is back.
            let day = batches(count: serials.count * 96, from: 1_800_000_000)
            start = clock.now
            var caughtUp = 0
            for batch in day { caughtUp += try await gw.ingest(batch, now: 0).readingsInserted }
            precondition(caughtUp == serials.count * 96)
            return (loadTime, (clock.now - start, day.count))
        }
        // The desk's reports over the days the load covers, as `metergw report ... --url` runs them (best of 3:
        // the first run also warms the server's cache). Day numbers are local days (the store's UTC offset).
        let reports = try await CentralDatabase.with(admin) { db in
            let offset = try await db.utcOffsetSeconds()
            let first = (1_700_000_000 + offset) / 86400
            let slots = Int64((settings.readings + serials.count - 1) / serials.count)
            let last = (1_700_000_000 + (slots - 1) * 900 + offset) / 86400
            var timings: [(name: String, seconds: Double, rows: Int)] = []
            func best(_ name: String, _ body: () async throws -> Int) async throws {
                var fastest = Double.infinity
                var rows = 0
                for _ in 0..<3 {
                    let start = clock.now
                    rows = try await body()
                    fastest = min(fastest, Self.seconds(clock.now - start))
                }
                timings.append((name, fastest, rows))
            }
            try await best("consumption-by-day") {
                try await db.consumptionRows(fromDay: first, toDay: last, by: .day, progress: nil).count
            }
            try await best("consumption-by-month") {
                try await db.consumptionRows(fromDay: first, toDay: last, by: .month, progress: nil).count
            }
            try await best("meters") { try await db.meterRows(fromDay: first, toDay: last, progress: nil).count }
            try await best("alarms") {
                try await db.alarmEpisodes(fromDay: first, toDay: last, now: 1_900_000_000, progress: nil).count
            }
            return (days: last - first + 1, timings: timings)
        }
        let seconds = Self.seconds(throughput)
        let rate = Double(settings.readings) / seconds
        let catchUpSeconds = Self.seconds(catchUp.0)
        if settings.json {
            let timings = reports.timings.map {
                "{\"report\":\"\($0.name)\",\"rows\":\($0.rows),\"seconds\":\(String(format: "%.3f", $0.seconds))}"
            }.joined(separator: ",")
            print("{\"benchmark\":\"central-sync\",\"readings\":\(settings.readings),\"batch\":\(settings.batch),"
                  + "\"readingsPerSecond\":\(Int(rate)),\"catchUpReadings\":\(serials.count * 96),"
                  + "\"catchUpBatches\":\(catchUp.1),\"catchUpSeconds\":\(String(format: "%.3f", catchUpSeconds)),"
                  + "\"reportDays\":\(reports.days),\"reports\":[\(timings)]}")
        } else {
            print("""
                central sync: \(settings.readings) readings of \(serials.count) meters in batches of \(settings.batch) \
                from one gateway's login: \(String(format: "%.2f", seconds)) s, \(Int(rate)) readings/s \
                (target 50,000: \(rate >= 50_000 ? "ok" : "BELOW TARGET"))
                catch-up after a day offline: \(serials.count * 96) readings (\(serials.count) meters x 96) in \
                \(catchUp.1) batches: \(String(format: "%.3f", catchUpSeconds)) s
                """)
            print("desk reports over \(reports.days) days of \(serials.count) meters (\(settings.readings) readings), "
                  + "best of 3 (target 2 s each, as on SQLite):")
            for t in reports.timings {
                let verdict = t.seconds <= 2 ? "ok" : "ABOVE TARGET"
                print("  \(t.name.padding(toLength: 22, withPad: " ", startingAt: 0)) "
                      + String(format: "%7.3f s", t.seconds) + "  (\(t.rows) rows; \(verdict))")
            }
        }
    }

    static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
}
