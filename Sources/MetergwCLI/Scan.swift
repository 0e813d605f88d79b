import ArgumentParser
import MeterBus
import MeterProtocol
#if canImport(Glibc)
import Glibc
#endif

/// `metergw scan`: every meter on the bus, found by serial-number search.
struct Scan: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find every meter on a bus and show what each is.",
        discussion: """
            Searches serial-number prefixes with DISCOVER (docs/PROTOCOL.md §7): a few requests per meter instead \
            of one per bus address; --sweep tries addresses 1-247 one by one instead. Shows progress with an \
            estimate on a terminal, plain lines otherwise. Then reads each meter: address, serial, kind, firmware, \
            credit, relay and alarms. --protocol modbus sweeps addresses 1-247 (Modbus has no discovery); \
            --protocol dlt645 reads the address with the wildcard, and searches address digits where several \
            meters answer (docs/INTEROP.md).
            """)

    @OptionGroup var bus: BusOptions

    @OptionGroup var wire: ProtocolOptions

    @Flag(help: "Try bus addresses 1-247 one by one instead of searching serial numbers.")
    var sweep = false

    func run() throws {
        let session = try self.bus.session()
        defer { session.close() }
        let driver = try self.wire.driver(session)
        let clock = ContinuousClock()
        let start = clock.now
        let bar = ProgressBar(enabled: standardErrorIsTerminal && !self.bus.json)
        var lastPlain = 0
        let progress: (ScanProgress) -> Void = { p in
            let elapsed = clock.now - start
            let total = p.requests + p.estimatedRemainingRequests
            var eta = ""
            if p.requests > 0 {
                let remaining = elapsed * Double(p.estimatedRemainingRequests) / Double(p.requests)
                eta = ", about \(remaining.components.seconds + 1) s left"
            }
            if bar.enabled {
                bar.draw(ProgressBar.line(done: p.requests, total: total,
                                          "\(p.requests) requests, \(p.found) found\(eta)"))
            } else if !self.bus.json && p.requests - lastPlain >= 16 {
                lastPlain = p.requests
                Output.error("metergw: scan: \(p.requests) requests, \(p.found) meters found\(eta)")
            }
        }
        let report = try BusFailure.map { () throws(BusError) in
            self.sweep ? try driver.sweep(timeout: self.bus.timeoutDuration, progress: progress)
                : try driver.scan(progress: progress)
        }
        bar.clear()

        var rows: [Row] = []
        for meter in report.meters {
            var row = Row(meter: meter)
            // A meter that vanished between the scan and its reading is listed with what the scan knew.
            row.reading = try? driver.read(meter.address)
            if row.identity == nil { row.identity = try? driver.identify(meter.address) }
            rows.append(row)
        }
        rows.sort {
            ($0.meter.address.busAddress ?? 0, $0.meter.address.serial ?? 0, $0.meter.address.station ?? "")
                < ($1.meter.address.busAddress ?? 0, $1.meter.address.serial ?? 0, $1.meter.address.station ?? "")
        }
        if self.bus.json {
            Output.line(Self.json(report, rows).rendered())
        } else {
            Output.line("ADDR  SERIAL       KIND         FIRMWARE  CREDIT              RELAY   ALARMS")
            for row in rows { Output.line(row.text) }
            var summary = "\(rows.count) meter\(rows.count == 1 ? "" : "s") found with \(report.requests) requests "
                + "(\(report.method.rawValue), \(report.collisions) collisions)"
            if !report.conflicts.isEmpty { summary += "; serial prefixes still colliding: \(report.conflicts)" }
            if !report.suspects.isEmpty { summary += "; damaged answers twice at addresses \(report.suspects)" }
            if !report.complete { summary += "; the search stopped at its request budget: run it again" }
            Output.line(summary)
        }
        if !report.conflicts.isEmpty || !report.complete {
            throw CLIError(.dataError, "the scan is incomplete: two meters may share a serial, or the line is too "
                           + "noisy; check with metergw sniff")
        }
    }

    struct Row {
        var meter: DiscoveredMeter
        var identity: MeterIdentity?
        var reading: MeterReading?

        init(meter: DiscoveredMeter) {
            self.meter = meter
            self.identity = meter.identity
        }

        var text: String {
            let address = self.meter.address.busAddress.map(String.init) ?? self.meter.address.station ?? "-"
            let serial = self.meter.address.serial.map(String.init) ?? "-"
            let kind = (self.identity?.kind ?? self.meter.kind)?.name ?? "?"
            let firmware = self.identity?.firmware ?? "?"
            let fields = self.reading?.fields ?? .all
            let credit = !fields.contains(.credit) ? "-" : self.reading.map { Units.text($0.credit, $0.unit.rawValue) } ?? "?"
            let relay = !fields.contains(.relay) ? "-" : self.reading?.relay.name ?? "?"
            let alarms = !fields.contains(.alarms) ? "-"
                : self.reading.map { $0.alarms.names.isEmpty ? "none" : $0.alarms.names.joined(separator: ",") } ?? "?"
            return "\(address.padding(5)) \(serial.padding(12)) \(kind.padding(12)) \(firmware.padding(9)) "
                + "\(credit.padding(19)) \(relay.padding(7)) \(alarms)"
        }
    }

    static func json(_ report: ScanReport, _ rows: [Row]) -> JSONValue {
        .object([
            ("method", .string(report.method.rawValue)), ("requests", .int(Int64(report.requests))),
            ("collisions", .int(Int64(report.collisions))), ("complete", .bool(report.complete)),
            ("meters", .array(rows.map { row in
                var members: [(String, JSONValue)] = [
                    ("address", row.meter.address.busAddress.map { .uint(UInt64($0)) }
                        ?? row.meter.address.station.map { .string($0) } ?? .null),
                    ("serial", row.meter.address.serial.map { .uint(UInt64($0)) } ?? .null),
                    ("kind", (row.identity?.kind ?? row.meter.kind).map { .string($0.name) } ?? .null),
                ]
                if let identity = row.identity {
                    members += [("model", .string(identity.model)), ("firmware", .string(identity.firmware))]
                }
                if let r = row.reading { members += Read.readingJSON(r) }
                return .object(members)
            })),
        ])
    }
}
