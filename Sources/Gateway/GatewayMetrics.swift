import CoreMetrics
import MeterBus
import Prometheus

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
    }

    /// The text exposition format, for `GET /metrics`.
    public func exposition() -> String { self.registry.emitToString() }

    /// One meter read: its latency (end of request to decoded answer, retries included).
    func polled(bus: String, duration: Duration) {
        Counter(label: "metergw_polls_total", dimensions: [("bus", bus)], factory: self.factory).increment()
        Timer(label: "metergw_poll_duration_seconds", dimensions: [("bus", bus)], factory: self.factory)
            .recordNanoseconds(Self.nanoseconds(duration))
    }

    /// One failed exchange, by kind (``FailureKind``).
    func failed(bus: String, kind: FailureKind) {
        Counter(label: "metergw_poll_failures_total", dimensions: [("bus", bus), ("kind", kind.rawValue)],
                factory: self.factory).increment()
    }

    func cycle(bus: String, duration: Duration) {
        Timer(label: "metergw_cycle_duration_seconds", dimensions: [("bus", bus)], factory: self.factory)
            .recordNanoseconds(Self.nanoseconds(duration))
    }

    func readingsStored(bus: String, count: Int) {
        Counter(label: "metergw_readings_stored_total", dimensions: [("bus", bus)], factory: self.factory)
            .increment(by: count)
    }

    func credit(bus: String, outcome: String) {
        Counter(label: "metergw_credit_deliveries_total", dimensions: [("bus", bus), ("outcome", outcome)],
                factory: self.factory).increment()
    }

    /// Queued remote purchases waiting for the meters of all buses.
    func queueDepth(_ depth: Int) {
        Gauge(label: "metergw_credit_queue_depth", factory: self.factory).record(depth)
    }

    /// 1 for the bus's current state, 0 for the others.
    func busState(bus: String, _ state: BusState) {
        for s in BusState.allCases {
            Gauge(label: "metergw_bus_state", dimensions: [("bus", bus), ("state", s.rawValue)], factory: self.factory)
                .record(s == state ? 1 : 0)
        }
    }

    func meters(bus: String, count: Int) {
        Gauge(label: "metergw_bus_meters", dimensions: [("bus", bus)], factory: self.factory).record(count)
    }

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
