import BillingStore
import CentralStore
import Foundation
import Synchronization

/// Store-and-forward from a gateway's SQLite store to the central PostgreSQL store (docs/CENTRAL.md "Sync").
///
/// The centre's acknowledgement is the truth: a run first asks the centre how far it has committed this gateway's
/// outbox and prunes the local entries up to there (the gateway may have crashed after the centre committed and
/// before it recorded the answer), then sends bounded batches from the next entry, recording each
/// acknowledgement before sending the next. Resending is harmless: the centre skips a batch it already has.
public struct OutboxSync: Sendable {
    public struct Options: Sendable {
        /// Entries per batch: bounds one transaction at the centre.
        public var batchSize = 5_000
        /// At most this many batches a second, so a gateway back from a long outage does not flood the centre.
        public var maxBatchesPerSecond = 20
        public init() {}
    }

    /// What one run sent.
    public struct Run: Sendable, Equatable {
        public var batches = 0
        public var readings = 0
        public var alarms = 0
        /// Events, relay changes, card uploads and purchase changes new to the centre.
        public var others = 0
        public var conflicts = 0
        public var ackedSequence: Int64 = 0
        /// Remote orders fetched from the centre and queued for their meters, or refused.
        public var ordersQueued = 0
        public var ordersRefused = 0
    }

    public enum Failure: Error, CustomStringConvertible {
        case central(CentralError)
        case local(StoreError)
        /// The centre acknowledges less than it once did (restored from an old backup, or it lost commits): the
        /// entries in between were pruned here and are gone from both. Nothing is sent until a person decides.
        case centreBehind(centre: Int64, local: Int64)

        public var description: String {
            switch self {
            case .central(let e): e.description
            case .local(let e): "the gateway's store: \(e.explanation)"
            case .centreBehind(let centre, let local):
                "the central store acknowledges outbox entries up to \(centre), but it had acknowledged up to "
                    + "\(local): entries \(centre + 1)...\(local) were lost at the centre (restored from an older "
                    + "backup?). Nothing was sent; restore the centre, or re-send from this gateway's store"
            }
        }
    }

    let store: BillingDatabase
    let central: CentralURL
    let options: Options
    /// Orders stored here (queued or refused) and not yet counted by `takeStoredOrders()`: a round that fails
    /// after storing its orders (the server restarted before the round's report) still has them counted once,
    /// where its `Run` is lost with the error.
    private let storedOrders = StoredOrders()
    /// A named point where a test may kill the process (`METERGW_CRASH_AT`, docs/STORE.md "Test hooks"):
    /// `sync-ingested` (the centre committed a batch, its acknowledgement not yet recorded here), `sync-fetched`
    /// (orders fetched from the centre, none stored here yet), `sync-received` (orders stored here, their
    /// `queued` not yet sent up). nil in production.
    let crashHook: (@Sendable (String) -> Void)?

    public init(store: BillingDatabase, central: CentralURL, options: Options = Options(),
                crashHook: (@Sendable (String) -> Void)? = nil) {
        self.store = store
        self.central = central
        self.options = options
        self.crashHook = crashHook
    }

    /// One round: sends everything waiting (uplink), then fetches the remote credit sold centrally for this
    /// gateway's meters and queues it locally (downlink), and sends what that queued or refused. On failure the
    /// backlog stays, the error is recorded in the store (for status), and the next run resumes from the centre's
    /// acknowledgement; an order received twice is queued once.
    public func drain(now: @escaping @Sendable () -> Int64 = { Int64(Date().timeIntervalSince1970) })
        async throws(Failure) -> Run
    {
        do {
            return try await CentralDatabase.with(self.central) { db in
                try await db.abandoningOnClose { try await self.round(db, now: now) }
            }
        } catch let failure as Failure {
            try? self.store.recordSyncError(failure.description, now: now())
            throw failure
        } catch let error as CentralError {
            try? self.store.recordSyncError(error.description, now: now())
            throw .central(error)
        } catch {
            let wrapped = CentralError.server(sqlState: "client", message: String(describing: error))
            try? self.store.recordSyncError(wrapped.description, now: now())
            throw .central(wrapped)
        }
    }

