import ArgumentParser
import Foundation
import MeterBus
import MeterProtocol

/// `metergw read`: everything a technician checks on one meter.
struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a meter: registers, credit, relay, alarms, clock and its drift, and its event log.")

    @OptionGroup var bus: BusOptions

    @Option(help: "The meter: bus address, serial, or ADDRESS:SERIAL.")
    var meter: MeterSelector

    @Flag(help: "Also read the whole event log.")
    var events = false

    func run() throws {
        let session = try self.bus.session()
        defer { session.close() }
        let driver = NativeDriver(session: session)
        let identity = try BusFailure.map { () throws(BusError) in try driver.identify(self.meter.address) }
        let reading = try BusFailure.map { () throws(BusError) in try driver.read(self.meter.address) }
        let now = Int64(Date().timeIntervalSince1970)
        let drift = Int64(reading.meterTime) - now
        var log: [MeterEvent] = []
        if self.events {
            log = try BusFailure.map { () throws(BusError) in try Self.allEvents(driver, self.meter.address) }
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

    static func driftText(_ drift: Int64) -> String {
        if drift == 0 { return "in step with this computer" }
        let direction = drift > 0 ? "ahead" : "behind"
        let hint = drift.magnitude > 300 ? ": run metergw clock sync" : ""
        return "\(drift.magnitude) s \(direction)\(hint)"
    }

    /// Every event the meter still holds, page by page.
    static func allEvents(_ driver: NativeDriver, _ meter: MeterAddress) throws(BusError) -> [MeterEvent] {
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
        [
            ("unit", .string(r.unit.rawValue)), ("register", .uint(r.register)), ("credit", .int(r.credit)),
            ("demand", .uint(UInt64(r.demand))), ("demandUnit", .string(r.demandUnit.rawValue)),
            ("relay", .string(r.relay.name)), ("relayReason", .string(r.relayReason.name)),
            ("alarms", .array(r.alarms.names.map { .string($0) })),
            ("lastAppliedSequence", .uint(UInt64(r.lastAppliedSequence))),
            ("alarmThreshold", .uint(UInt64(r.alarmThreshold))), ("cutoffThreshold", .uint(UInt64(r.cutoffThreshold))),
            ("meterTime", .string(UTCTime.iso8601(r.meterTime))),
        ]
    }
}
