import Foundation
import MeterProtocol

/// What runs on an emulated bus (docs/EMULATOR.md "Configuration"): read from JSON with `--config`, or made up
/// from `--meters N`.
public struct EmulatorConfig: Codable, Sendable, Equatable {
    /// A meter kind as the config names it.
    public enum Kind: String, Codable, Sendable, CaseIterable {
        case electricity, water, heat

        public var deviceKind: DeviceKind {
            switch self {
            case .electricity: .electricity
            case .water: .water
            case .heat: .heat
            }
        }
    }

    public struct Meter: Codable, Sendable, Equatable {
        public var address: UInt8
        public var serial: UInt32
        public var kind: Kind
        /// Credit and register at commissioning, in the kind's unit (Wh or L).
        public var creditUnits: UInt32?
        public var registerUnits: UInt64?
        public var alarmThresholdUnits: UInt32?
        public var cutoffThresholdUnits: UInt32?
        /// Demand at the load profile's peak hour: W (energy) or L/h (water).
        public var peakDemand: UInt32?
        /// 24 hourly values in per mille of the peak; absent: a household shape.
        public var hourlyPerMille: [UInt16]?
        /// How far the meter's clock is off, in seconds (positive: ahead).
        public var clockOffsetSeconds: Int64?

        public init(address: UInt8, serial: UInt32, kind: Kind) {
            self.address = address
            self.serial = serial
            self.kind = kind
        }
    }

    public struct CardWriter: Codable, Sendable, Equatable {
        public var address: UInt8
        public var serial: UInt32

        public init(address: UInt8, serial: UInt32) {
            self.address = address
            self.serial = serial
        }
    }

    public var meters: [Meter]
    public var cardWriters: [CardWriter]

    public init(meters: [Meter], cardWriters: [CardWriter] = []) {
        self.meters = meters
        self.cardWriters = cardWriters
    }

    /// `count` electricity meters at addresses 1...count with distinct serials drawn from `seed`, as a bus of
    /// meters bought over the years has (random 32-bit serials make discovery do real work).
    public static func generated(meters count: Int, seed: UInt64, cardWriter: Bool) -> EmulatorConfig {
        var dice = FaultDice(seed: seed ^ 0x5E71A1)
        var serials = Set<UInt32>()
        var meters: [Meter] = []
        while meters.count < count {
            let serial = UInt32(truncatingIfNeeded: dice.next())
            guard serial != 0, serial != Frame.anySerial, serials.insert(serial).inserted else { continue }
            var meter = Meter(address: UInt8(meters.count + 1), serial: serial, kind: .electricity)
            meter.creditUnits = 50_000
            meters.append(meter)
        }
        let writers = cardWriter ? [CardWriter(address: 100, serial: 90_000_001)] : []
        return EmulatorConfig(meters: meters, cardWriters: writers)
    }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// Reads and checks a config file; errors say what is wrong and where.
    public static func load(path: String) throws -> EmulatorConfig {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw Invalid(description: "cannot read config \(path): \(error.localizedDescription)")
        }
        let config: EmulatorConfig
        do { config = try JSONDecoder().decode(EmulatorConfig.self, from: data) } catch let error as DecodingError {
            throw Invalid(description: "config \(path): \(Self.explain(error))")
        }
        try config.validate(path: path)
        return config
    }

    func validate(path: String) throws {
        var addresses = Set<UInt8>()
        var serials = Set<UInt32>()
        for (i, m) in self.meters.enumerated() {
            let here = "config \(path): meters[\(i)]"
            guard (1...Frame.maxUnicastAddress).contains(m.address) else {
                throw Invalid(description: "\(here): address \(m.address) is outside 1...247")
            }
            guard m.serial != 0, m.serial != Frame.anySerial else {
                throw Invalid(description: "\(here): serial \(m.serial) is reserved (0 and 4294967295)")
            }
            if let hours = m.hourlyPerMille, hours.count != 24 {
                throw Invalid(description: "\(here): hourlyPerMille needs 24 values, has \(hours.count)")
            }
            guard addresses.insert(m.address).inserted else {
                throw Invalid(description: "\(here): address \(m.address) is used twice")
            }
            guard serials.insert(m.serial).inserted else {
                throw Invalid(description: "\(here): serial \(m.serial) is used twice")
            }
        }
        for (i, w) in self.cardWriters.enumerated() {
            guard (1...Frame.maxUnicastAddress).contains(w.address), addresses.insert(w.address).inserted else {
                throw Invalid(description: "config \(path): cardWriters[\(i)]: address \(w.address) is invalid or taken")
            }
        }
    }

    static func explain(_ error: DecodingError) -> String {
        func at(_ path: [CodingKey]) -> String {
            path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(at(context.codingPath + [key])) is missing"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(at(context.codingPath)): \(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
