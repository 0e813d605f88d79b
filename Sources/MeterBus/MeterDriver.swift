import MeterProtocol

/// What the CLI and the gateway ask of a meter, whatever protocol it speaks (the native protocol now; Modbus RTU
/// and DL/T 645 later, behind the same calls). Values are integers with their units.
///
/// Operations block the calling thread (the CLI); the gateway wraps them in ``onBus(_:)``, which runs them on the
/// bus's own thread with the wire to themselves. Commands that change a meter take a ``RequestSigner``: keys and
/// counters belong to the caller (Prepaid's signer), never to the bus layer.
public protocol MeterDriver: Sendable {
    /// "native v1", "modbus-rtu", ...
    var protocolName: String { get }
    var capabilities: DriverCapabilities { get }

    func identify(_ meter: MeterAddress, timeout: Duration?) throws(BusError) -> MeterIdentity
    func read(_ meter: MeterAddress) throws(BusError) -> MeterReading
    /// What the meter applied last: read before resending anything after a crash or a lost answer.
    func readSequence(_ meter: MeterAddress) throws(BusError) -> SequenceState
    func readEvents(_ meter: MeterAddress, from index: UInt32, maxCount: Int) throws(BusError) -> EventLog

    func setRelay(_ meter: MeterAddress, to position: RelayState, signer: some RequestSigner)
        throws(BusError) -> RelayOutcome
    func setThresholds(_ meter: MeterAddress, alarm: UInt32, cutoff: UInt32, signer: some RequestSigner)
        throws(BusError) -> ThresholdsOutcome
    func setClock(_ meter: MeterAddress, to time: UInt32, signer: some RequestSigner) throws(BusError) -> ClockOutcome
    /// Applies a purchase at most once: a repeat answers `alreadyApplied` (docs/PROTOCOL.md §5.3).
    func applyCredit(_ meter: MeterAddress, purchaseSequence: UInt32, units: UInt32, signer: some RequestSigner)
        throws(BusError) -> CreditOutcome
    /// Returns the alarms still set.
    func acknowledgeAlarms(_ meter: MeterAddress, _ mask: Alarms, signer: some RequestSigner) throws(BusError)
        -> Alarms

    /// Whether a single bus address answers; nil when silent. For sweeps: one try, then a second for damage.
    func probe(busAddress: UInt8, timeout: Duration?) throws(BusError) -> MeterIdentity?
    /// Finds every meter on the bus: a serial-number search where the protocol has one, else an address sweep.
    func scan(progress: ScanProgressHandler?) throws(BusError) -> ScanReport

    /// Sends the time (Unix seconds) to every meter at once; none answers. Each protocol's rules on what a meter
    /// adopts apply (native: within 300 s, once a day; DL/T 645: within 5 minutes, once a day).
    func broadcastTime(_ time: UInt32) throws(BusError)

    /// Runs `body` on the bus's thread with the wire to itself, for `async` callers.
    func onBus<T: Sendable>(_ body: @escaping @Sendable (Self) throws(BusError) -> T) async throws(BusError) -> T
}

extension MeterDriver {
    public func identify(_ meter: MeterAddress) throws(BusError) -> MeterIdentity {
        try self.identify(meter, timeout: nil)
    }

    /// Tries every bus address in `addresses` with IDENTIFY, for protocols without discovery (or to check one):
    /// one try per address with `timeout`, and a second try where the first saw a damaged answer.
    public func sweep(
        addresses: ClosedRange<UInt8> = 1...Frame.maxUnicastAddress, timeout: Duration? = nil,
        progress: ScanProgressHandler? = nil
    ) throws(BusError) -> ScanReport {
        let clock = ContinuousClock()
        let start = clock.now
        var report = ScanReport(method: .addressSweep)
        var damaged: [UInt8] = []
        func probe(_ address: UInt8) throws(BusError) -> Bool {
            report.requests += 1
            do {
                if let identity = try self.probe(busAddress: address, timeout: timeout) {
                    report.meters.append(DiscoveredMeter(address: identity.address, kind: identity.kind,
                                                         identity: identity))
                }
                return true
            } catch .corrupt {
                return false
            } catch .refused, .rejected {
                // Something answers at this address, even if it refuses IDENTIFY.
                report.meters.append(DiscoveredMeter(address: MeterAddress(busAddress: address), kind: nil,
                                                     identity: nil))
                return true
            }
        }
        for (index, address) in addresses.enumerated() {
            if try !probe(address) { damaged.append(address) }
            try progress?(ScanProgress(requests: report.requests, found: report.meters.count,
                                   estimatedRemainingRequests: addresses.count - index - 1 + damaged.count))
        }
        for address in damaged {
            if try !probe(address) { report.suspects.append(address) }
        }
        report.duration = clock.now - start
        return report
    }
}