    /// One round on one connection: uplink, downlink, uplink of what the downlink did, and the round's report.
    private func round(_ db: CentralDatabase, now: @escaping @Sendable () -> Int64) async throws -> Run {
        do {
            var run = try await self.drain(db, now: now)
            let (queued, refused) = try await self.fetchOrders(db, now: now)
            run.ordersQueued = queued
            run.ordersRefused = refused
            if queued + refused > 0 {
                let more = try await self.drain(db, now: now)
                run.batches += more.batches
                run.others += more.others
                run.conflicts += more.conflicts
                run.ackedSequence = more.ackedSequence
            }
            // Even an empty round tells the centre: its view (last error, backlog, last contact) is now.
            let backlog: Int64
            do throws(StoreError) {
                backlog = try self.store.syncState().backlog
            } catch {
                throw Failure.local(error)
            }
            try await db.reportRound(now: now(), backlog: backlog, error: nil)
            return run
        } catch {
            // Failed while connected (the centre lost entries, a refused batch, the local store): the
            // centre shows why. Not on a connection the server dropped (see CentralDatabase.isUsable).
            if db.isUsable(after: Self.cause(of: error)) {
                let backlog = (try? self.store.syncState().backlog) ?? 0
                try? await db.reportRound(now: now(), backlog: backlog, error: Self.message(error))
            }
            throw error
        }
    }

    /// The downlink: the centre's pending orders for this gateway's meters, each queued once (or refused).
    private func fetchOrders(_ db: CentralDatabase, now: @Sendable () -> Int64) async throws(Failure)
        -> (queued: Int, refused: Int)
    {
        let orders: [CentralOrderInput]
        do {
            orders = try await db.fetchOwnOrders(now: now())
        } catch {
            throw .central(error)
        }
        if !orders.isEmpty { self.crashHook?("sync-fetched") }
        var queued = 0
        var refused = 0
        for order in orders {
            do {
                switch try self.store.receive(order, by: Actor(Self.operatorName, now: now())) {
                case .queued: queued += 1
                case .refused: refused += 1
                case .alreadyReceived: break
                }
            } catch {
                throw .local(error)
            }
        }
        if queued + refused > 0 {
            self.storedOrders.add(queued: queued, refused: refused)
            self.crashHook?("sync-received")
        }
        return (queued, refused)
    }

    /// The orders stored here since the last call, whether or not their rounds succeeded (for the metrics).
    public func takeStoredOrders() -> (queued: Int, refused: Int) { self.storedOrders.take() }

    /// The centre's error inside one of ours, for ``CentralDatabase/isUsable(after:)``.
    static func cause(of error: any Error) -> any Error {
        if case .central(let central)? = error as? Failure { return central }
        return error
    }

    static func message(_ error: any Error) -> String {
        switch error {
        case let failure as Failure: failure.description
        case let error as CentralError: error.description
        default: String(describing: error)
        }
    }

    /// Who the gateway's audit log names for what sync did.
    static let operatorName = "sync"

