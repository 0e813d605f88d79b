import ArgumentParser
import Foundation
import MeterBus
import MeterProtocol

/// `metergw read`: everything a technician checks on one meter.
struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a meter: registers, credit, relay, alarms, clock and its drift, and its event log.")

    @OptionGroup var bus: BusOptions

    @OptionGroup var wire: ProtocolOptions

    @Option(help: "The meter: bus address, serial, or ADDRESS:SERIAL; with --protocol dlt645 its 12-digit address.")
    var meter: MeterSelector

    @Flag(help: "Also read the whole event log.")
    var events = false

    func run() throws {
        let address = try self.wire.meter(self.meter)
        let session = try self.bus.session()
        defer { session.close() }
        let driver = try self.wire.driver(session)
        let identity = try BusFailure.map { () throws(BusError) in try driver.identify(address) }
        let reading = try BusFailure.map { () throws(BusError) in try driver.read(address) }
        let now = Int64(Date().timeIntervalSince1970)
        let drift = Int64(reading.meterTime) - now
        var log: [MeterEvent] = []
        if self.events {
            log = try BusFailure.map { () throws(BusError) in try Self.allEvents(driver, address) }
        }
        if reading.fields != .all || !reading.measurements.isEmpty {
            return self.printPartial(identity, reading, drift: drift)
        }
        if self.bus.json {
            var members: [(String, JSONValue)] = [
                ("address", identity.address.busAddress.map { .uint(UInt64($0)) } ?? .null),
                ("serial", identity.address.serial.map { .uint(UInt64($0)) } ?? .null),
                ("kind", .string(identity.kind.name)), ("model", .string(identity.model)),
                ("firmware", .string(identity.firmware)), ("protocol", .string(identity.protocolName)),
                ("keyRevision", identity.keyRevision.map { .int(Int64($0)) } ?? .null),
            ]
            members += Self.readingJSON(reading)
            members.append(("clockDriftSeconds", .int(drift)))
            if self.events {
                members.append(("events", .array(log.map { e in
                    .object([("index", .uint(UInt64(e.index))), ("time", .string(UTCTime.iso8601(e.time))),
                             ("code", .string(e.knownCode?.name ?? "unknown(\(e.code))")), ("value", .int(e.value))])
                })))
            }
            Output.line(JSONValue.object(members).rendered())
            return
        }
        let unit = reading.unit.rawValue
        Output.line("\(identity.address): \(identity.kind.name) meter \(identity.model), firmware \(identity.firmware), "
                    + "\(identity.protocolName), key revision \(identity.keyRevision.map(String.init) ?? "-")")
        let lines: [(String, String)] = [
            ("register", Units.text(Int64(clamping: reading.register), unit)),
            ("credit", Units.text(reading.credit, unit)),
            ("demand", Units.text(Int64(reading.demand), reading.demandUnit.rawValue)),
            ("relay", "\(reading.relay.name)" + (reading.relayReason == .none ? "" : " (\(reading.relayReason.name))")),
            ("alarms", reading.alarms.names.isEmpty ? "none" : reading.alarms.names.joined(separator: ", ")),
            ("thresholds", "alarm at \(Units.text(Int64(reading.alarmThreshold), unit)), cutoff at "
                + Units.text(Int64(reading.cutoffThreshold), unit)),
            ("last purchase applied", String(reading.lastAppliedSequence)),
            ("meter clock", "\(UTCTime.iso8601(reading.meterTime)) (\(Self.driftText(drift)))"),
        ]
        for (name, value) in lines { Output.line("  \(name.padding(22)) \(value)") }
        if self.events {
            Output.line("  events (\(log.count))")
            for e in log {
                Output.line("    #\(e.index) \(UTCTime.iso8601(e.time)) \(e.knownCode?.name ?? "unknown(\(e.code))") "
                            + "\(e.value)")
            }
        }
    }

    /// A reading from a protocol that reports only some fields (Modbus, DL/T 645): those, and every measurement.
    func printPartial(_ identity: MeterIdentity, _ reading: MeterReading, drift: Int64) {
        if self.bus.json {
            var members: [(String, JSONValue)] = [
                ("address", identity.address.busAddress.map { .uint(UInt64($0)) }
                    ?? identity.address.station.map { .string($0) } ?? .null),
                ("model", .string(identity.model)), ("firmware", .string(identity.firmware)),
                ("protocol", .string(identity.protocolName)),
            ]
            members += Self.readingJSON(reading)
            if reading.fields.contains(.clock) { members.append(("clockDriftSeconds", .int(drift))) }
            members.append(("measurements", .array(reading.measurements.map { m in
                .object([("name", .string(m.name)), ("value", .int(m.value)), ("unit", .string(m.unit))])
            })))
            Output.line(JSONValue.object(members).rendered())
            return
        }
        Output.line("\(identity.address): \(identity.model), firmware \(identity.firmware), \(identity.protocolName)")
        let unit = reading.unit.rawValue
        var lines: [(String, String)] = []
        let f = reading.fields
        if f.contains(.register) { lines.append(("register", Units.text(Int64(clamping: reading.register), unit))) }
        if f.contains(.credit) { lines.append(("credit", Units.text(reading.credit, unit))) }
        if f.contains(.demand) {
            lines.append(("demand", Units.text(Int64(reading.demand), reading.demandUnit.rawValue)))
        }
        if f.contains(.relay) { lines.append(("relay", reading.relay.name)) }
        if f.contains(.thresholds) {
            lines.append(("thresholds", "alarm at \(Units.text(Int64(reading.alarmThreshold), unit)), cutoff at "
                          + Units.text(Int64(reading.cutoffThreshold), unit)))
        }
        if f.contains(.sequence) { lines.append(("last purchase applied", String(reading.lastAppliedSequence))) }
        if f.contains(.clock) {
            lines.append(("meter clock", "\(UTCTime.iso8601(reading.meterTime)) (\(Self.driftText(drift)))"))
        }
        for m in reading.measurements { lines.append((m.name, m.unit.isEmpty ? "\(m.value)" : "\(m.value) \(m.unit)")) }
        for (name, value) in lines { Output.line("  \(name.padding(22)) \(value)") }
    }

    static func driftText(_ drift: Int64) -> String {
        if drift == 0 { return "in step with this computer" }
        let direction = drift > 0 ? "ahead" : "behind"
        let hint = drift.magnitude > 300 ? ": run metergw clock sync" : ""
        return "\(drift.magnitude) s \(direction)\(hint)"
    }

    /// Every event the meter still holds, page by page.
    static func allEvents(_ driver: some MeterDriver, _ meter: MeterAddress) throws(BusError) -> [MeterEvent] {
        var events: [MeterEvent] = []
        var next: UInt32 = 0
        while true {
            let page = try driver.readEvents(meter, from: next, maxCount: Int(ReadEventsRequest.maxCount))
            events += page.events
            guard let last = page.events.last, last.index + 1 < page.nextIndex else { return events }
            next = last.index + 1
        }
    }

    static func readingJSON(_ r: MeterReading) -> [(String, JSONValue)] {
        guard r.fields == .all else { return Self.partialJSON(r) }
        return [
            ("unit", .string(r.unit.rawValue)), ("register", .uint(r.register)), ("credit", .int(r.credit)),
            ("demand", .uint(UInt64(r.demand))), ("demandUnit", .string(r.demandUnit.rawValue)),
            ("relay", .string(r.relay.name)), ("relayReason", .string(r.relayReason.name)),
            ("alarms", .array(r.alarms.names.map { .string($0) })),
            ("lastAppliedSequence", .uint(UInt64(r.lastAppliedSequence))),
            ("alarmThreshold", .uint(UInt64(r.alarmThreshold))), ("cutoffThreshold", .uint(UInt64(r.cutoffThreshold))),
            ("meterTime", .string(UTCTime.iso8601(r.meterTime))),
        ]
    }

    /// The fields a protocol reports, and no invented zeros for the others.
    static func partialJSON(_ r: MeterReading) -> [(String, JSONValue)] {
        let f = r.fields
        var out: [(String, JSONValue)] = [("unit", .string(r.unit.rawValue))]
        if f.contains(.register) { out.append(("register", .uint(r.register))) }
        if f.contains(.credit) { out.append(("credit", .int(r.credit))) }
        if f.contains(.demand) {
            out += [("demand", .uint(UInt64(r.demand))), ("demandUnit", .string(r.demandUnit.rawValue))]
        }
        if f.contains(.relay) { out.append(("relay", .string(r.relay.name))) }
        if f.contains(.sequence) { out.append(("lastAppliedSequence", .uint(UInt64(r.lastAppliedSequence)))) }
        if f.contains(.thresholds) {
            out += [("alarmThreshold", .uint(UInt64(r.alarmThreshold))),
                    ("cutoffThreshold", .uint(UInt64(r.cutoffThreshold)))]
        }
        if f.contains(.clock) { out.append(("meterTime", .string(UTCTime.iso8601(r.meterTime)))) }
        return out
    }
}
