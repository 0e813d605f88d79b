import BillingStore
import Foundation
import Logging
import Prepaid
import ServiceLifecycle
import Synchronization

/// The gateway as a swift-service-lifecycle `Service`: one ``BusPoller`` per configured bus, device events fanned
/// out to them, and a reload that swaps the buses that changed.
///
/// On graceful shutdown (SIGTERM, SIGINT through the `ServiceGroup`) every poller finishes the exchange in flight,
/// commits what its cycle saw, and returns; `run()` returns when all have. ``reload(_:)`` (SIGHUP) does the same
/// for the buses whose settings changed or that are gone, and starts the changed and new ones once those have let
/// go of their adapters; buses whose settings are unchanged keep polling. The store, keys and metrics address stay
/// as started (a change to those needs a restart, and the log says so).
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
    /// Reloads in order of arrival; only the newest waiting one matters. Finished at shutdown.
    private let reloads: AsyncStream<GatewayConfiguration>
    private let reloadRequests: AsyncStream<GatewayConfiguration>.Continuation

    private struct State {
        var configuration: GatewayConfiguration
        var pollers: [BusPoller] = []
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
        (self.reloads, self.reloadRequests) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// The live status, for `/status`.
    public func snapshot() -> GatewayStatus { self.status.snapshot(now: self.now()) }

    /// Applies `configuration`: changed and removed buses finish their exchange and commit, then changed and new
    /// buses start; unchanged buses are not interrupted.
    public func reload(_ configuration: GatewayConfiguration) {
        let current = self.state.withLock { s -> GatewayConfiguration? in s.shuttingDown ? nil : s.configuration }
        guard let current else { return }
        if configuration.store != current.store || configuration.keys != current.keys
            || configuration.metrics != current.metrics || configuration.central != current.central
            || configuration.logLevel != current.logLevel
        {
            self.logger.warning("reload: store, keys, metrics, log level and central changes take effect at the next restart")
        }
        self.reloadRequests.yield(configuration)
    }

    /// Stops every bus (the exchange in flight finishes and its cycle commits).
    public func shutdown() {
        let pollers = self.state.withLock { s in
            s.shuttingDown = true
            return s.pollers
        }
        self.reloadRequests.finish()
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

    private func makePoller(_ bus: BusConfiguration, _ configuration: GatewayConfiguration) -> BusPoller {
        let context = GatewayContext(
            store: self.store, keys: self.keys, metrics: self.metrics, status: self.status, logger: self.logger,
            clockDriftLimit: configuration.clockDriftLimit, now: self.now, crashHook: self.crashHook,
            waitingRecheck: self.waitingRecheck)
        return BusPoller(configuration: bus, context: context)
    }

    /// What a reload does to the running buses.
    private struct Swap {
        var stopped: [BusPoller] = []
        var started: [BusPoller] = []
        var kept = 0
    }

    /// Under the lock: which pollers stop and which start for `next`. A bus whose settings are equal (and the
    /// gateway-wide settings its poller uses too) keeps its poller.
    private func swap(to next: GatewayConfiguration, in s: inout State) -> Swap {
        var swap = Swap()
        let sameContext = s.configuration.clockDriftLimit == next.clockDriftLimit
        var running = Dictionary(s.pollers.map { ($0.configuration.name, $0) }, uniquingKeysWith: { a, _ in a })
        var pollers: [BusPoller] = []
        for bus in next.buses {
            if sameContext, let current = running[bus.name], current.configuration == bus {
                running[bus.name] = nil
                pollers.append(current)
                swap.kept += 1
            } else {
                let poller = self.makePoller(bus, next)
                pollers.append(poller)
                swap.started.append(poller)
            }
        }
        swap.stopped = Array(running.values)
        s.configuration = next
        s.pollers = pollers
        return swap
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
            await withDiscardingTaskGroup { group in
                let first = self.state.withLock { s -> [BusPoller] in
                    guard !s.shuttingDown else { return [] }
                    s.pollers = s.configuration.buses.map { self.makePoller($0, s.configuration) }
                    return s.pollers
                }
                self.logger.info("gateway running", metadata: ["buses": .stringConvertible(first.count)])
                for p in first { group.addTask { await p.run() } }
                for await next in self.reloads {
                    let swap = self.state.withLock { s -> Swap? in
                        s.shuttingDown ? nil : self.swap(to: next, in: &s)
                    }
                    guard let swap else { break }
                    for p in swap.stopped { p.stop() }
                    let names = Set(next.buses.map(\.name))
                    // A started bus may use an adapter a stopped one still holds: it opens once all have let go.
                    let stopped = swap.stopped
                    group.addTask {
                        for p in stopped { await p.finished.wait() }
                        self.status.retain(buses: names)
                    }
                    for p in swap.started {
                        group.addTask {
                            for old in stopped { await old.finished.wait() }
                            await p.run()
                        }
                    }
                    self.logger.notice("configuration reloaded", metadata: [
                        "started": .stringConvertible(swap.started.count),
                        "stopped": .stringConvertible(swap.stopped.count),
                        "unchanged": .stringConvertible(swap.kept)])
                }
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
