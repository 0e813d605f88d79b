import Foundation
import MeterProtocol
import Prepaid
import SerialPort

/// A whole emulated bus: devices from a config, their state kept in a file, the bus loop and the control socket.
public final class Emulator: @unchecked Sendable {
    public let bus: BusEmulator
    public let meters: [EmulatedMeter]
    public let writers: [EmulatedCardWriter]
    public let statePath: String?
    private var control: ControlSocket?
    private let saveLock = NSLock()
    /// The last save error, reported once until a save succeeds again.
    private var saveError: String?

    /// What `--state` holds: every device's state, keyed by serial.
    struct SavedState: Codable {
        var version = 1
        var meters: [EmulatedMeter.State]
        var writers: [UInt32: EmulatedCardWriter.State]
    }

    public init(config: EmulatorConfig, keys: IssuerKeys, statePath: String?, options: BusEmulator.Options) throws {
        var saved: SavedState?
        if let statePath, FileManager.default.fileExists(atPath: statePath) {
            do {
                saved = try JSONDecoder().decode(SavedState.self, from: Data(contentsOf: URL(fileURLWithPath: statePath)))
            } catch {
                throw EmulatorError("state file \(statePath) is unreadable (\(error)): move it away to start afresh")
            }
        }
        let now = BusEmulator.unixNow()
        var meters: [EmulatedMeter] = []
        for (i, m) in config.meters.enumerated() {
            if var state = saved?.meters.first(where: { $0.meter.serial == m.serial }) {
                state.meter.busAddress = m.address
                meters.append(EmulatedMeter(state: state, keys: keys))
                continue
            }
            var meter = PrepaidMeter(
                serial: m.serial, kind: m.kind.deviceKind, issuerID: keys.issuerID, busAddress: m.address,
                alarmThresholdUnits: m.alarmThresholdUnits ?? 10_000, cutoffThresholdUnits: m.cutoffThresholdUnits ?? 2_000,
                now: now)
            meter.commission(creditUnits: m.creditUnits ?? 0, registerUnits: m.registerUnits ?? 0,
                             clockOffsetSeconds: m.clockOffsetSeconds ?? 0, now: now)
            let peak = m.peakDemand ?? (m.kind == .water ? 600 : 3_000)
            var profile = LoadProfile.household(peakDemand: peak)
            if let hours = m.hourlyPerMille { profile.hourlyPerMille = hours }
            let state = EmulatedMeter.State(meter: meter, profile: profile, jitterSeed: options.seed &+ UInt64(i))
            meters.append(EmulatedMeter(state: state, keys: keys))
        }
        let writers = config.cardWriters.map {
            EmulatedCardWriter(busAddress: $0.address, serial: $0.serial,
                               state: saved?.writers[$0.serial] ?? EmulatedCardWriter.State())
        }
        self.meters = meters
        self.writers = writers
        self.statePath = statePath
        self.bus = try BusEmulator(options: options, devices: meters + writers)
        self.bus.onStateChange = { [unowned self] in self.saveLocked() }
    }

    /// Serves until `stop()`: the control socket beside the link, the bus loop, a save every second.
    public func run() throws {
        let control = try ControlSocket(path: self.bus.options.linkPath + ".ctl") { [unowned self] line in
            self.command(line).rendered()
        }
        self.control = control
        let saver = Thread { [unowned self] in
            while !self.stopped.isSet {
                Thread.sleep(forTimeInterval: 1)
                self.save()
            }
        }
        saver.start()
        defer {
            control.close()
            self.save()
            self.bus.close()
        }
        try self.bus.run()
    }

    private let stopped = StopFlag()

    public func stop() {
        self.stopped.set()
        self.bus.stop()
    }

    // MARK: State

    /// Saves every device's state atomically (under the bus lock, so no half-applied command is written).
    public func save() {
        self.bus.withDevices { _ in self.saveLocked() }
    }