/// Signs an authenticated native request for the meter with `serial` (docs/PROTOCOL.md §5.1): chooses the counter
/// and key revision and fills the MAC. The caller's keys and counters; Prepaid's `CommandSigner` fits as
/// `signer.sign(request, counter: nextCounter)`.
public protocol RequestSigner: Sendable {
    func sign<R: AuthenticatedRequest>(_ request: R, serial: UInt32) -> R
}

/// Where a meter is on its bus: a bus address, a serial, or both (then both must match, §3); or the station
/// address of a protocol whose meters are named otherwise (DL/T 645's 12 digits).
public struct MeterAddress: Hashable, Sendable, CustomStringConvertible {
    public var busAddress: UInt8?
    public var serial: UInt32?
    /// A protocol's own address text, e.g. DL/T 645 "000000123456".
    public var station: String?

    public init(busAddress: UInt8? = nil, serial: UInt32? = nil, station: String? = nil) {
        precondition(busAddress != nil || serial != nil || station != nil,
                     "a meter needs a bus address, a serial or a station address")
        self.busAddress = busAddress
        self.serial = serial
        self.station = station
    }

    public static func station(_ id: String) -> MeterAddress { MeterAddress(station: id) }

    public static func bus(_ address: UInt8, serial: UInt32? = nil) -> MeterAddress {
        MeterAddress(busAddress: address, serial: serial)
    }

    public static func serial(_ serial: UInt32) -> MeterAddress { MeterAddress(serial: serial) }

    public var description: String {
        if let station = self.station { return "meter \(station)" }
        return switch (self.busAddress, self.serial) {
        case (let a?, let s?): "meter \(a) (serial \(s))"
        case (let a?, nil): "meter \(a)"
        case (nil, let s?): "meter with serial \(s)"
        case (nil, nil): "no meter"
        }
    }
}

/// What a driver can do; callers check before offering an operation.
public struct DriverCapabilities: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// A serial-number search (else scans sweep addresses 1...247).
    public static let discovery = DriverCapabilities(rawValue: 1 << 0)
    /// Remote credit with exactly-once purchase sequences.
    public static let credit = DriverCapabilities(rawValue: 1 << 1)
    public static let relay = DriverCapabilities(rawValue: 1 << 2)
    public static let events = DriverCapabilities(rawValue: 1 << 3)
    public static let clock = DriverCapabilities(rawValue: 1 << 4)
    public static let thresholds = DriverCapabilities(rawValue: 1 << 5)
    public static let alarms = DriverCapabilities(rawValue: 1 << 6)
    /// Commands carry a MAC the caller's ``RequestSigner`` computes over a counter read with
    /// ``MeterDriver/readSequence(_:)`` (native); without it a driver ignores the signer (Modbus has no
    /// authentication, DL/T 645 sends its configured password).
    public static let signedCommands = DriverCapabilities(rawValue: 1 << 7)
}

/// Unit of registers, credit and thresholds.
public enum RegisterUnit: String, Sendable, Hashable {
    case wattHours = "Wh"
    case litres = "L"
}

/// Unit of instantaneous demand.
public enum DemandUnit: String, Sendable, Hashable {
    case watts = "W"
    case litresPerHour = "L/h"
}

extension DeviceKind {
    public var registerUnitValue: RegisterUnit { self == .water ? .litres : .wattHours }
    public var demandUnitValue: DemandUnit { self == .water ? .litresPerHour : .watts }
}