    private func drain(_ db: CentralDatabase, now: @Sendable () -> Int64) async throws(Failure) -> Run {
        var run = Run()
        var acked: Int64
        do {
            acked = try await db.ownAcknowledgement()
            let local = try self.store.syncState().ackedSequence
            guard acked >= local else { throw Failure.centreBehind(centre: acked, local: local) }
            try self.store.acknowledgeOutbox(upTo: acked, now: now())
        } catch let failure as Failure {
            throw failure
        } catch let error as CentralError {
            throw .central(error)
        } catch let error as StoreError {
            throw .local(error)
        } catch {
            throw .central(.server(sqlState: "client", message: "\(error)"))
        }
        let pause = Duration.milliseconds(1000 / max(1, self.options.maxBatchesPerSecond))
        let clock = ContinuousClock()
        var last = clock.now - pause
        while true {
            let next: OutboxBatch?
            do {
                next = try self.store.outboxBatch(after: acked, limit: self.options.batchSize)
            } catch {
                throw .local(error)
            }
            guard let batch = next else { break }
            // Bounded rate: a day's backlog goes out steadily, not all at once.
            let due = last + pause
            if clock.now < due { try? await Task.sleep(until: due, clock: clock) }
            last = clock.now
            let request = SyncBatch(
                fromSequence: batch.fromSequence, toSequence: batch.toSequence,
                readings: batch.readings.map {
                    .init(meterSerial: $0.meterSerial, time: $0.time, registerUnits: $0.register,
                          creditUnits: $0.credit, source: $0.source)
                },
                alarms: batch.alarms.map {
                    .init(meterSerial: $0.meterSerial, time: $0.time, alarms: Int32(truncatingIfNeeded: $0.alarms),
                          source: $0.source)
                },
                extra: Self.extra(of: batch))
            let receipt: SyncReceipt
            do {
                receipt = try await db.ingest(request, now: now())
            } catch .outOfOrder(_, let expected, _) where expected >= 1 {
                // The centre is elsewhere than this store thought: resume where it says.
                acked = expected - 1
                continue
            } catch {
                throw .central(error)
            }
            self.crashHook?("sync-ingested")
            do {
                try self.store.acknowledgeOutbox(upTo: receipt.ackedSequence, now: now())
            } catch {
                throw .local(error)
            }
            acked = receipt.ackedSequence
            run.batches += 1
            run.readings += receipt.readingsInserted
            run.alarms += receipt.alarmsInserted
            run.others += receipt.othersInserted
            run.conflicts += receipt.conflicts
        }
        run.ackedSequence = acked
        return run
    }

    /// Everything but readings and alarms, as the centre's batch function takes it.
    static func extra(of batch: OutboxBatch) -> SyncBatch.Extra {
        var extra = SyncBatch.Extra()
        extra.events = batch.events.map {
            .init(meterSerial: $0.meterSerial, index: $0.index, time: $0.time, code: $0.code, value: $0.value)
        }
        extra.relays = batch.relayChanges.map {
            .init(meterSerial: $0.meterSerial, time: $0.time, relay: $0.relay, reason: $0.reason, source: $0.source)
        }
        extra.uploads = batch.cardUploads.map {
            let u = $0.upload
            return .init(meterSerial: $0.meterSerial, image: [UInt8](u.image), cardSerial: u.cardSerial,
                         outcome: u.outcome, refusal: u.refusal, refusalDetail: u.refusalDetail,
                         lastApplied: u.lastAppliedSequence, unitsApplied: u.unitsApplied, register: u.register,
                         credit: u.credit, meterTime: u.meterTime, alarms: u.alarms, uploadedAt: u.uploadedAt,
                         operator: u.operator)
        }
        extra.purchases = batch.purchases.map {
            let p = $0.purchase
            return .init(meterSerial: $0.meterSerial, id: p.id!, state: $0.state, time: $0.time,
                         requestId: p.requestId, sequence: p.sequence, mode: p.mode.rawValue, units: p.units,
                         unitKind: p.unitKind, currency: p.currency, paidMinor: p.paidMinor,
                         order: $0.centralOrderID)
        }
        extra.refusals = batch.orderRefusals.map {
            .init(order: $0.orderID, meterSerial: $0.meterSerial, refusal: $0.refusal, time: $0.time)
        }
        extra.backlog = batch.backlogAfter
        return extra
    }
}

/// A count shared by the copies of one `OutboxSync`.
private final class StoredOrders: Sendable {
    private let counts = Mutex((queued: 0, refused: 0))

    func add(queued: Int, refused: Int) {
        self.counts.withLock { $0 = ($0.queued + queued, $0.refused + refused) }
    }

    func take() -> (queued: Int, refused: Int) {
        self.counts.withLock { c in
            defer { c = (0, 0) }
            return c
        }
    }
}