    private func saveLocked() {
        guard let statePath else { return }
        self.saveLock.withLock {
            let state = SavedState(meters: self.meters.map(\.state),
                                   writers: Dictionary(uniqueKeysWithValues: self.writers.map { ($0.serial, $0.state) }))
            do {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                try AtomicFile.write(Array(try encoder.encode(state)), to: statePath)
                if self.saveError != nil {
                    FileHandle.standardError.write(Data("meter-emulator: state saved again to \(statePath)\n".utf8))
                }
                self.saveError = nil
            } catch {
                // The state stays in memory and is saved again with the next change or within a second.
                let text = "\(error)"
                if self.saveError != text {
                    FileHandle.standardError.write(Data("meter-emulator: \(text)\n".utf8))
                }
                self.saveError = text
            }
        }
    }

    // MARK: Control socket

    /// One control command (docs/EMULATOR.md "Control socket"); answers one JSON object.
    public func command(_ line: String) -> JSONValue {
        let words = line.split(separator: " ").map(String.init)
        func fail(_ message: String) -> JSONValue { .object([("ok", .bool(false)), ("error", .string(message))]) }
        switch words.first {
        case "status":
            return self.status
        case "card":
            guard words.count >= 3, let address = UInt8(words[2]) else {
                return fail("usage: card insert ADDRESS HEX | card remove ADDRESS | card show ADDRESS")
            }
            return self.bus.withDevices { _ in
                self.card(words[1], address: address, hex: words.count > 3 ? words[3] : nil) ?? fail(
                    "no card writer or meter at address \(address), or bad card command")
            }
        case "consume":
            guard words.count == 3, let address = UInt8(words[1]), let units = UInt64(words[2]) else {
                return fail("usage: consume ADDRESS UNITS")
            }
            return self.bus.withDevices { _ in
                guard let meter = self.meters.first(where: { $0.busAddress == address }) else {
                    return fail("no meter at address \(address)")
                }
                meter.consumeNow(units: units, now: BusEmulator.unixNow())
                self.saveLocked()
                return .object([("ok", .bool(true)), ("meter", meter.summary)])
            }
        case "save":
            self.save()
            return .object([("ok", .bool(true))])
        default:
            return fail("unknown command \"\(line)\": status, card insert|remove|show, consume, save")
        }
    }

    private func card(_ verb: String, address: UInt8, hex: String?) -> JSONValue? {
        let now = BusEmulator.unixNow()
        if let writer = self.writers.first(where: { $0.busAddress == address }) {
            switch verb {
            case "insert":
                guard let hex, let image = parseHex(hex) else { return nil }
                writer.insert(image)
                self.saveLocked()
                return .object([("ok", .bool(true)), ("insertion", .uint(UInt64(writer.state.insertion)))])
            case "remove":
                let card = writer.remove()
                self.saveLocked()
                return .object([("ok", .bool(true)), ("card", card.map { .string(hexString($0, separator: "")) } ?? .null)])
            case "show":
                return .object([("ok", .bool(true)),
                                ("card", writer.state.card.map { .string(hexString($0, separator: "")) } ?? .null)])
            default: return nil
            }
        }
        if let meter = self.meters.first(where: { $0.busAddress == address }), verb == "insert" {
            guard let hex, let image = parseHex(hex) else { return nil }
            let outcome = meter.insertCard(image, now: now)
            self.saveLocked()
            return .object([
                ("ok", .bool(true)), ("result", .string("\(outcome.result)")),
                ("card", outcome.writtenImage.map { .string(hexString($0, separator: "")) } ?? .null),
                ("meter", meter.summary),
            ])
        }
        return nil
    }

    public var status: JSONValue {
        let devices = self.bus.withDevices { $0.map(\.summary) }
        return .object([
            ("ok", .bool(true)),
            ("link", .string(self.bus.options.linkPath)),
            ("pty", self.bus.subordinatePath.map { .string($0) } ?? .null),
            ("line", .string(self.bus.options.line.description)),
            ("protocol", .string(self.bus.options.wire.name)),
            ("devices", .array(devices)),
            ("statistics", self.bus.currentStatistics.json),
        ])
    }
}

public struct EmulatorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
