import Synchronization

/// What `/status` answers and `metergw status` prints: every bus, its state and its meters.
public struct GatewayStatus: Codable, Sendable, Equatable {
    public var startedAt: Int64
    public var now: Int64
    /// Queued remote purchases not yet delivered, across all buses.
    public var creditQueueDepth: Int
    public var buses: [BusStatus]

    public init(startedAt: Int64, now: Int64, creditQueueDepth: Int, buses: [BusStatus]) {
        self.startedAt = startedAt
        self.now = now
        self.creditQueueDepth = creditQueueDepth
        self.buses = buses
    }
}

public struct BusStatus: Codable, Sendable, Equatable {
    public var name: String
    public var device: String
    public var protocolName: String
    public var line: String
    public var state: BusState
    /// Unix seconds when it entered that state.
    public var stateSince: Int64
    /// The last thing that went wrong on the bus as a whole (the adapter, the store), in words.
    public var lastError: String?
    public var cycles: Int
    public var polls: Int
    public var failures: [String: Int]
    public var meters: [MeterStatus]

    public init(name: String, device: String, protocolName: String, line: String, state: BusState,
                stateSince: Int64) {
        self.name = name
        self.device = device
        self.protocolName = protocolName
        self.line = line
        self.state = state
        self.stateSince = stateSince
        self.lastError = nil
        self.cycles = 0
        self.polls = 0
        self.failures = [:]
        self.meters = []
    }
}

public struct MeterStatus: Codable, Sendable, Equatable {
    public var address: Int?
    public var serial: Int64?
    /// A DL/T 645 meter's 12-digit address (it has no bus address).
    public var station: String?
    /// Whether the store knows the meter (readings of unknown meters are not stored).
    public var registered: Bool
    public var lastReadingTime: Int64?
    public var register: Int64?
    public var credit: Int64?
    public var unit: String?
    public var relay: String?
    public var alarms: [String]
    public var pendingCredit: Int
    public var failures: Int
    public var lastError: String?
    /// Why queued remote credit cannot reach this meter (its protocol has no credit command); nil otherwise.
    public var creditBlocked: String?

    public init(address: Int?, serial: Int64?, station: String? = nil) {
        self.address = address
        self.serial = serial
        self.station = station
        self.registered = false
        self.alarms = []
        self.pendingCredit = 0
        self.failures = 0
    }
}

/// The live status, updated by the pollers and read by the HTTP endpoint.
public final class StatusBoard: Sendable {
    private let state: Mutex<GatewayStatus>

    public init(startedAt: Int64) {
        self.state = Mutex(GatewayStatus(startedAt: startedAt, now: startedAt, creditQueueDepth: 0, buses: []))
    }

    public func snapshot(now: Int64) -> GatewayStatus {
        var s = self.state.withLock { $0 }
        s.now = now
        return s
    }

    func register(_ bus: BusStatus) {
        self.state.withLock { s in
            if let i = s.buses.firstIndex(where: { $0.name == bus.name }) {
                s.buses[i] = bus
            } else {
                s.buses.append(bus)
            }
        }
    }

    func update(bus name: String, _ body: (inout BusStatus) -> Void) {
        self.state.withLock { s in
            if let i = s.buses.firstIndex(where: { $0.name == name }) { body(&s.buses[i]) }
        }
    }

    func prune(keeping keep: (BusStatus) -> Bool) {
        self.state.withLock { s in s.buses.removeAll { !keep($0) } }
    }

    func setQueueDepth(_ depth: Int) { self.state.withLock { $0.creditQueueDepth = depth } }
}