/// Which meter features a device reports.
public struct MeterFeatures: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let relay = MeterFeatures(rawValue: 1 << 0)
    public static let cardReader = MeterFeatures(rawValue: 1 << 1)
    public static let remoteCredit = MeterFeatures(rawValue: 1 << 2)
    public static let eventLog = MeterFeatures(rawValue: 1 << 3)
    public static let emergencyCredit = MeterFeatures(rawValue: 1 << 4)
    public static let cardWriter = MeterFeatures(rawValue: 1 << 5)
}

/// Who answered: the address it answered from (with its serial where the protocol carries one) and what it is.
public struct MeterIdentity: Sendable, Hashable {
    public var address: MeterAddress
    public var kind: DeviceKind
    public var model: String
    /// "2.4.1".
    public var firmware: String
    public var hardwareRevision: Int
    /// "native v1".
    public var protocolName: String
    public var keyRevision: Int?
    public var features: MeterFeatures

    public init(address: MeterAddress, kind: DeviceKind, model: String, firmware: String, hardwareRevision: Int,
                protocolName: String, keyRevision: Int?, features: MeterFeatures) {
        self.address = address
        self.kind = kind
        self.model = model
        self.firmware = firmware
        self.hardwareRevision = hardwareRevision
        self.protocolName = protocolName
        self.keyRevision = keyRevision
        self.features = features
    }
}

/// One reading of a meter's registers and state.
public struct MeterReading: Sendable, Hashable {
    public var kind: DeviceKind
    /// Total consumption.
    public var register: UInt64
    /// Remaining credit; negative while emergency credit is in use.
    public var credit: Int64
    public var unit: RegisterUnit
    public var demand: UInt32
    public var demandUnit: DemandUnit
    /// The meter's clock, seconds since 1970-01-01T00:00:00Z.
    public var meterTime: UInt32
    public var relay: RelayState
    public var relayReason: RelayReason
    public var alarms: Alarms
    /// The last purchase the meter applied (card or remote, §5.3).
    public var lastAppliedSequence: UInt32
    public var alarmThreshold: UInt32
    public var cutoffThreshold: UInt32
    /// Which of the fields above the meter's protocol reports; the others hold zeros (native: all of them).
    public var fields: ReadingFields = .all
    /// Further values the meter reports, integers with their unit (voltage in dV, current in mA, ...).
    public var measurements: [Measurement] = []

    public init(kind: DeviceKind, register: UInt64, credit: Int64, demand: UInt32, meterTime: UInt32,
                relay: RelayState, relayReason: RelayReason, alarms: Alarms, lastAppliedSequence: UInt32,
                alarmThreshold: UInt32, cutoffThreshold: UInt32) {
        self.kind = kind
        self.register = register
        self.credit = credit
        self.unit = kind.registerUnitValue
        self.demand = demand
        self.demandUnit = kind.demandUnitValue
        self.meterTime = meterTime
        self.relay = relay
        self.relayReason = relayReason
        self.alarms = alarms
        self.lastAppliedSequence = lastAppliedSequence
        self.alarmThreshold = alarmThreshold
        self.cutoffThreshold = cutoffThreshold
    }
}

/// Which fields of a ``MeterReading`` a protocol reports.
public struct ReadingFields: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let register = ReadingFields(rawValue: 1 << 0)
    public static let credit = ReadingFields(rawValue: 1 << 1)
    public static let demand = ReadingFields(rawValue: 1 << 2)
    public static let clock = ReadingFields(rawValue: 1 << 3)
    public static let relay = ReadingFields(rawValue: 1 << 4)
    public static let alarms = ReadingFields(rawValue: 1 << 5)
    public static let sequence = ReadingFields(rawValue: 1 << 6)
    public static let thresholds = ReadingFields(rawValue: 1 << 7)
    public static let all: ReadingFields = [.register, .credit, .demand, .clock, .relay, .alarms, .sequence,
                                            .thresholds]
}

/// One named value of a reading, an integer in `unit`: ("voltageL1", 2301, "dV").
public struct Measurement: Sendable, Hashable {
    public var name: String
    public var value: Int64
    public var unit: String

    public init(name: String, value: Int64, unit: String) {
        self.name = name
        self.value = value
        self.unit = unit
    }
}

