import CoreMetrics
import MeterBus
import Prometheus
import Synchronization

/// The gateway's Prometheus metrics, through swift-metrics with the factory injected (no global bootstrap, so
/// several gateways, or tests, can live in one process). docs/OPERATIONS.md "Reading the metrics" lists them.
public final class GatewayMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusMetricsFactory

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets["metergw_poll_duration_seconds"] = [
            .milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(50), .milliseconds(100),
            .milliseconds(200), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5),
        ]
        factory.durationHistogramBuckets["metergw_cycle_duration_seconds"] = [
            .milliseconds(100), .milliseconds(500), .seconds(1), .seconds(2), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60), .seconds(120),
        ]
        self.factory = factory
        self.queue = CoreMetrics.Gauge(label: "metergw_credit_queue_depth", factory: factory)
        self.queue.record(0)
        self.syncAcked = CoreMetrics.Gauge(label: "metergw_sync_acked_sequence", factory: factory)
        self.syncBacklog = CoreMetrics.Gauge(label: "metergw_sync_backlog", factory: factory)
        self.syncLag = CoreMetrics.Gauge(label: "metergw_sync_lag_seconds", factory: factory)
        self.syncErrors = CoreMetrics.Counter(label: "metergw_sync_errors_total", factory: factory)
        self.syncRounds = CoreMetrics.Counter(label: "metergw_sync_rounds_total", factory: factory)
        self.syncOrders = Dictionary(uniqueKeysWithValues: ["queued", "refused"].map {
            ($0, CoreMetrics.Counter(label: "metergw_sync_orders_total", dimensions: [("outcome", $0)],
                                     factory: factory))
        })
    }

    private let queue: CoreMetrics.Gauge
    private let syncAcked: CoreMetrics.Gauge
    private let syncBacklog: CoreMetrics.Gauge
    private let syncLag: CoreMetrics.Gauge
    private let syncErrors: CoreMetrics.Counter
    private let syncRounds: CoreMetrics.Counter
    private let syncOrders: [String: CoreMetrics.Counter]

    /// One round of sync with the central store (docs/CENTRAL.md): where the outbox stands after it, whether it
    /// failed, and the remote orders it took.
    public func syncRound(ackedSequence: Int64, backlog: Int64, lagSeconds: Int64, failed: Bool,
                          ordersQueued: Int = 0, ordersRefused: Int = 0) {
        self.syncRounds.increment()
        if failed { self.syncErrors.increment() }
        self.syncAcked.record(ackedSequence)
        self.syncBacklog.record(backlog)
        self.syncLag.record(lagSeconds)
        if ordersQueued > 0 { self.syncOrders["queued"]?.increment(by: ordersQueued) }
        if ordersRefused > 0 { self.syncOrders["refused"]?.increment(by: ordersRefused) }
    }

    /// The text exposition format, for `GET /metrics`.
    public func exposition() -> String { self.registry.emitToString() }

    /// One bus's metrics, made once (a lookup in the registry per poll would cost more than the poll's own work).
    final class Bus: Sendable {
        let polls: CoreMetrics.Counter
        let pollDuration: CoreMetrics.Timer
        let cycleDuration: CoreMetrics.Timer
        let readings: CoreMetrics.Counter
        let failures: [FailureKind: CoreMetrics.Counter]
        let meters: CoreMetrics.Gauge
        let states: [BusState: CoreMetrics.Gauge]
        let credit: [String: CoreMetrics.Counter]

        init(_ bus: String, factory: PrometheusMetricsFactory) {
            let d = [("bus", bus)]
            self.polls = CoreMetrics.Counter(label: "metergw_polls_total", dimensions: d, factory: factory)
            self.pollDuration = CoreMetrics.Timer(label: "metergw_poll_duration_seconds", dimensions: d,
                                                  factory: factory)
            self.cycleDuration = CoreMetrics.Timer(label: "metergw_cycle_duration_seconds", dimensions: d,
                                                   factory: factory)
            self.readings = CoreMetrics.Counter(label: "metergw_readings_stored_total", dimensions: d, factory: factory)
            self.meters = CoreMetrics.Gauge(label: "metergw_bus_meters", dimensions: d, factory: factory)
            var failures: [FailureKind: CoreMetrics.Counter] = [:]
            for kind in FailureKind.allCases {
                failures[kind] = CoreMetrics.Counter(label: "metergw_poll_failures_total",
                                                     dimensions: d + [("kind", kind.rawValue)],
                                         factory: factory)
            }
            self.failures = failures
            var states: [BusState: CoreMetrics.Gauge] = [:]
            for state in BusState.allCases {
                states[state] = CoreMetrics.Gauge(label: "metergw_bus_state",
                                                  dimensions: d + [("state", state.rawValue)],
                                      factory: factory)
            }
            self.states = states
            var credit: [String: CoreMetrics.Counter] = [:]
            for outcome in ["applied", "already-applied", "failed", "unsupported", "refused"] {
                credit[outcome] = CoreMetrics.Counter(label: "metergw_credit_deliveries_total",
                                          dimensions: d + [("outcome", outcome)], factory: factory)
            }
            self.credit = credit
        }
    }

    private let buses = Mutex<[String: Bus]>([:])

    func bus(_ name: String) -> Bus {
        self.buses.withLock { buses in
            if let bus = buses[name] { return bus }
            let bus = Bus(name, factory: self.factory)
            buses[name] = bus
            return bus
        }
    }

    /// One meter read: its latency (end of request to decoded answer, retries included).
    func polled(bus: String, duration: Duration) {
        let b = self.bus(bus)
        b.polls.increment()
        b.pollDuration.recordNanoseconds(Self.nanoseconds(duration))
    }

    /// One failed exchange, by kind (``FailureKind``).
    func failed(bus: String, kind: FailureKind) { self.bus(bus).failures[kind]?.increment() }

    func cycle(bus: String, duration: Duration) {
        self.bus(bus).cycleDuration.recordNanoseconds(Self.nanoseconds(duration))
    }

    func readingsStored(bus: String, count: Int) { self.bus(bus).readings.increment(by: count) }

    func credit(bus: String, outcome: String) { self.bus(bus).credit[outcome]?.increment() }

    /// Queued remote purchases waiting for the meters of all buses.
    func queueDepth(_ depth: Int) { self.queue.record(depth) }

    /// 1 for the bus's current state, 0 for the others.
    func busState(bus: String, _ state: BusState) {
        for (s, gauge) in self.bus(bus).states { gauge.record(s == state ? 1 : 0) }
    }

    func meters(bus: String, count: Int) { self.bus(bus).meters.record(count) }

    static func nanoseconds(_ d: Duration) -> Int64 {
        d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }
}

/// Failures by kind, as metrics and /status count them.
public enum FailureKind: String, Sendable, CaseIterable, Codable {
    case noAnswer = "no-answer"
    case corrupt
    case refused
    case adapterGone = "adapter-gone"
    case serial
    case unexpectedPayload = "unexpected-payload"
    case unsupported
    case store

    init(_ error: BusError) {
        switch error {
        case .noAnswer: self = .noAnswer
        case .corrupt: self = .corrupt
        case .refused: self = .refused
        case .adapterGone: self = .adapterGone
        case .serial: self = .serial
        case .unexpectedPayload: self = .unexpectedPayload
        case .cancelled: self = .serial
        // A Modbus exception or a DL/T 645 abnormal answer is the meter saying no, like a NAK.
        case .rejected: self = .refused
        case .unsupported: self = .unsupported
        }
    }
}

/// Where a bus is in its life.
public enum BusState: String, Sendable, CaseIterable, Codable {
    /// Opening the adapter and finding its meters.
    case starting
    case polling
    /// The adapter is absent (unplugged, not yet plugged in): waiting for it to appear.
    case waiting
    case stopped
}
