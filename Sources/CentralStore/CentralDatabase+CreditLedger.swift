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
        try await self.deskWrite { c in
            let meter = try await self.findMeter(c, reference, lock: true)
            try await self.refuseServed(c, meter, StoreError.deliveredByGateway)
            // The same rules (the source among them) and audit lines as a card upload's confirmation
            // (`CardRules.checkApplied`).
            return try await self.markApplied(c, meter: meter, upTo: Int64(sequence), source: source, by: actor)
        }
    }
}
