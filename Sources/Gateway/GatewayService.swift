import BillingStore
import Foundation
import Logging
import Prepaid
import ServiceLifecycle
import Synchronization

/// The gateway as a swift-service-lifecycle `Service`: one ``BusPoller`` per configured bus, device events fanned
/// out to them, and a reload that swaps the buses.
///
/// On graceful shutdown (SIGTERM, SIGINT through the `ServiceGroup`) every poller finishes the exchange in flight,
/// commits what its cycle saw, and returns; `run()` returns when all have. ``reload(_:)`` (SIGHUP) does the same
/// and then starts the new configuration's buses; the store, keys and metrics address stay as started (a change
/// to those needs a restart, and the log says so).
public final class GatewayService: Service, Sendable {
    public let status: StatusBoard
    public let metrics: GatewayMetrics
    private let store: StoreWorker
    private let keys: IssuerKeys?
    private let logger: Logger
    private let deviceSources: [any DeviceEventSource]
    private let now: @Sendable () -> Int64
    private let crashHook: (@Sendable (String) -> Void)?
    private let waitingRecheck: Duration
    private let state: Mutex<State>

    private struct State {
        var configuration: GatewayConfiguration
        var pollers: [BusPoller] = []
        var pendingReload: GatewayConfiguration?
        var shuttingDown = false
    }

    public init(
        configuration: GatewayConfiguration, store: BillingDatabase, keys: IssuerKeys?, logger: Logger,
        metrics: GatewayMetrics = GatewayMetrics(), deviceSources: [any DeviceEventSource],
        now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) },
        crashHook: (@Sendable (String) -> Void)? = nil, waitingRecheck: Duration = .seconds(1)
    ) {
        self.waitingRecheck = waitingRecheck
        self.store = StoreWorker(store: store)
        self.keys = keys
        self.logger = logger
        self.metrics = metrics
        self.deviceSources = deviceSources
        self.now = now
        self.crashHook = crashHook
        self.status = StatusBoard(startedAt: now())
        self.state = Mutex(State(configuration: configuration))
    }

    /// The live status, for `/status`.
    public func snapshot() -> GatewayStatus { self.status.snapshot(now: self.now()) }

    /// Replaces the buses with `configuration`'s: the current pollers finish their exchange and commit first.
    public func reload(_ configuration: GatewayConfiguration) {
        let pollers = self.state.withLock { s -> [BusPoller] in
            guard !s.shuttingDown else { return [] }
            if configuration.store != s.configuration.store || configuration.keys != s.configuration.keys
                || configuration.metrics != s.configuration.metrics
            {
                self.logger.warning("reload: store, keys and metrics changes take effect at the next restart")
            }
            s.pendingReload = configuration
            return s.pollers
        }
        for p in pollers { p.stop() }
    }

    /// Stops every bus (the exchange in flight finishes and its cycle commits).
    public func shutdown() {
        let pollers = self.state.withLock { s in
            s.shuttingDown = true
            return s.pollers
        }
        for p in pollers { p.stop() }
    }

    public func run() async throws {
        await withGracefulShutdownHandler {
            await self.runBuses()
        } onGracefulShutdown: {
            self.logger.info("shutting down: finishing the exchanges in flight")
            self.shutdown()
        }
    }

    private func runBuses() async {
        await withTaskGroup(of: Void.self) { outer in
            // Device events wake every poller; each checks its own adapter.
            for source in self.deviceSources {
                outer.addTask {
                    for await event in source.events() {
                        self.logger.trace("device event", metadata: [
                            "action": .string(event.action.rawValue), "path": .string(event.path ?? "")])
                        for p in self.state.withLock({ $0.pollers }) { p.deviceChanged() }
                    }
                }
            }
            while true {
                let pollers = self.state.withLock { s -> [BusPoller]? in
                    if s.shuttingDown { return nil }
                    if let next = s.pendingReload {
                        s.configuration = next
                        s.pendingReload = nil
                    }
                    let context = GatewayContext(
                        store: self.store, keys: self.keys, metrics: self.metrics, status: self.status,
                        logger: self.logger, clockDriftLimit: s.configuration.clockDriftLimit, now: self.now,
                        crashHook: self.crashHook, waitingRecheck: self.waitingRecheck)
                    s.pollers = s.configuration.buses.map { BusPoller(configuration: $0, context: context) }
                    return s.pollers
                }
                guard let pollers else { break }
                self.status.retain(buses: Set(pollers.map(\.configuration.name)))
                self.logger.info("gateway running", metadata: ["buses": .stringConvertible(pollers.count)])
                await withTaskGroup(of: Void.self) { group in
                    for p in pollers { group.addTask { await p.run() } }
                }
                let reloading = self.state.withLock { $0.pendingReload != nil && !$0.shuttingDown }
                guard reloading else { break }
                self.logger.notice("configuration reloaded")
            }
            outer.cancelAll()
        }
        self.logger.info("gateway stopped: every cycle committed")
    }
}

extension StatusBoard {
    /// Forgets buses a reload removed.
    func retain(buses: Set<String>) {
        self.prune(keeping: { buses.contains($0.name) })
    }
}