/// What the meter applied and accepted last.
public struct SequenceState: Sendable, Hashable {
    public var lastAppliedPurchase: UInt32
    /// The last accepted command counter, where the protocol has one.
    public var lastCommandCounter: UInt32?
    public var keyRevision: Int?

    public init(lastAppliedPurchase: UInt32, lastCommandCounter: UInt32?, keyRevision: Int?) {
        self.lastAppliedPurchase = lastAppliedPurchase
        self.lastCommandCounter = lastCommandCounter
        self.keyRevision = keyRevision
    }
}

/// A page of the meter's event log.
public struct EventLog: Sendable, Hashable {
    /// The index the next event will get (events recorded in all).
    public var nextIndex: UInt32
    public var events: [MeterEvent]

    public init(nextIndex: UInt32, events: [MeterEvent]) {
        self.nextIndex = nextIndex
        self.events = events
    }
}

public struct RelayOutcome: Sendable, Hashable {
    public var relay: RelayState
    public var reason: RelayReason

    public init(relay: RelayState, reason: RelayReason) {
        self.relay = relay
        self.reason = reason
    }
}

public struct ThresholdsOutcome: Sendable, Hashable {
    public var alarm: UInt32
    public var cutoff: UInt32

    public init(alarm: UInt32, cutoff: UInt32) {
        self.alarm = alarm
        self.cutoff = cutoff
    }
}

public struct ClockOutcome: Sendable, Hashable {
    /// The meter's clock just before the change (drift = previous − requested).
    public var previous: UInt32
    public var new: UInt32

    public init(previous: UInt32, new: UInt32) {
        self.previous = previous
        self.new = new
    }
}

public struct CreditOutcome: Sendable, Hashable {
    /// `false`: the purchase was applied before; nothing was added this time (not an error).
    public var applied: Bool
    public var lastAppliedSequence: UInt32
    public var credit: Int64

    public init(applied: Bool, lastAppliedSequence: UInt32, credit: Int64) {
        self.applied = applied
        self.lastAppliedSequence = lastAppliedSequence
        self.credit = credit
    }
}

/// A meter found by a scan.
public struct DiscoveredMeter: Sendable, Hashable {
    /// Its bus address (nil when it has none yet) and serial (nil where the protocol has none).
    public var address: MeterAddress
    public var kind: DeviceKind?
    /// Filled when the meter was confirmed with IDENTIFY.
    public var identity: MeterIdentity?

    public init(address: MeterAddress, kind: DeviceKind?, identity: MeterIdentity?) {
        self.address = address
        self.kind = kind
        self.identity = identity
    }
}

/// Told of a scan's progress after each request; what it throws (``BusError/cancelled`` when a service stops)
/// ends the scan between requests, never inside an exchange.
public typealias ScanProgressHandler = (ScanProgress) throws(BusError) -> Void

/// How a scan is going.
public struct ScanProgress: Sendable, Hashable {
    /// Frames sent so far (queries, confirmations, retries).
    public var requests: Int
    public var found: Int
    /// A rough estimate of the requests still to come.
    public var estimatedRemainingRequests: Int

    public init(requests: Int, found: Int, estimatedRemainingRequests: Int) {
        self.requests = requests
        self.found = found
        self.estimatedRemainingRequests = estimatedRemainingRequests
    }
}

/// What a scan found and what it cost.
public struct ScanReport: Sendable, Hashable {
    public enum Method: String, Sendable, Hashable {
        case prefixSearch = "prefix-search"
        case addressSweep = "address-sweep"
    }

    public var method: Method
    public var meters: [DiscoveredMeter] = []
    /// Frames sent, retries included.
    public var requests = 0
    /// Search queries that heard more than one answer (or garbage).
    public var collisions = 0
    /// Search queries that heard nothing.
    public var silences = 0
    /// Full 32-bit prefixes that still collided: two meters with one serial, or a persistently noisy line.
    public var conflicts: [UInt32] = []
    /// Addresses (sweep) that answered damaged twice.
    public var suspects: [UInt8] = []
    /// False when the request budget ran out before the search finished.
    public var complete = true
    public var duration: Duration = .zero

    public init(method: Method) { self.method = method }
}
