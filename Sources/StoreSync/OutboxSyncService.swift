import Logging
import ServiceLifecycle

/// `metergw serve`'s sync: drains the outbox to the central store every `interval`, beside the pollers. A failed
/// run is logged and retried at the next interval; the backlog waits in the outbox meanwhile. On SIGTERM the batch
/// in flight finishes (it is one transaction at the centre either way) and the service ends.
public struct OutboxSyncService: Service {
    let sync: OutboxSync
    let interval: Duration
    let logger: Logger

    public init(sync: OutboxSync, interval: Duration, logger: Logger) {
        self.sync = sync
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var failing = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                let run = try await self.sync.drain()
                if run.batches > 0 || failing {
                    self.logger.info("sync: sent to the central store", metadata: [
                        "batches": "\(run.batches)", "readings": "\(run.readings)", "alarms": "\(run.alarms)",
                        "acked": "\(run.ackedSequence)", "conflicts": "\(run.conflicts)",
                    ])
                }
                failing = false
            } catch {
                // Logged once per episode, not once per interval.
                if !failing {
                    self.logger.warning("sync: the central store did not take the outbox; retrying each interval",
                                        metadata: ["error": "\(error)", "interval": "\(self.interval)"])
                }
                failing = true
            }
            let interval = self.interval
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
