import BillingStore
import Foundation
import Logging
import ServiceLifecycle

/// Where sync stands after one round, for the gateway's metrics.
public struct SyncRoundReport: Sendable, Equatable {
    public var ackedSequence: Int64
    /// Outbox entries still waiting.
    public var backlog: Int64
    /// Seconds between now and the oldest waiting entry (0 when none waits).
    public var lagSeconds: Int64
    public var failed: Bool
    public var ordersQueued: Int
    public var ordersRefused: Int
}

/// `metergw serve`'s sync: drains the outbox to the central store every `interval`, beside the pollers, then
/// fetches remote credit sold centrally (the credit queue delivers it). A failed
/// run is logged and retried at the next interval; the backlog waits in the outbox meanwhile. On SIGTERM the batch
/// in flight finishes (it is one transaction at the centre either way) and the service ends.
public struct OutboxSyncService: Service {
    let sync: OutboxSync
    let interval: Duration
    let logger: Logger
    let report: @Sendable (SyncRoundReport) -> Void

    public init(sync: OutboxSync, interval: Duration, logger: Logger,
                report: @escaping @Sendable (SyncRoundReport) -> Void = { _ in }) {
        self.sync = sync
        self.interval = interval
        self.logger = logger
        self.report = report
    }

    private func report(failed: Bool) {
        // Orders stored by a round that failed afterwards count too: its `Run` went with the error.
        let orders = self.sync.takeStoredOrders()
        guard let state = try? self.sync.store.syncState() else { return }
        let now = Int64(Date().timeIntervalSince1970)
        self.report(SyncRoundReport(
            ackedSequence: state.ackedSequence, backlog: state.backlog,
            lagSeconds: state.oldestPendingTime.map { max(0, now - $0) } ?? 0, failed: failed,
            ordersQueued: orders.queued, ordersRefused: orders.refused))
    }

    public func run() async throws {
        var failing = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let run = try await self.sync.drain()
                if run.batches > 0 || run.ordersQueued + run.ordersRefused > 0 || failing {
                    self.logger.info("sync: exchanged with the central store", metadata: [
                        "batches": "\(run.batches)", "readings": "\(run.readings)", "alarms": "\(run.alarms)",
                        "others": "\(run.others)", "acked": "\(run.ackedSequence)", "conflicts": "\(run.conflicts)",
                        "ordersQueued": "\(run.ordersQueued)", "ordersRefused": "\(run.ordersRefused)",
                    ])
                }
                failing = false
                self.report(failed: false)
            } catch {
                // Logged once per episode, not once per interval.
                if !failing {
                    self.logger.warning("sync: the central store did not take the outbox; retrying each interval",
                                        metadata: ["error": "\(error)", "interval": "\(self.interval)"])
                }
                failing = true
                self.report(failed: true)
            }
            let interval = self.interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
