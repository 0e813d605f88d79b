import BillingStore
import MeterProtocol
import PostgresNIO
import Prepaid

/// Remote credit for a meter that no gateway serves, delivered by the technician's laptop on its bus
/// (`metergw topup --remote --url`, docs/CENTRAL.md "Remote credit for a meter no gateway serves"): the centre
/// numbered its purchases, and `CreditDelivery` marks them applied here as it does on SQLite. The command line
/// bridges these calls to the synchronous `CreditLedger` that `CreditDelivery` takes.
///
/// A meter a gateway serves is refused (`deliveredByGateway`): its gateway numbers and delivers its purchases, and
/// a second deliverer would break that.
extension CentralDatabase {
    /// The gateway that serves the meter (by serial or "id:N"), nil when none does.
    public func servingGateway(meter reference: String) async throws(StoreError) -> String? {
        try await self.deskRead { c in
            try await self.servingGateway(c, meterID: try await self.findMeter(c, reference).id!)?.name
        }
    }

    /// The meter's numbered purchases, in sequence order (a gateway's order not numbered yet has no place).
    public func purchases(meterID: Int64) async throws(StoreError) -> [Purchase] {
        try await self.deskRead { c in
            try await self.purchases(c, where: """
                p.meter_id = \(meterID) AND p.sequence IS NOT NULL ORDER BY p.sequence
                """)
        }
    }

    /// As `BillingDatabase.markApplied`: the purchases the meter has up to `sequence` become applied (a cancelled
    /// one is a void it took), the meter's last applied sequence advances (never back), with the same audit
    /// entries. The meter's row is locked, so two deliverers confirm each purchase once.
    public func markApplied(meter reference: String, upTo sequence: UInt32, source: String, by actor: Actor)
        async throws(StoreError) -> [Purchase]
    {
        guard ["card", "remote", "reading"].contains(source) else {
            throw StoreError.invalidArgument("source is card, remote or reading")
        }
        return try await self.deskWrite { c in
            let meter = try await self.findMeter(c, reference, lock: true)
            if let gateway = try await self.servingGateway(c, meterID: meter.id!) {
                throw StoreError.deliveredByGateway(serial: meter.serial, gateway: gateway.name)
            }
            let upTo = Int64(sequence)
            let allocated = try await self.optional(
                c, "SELECT max(sequence) FROM purchase WHERE meter_id = \(meter.id!)", as: Int64.self)
                ?? meter.sequenceBase
            guard upTo <= max(allocated, meter.sequenceBase) else {
                throw StoreError.invalidArgument(
                    "meter \(meter.serial) reports sequence \(upTo) applied, but this store sold only up to "
                        + "\(allocated): is it bound to another desk?")
            }
            guard upTo > meter.lastAppliedSequence else { return [] }
            try await c.execute("UPDATE meter SET last_applied_sequence = \(upTo) WHERE id = \(meter.id!)",
                                logger: self.logger)
            var applied: [Purchase] = []
            for p in try await self.purchases(c, where: """
                p.meter_id = \(meter.id!) AND p.sequence > \(meter.lastAppliedSequence) AND p.sequence <= \(upTo)
                ORDER BY p.sequence FOR UPDATE
                """) {
                guard p.isPending else {
                    if p.state == .cancelled {
                        // A cancelled purchase is a void (zero units) for the meter; it never carries units to it.
                        try await self.audit(c, actor, "purchase.void-confirmed", "purchase", p.id,
                                             [("source", .string(source))])
                    }
                    continue
                }
                try await c.execute("""
                    UPDATE purchase SET state = 'applied', applied_at = \(actor.now), applied_source = \(source)
                    WHERE id = \(p.id!)
                    """, logger: self.logger)
                try await self.audit(c, actor, "purchase.applied", "purchase", p.id,
                                     [("source", .string(source)), ("upTo", .int(upTo))])
                applied.append(try await self.purchase(c, id: p.id!))
            }
            return applied
        }
    }

    /// The centre's own purchases are the desk's: one the meter refuses stays queued for the desk to decide (as a
    /// gateway's own desk sale does), so there is never an order to refuse back. Nothing is written.
    public func refuseCentralPurchase(_ id: Int64, reason: String, by actor: Actor) async throws(StoreError)
        -> Int64?
    {
        nil
    }
}
