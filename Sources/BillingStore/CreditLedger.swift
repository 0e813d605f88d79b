import Prepaid

/// What delivering remote credit over a bus needs of a store (`CreditDelivery`, docs/STORE.md "Remote top-up"):
/// a meter's purchases, marking them applied up to the sequence the meter reports, and refusing back to the centre
/// an order the meter will never take. The gateway's SQLite store is one; the central store is another, for the
/// meters no gateway serves (`metergw topup --remote --url`), through the command line's bridge to its async API.
///
/// Synchronous on purpose: a delivery runs with the bus to itself, between a read of the meter and a send, on the
/// bus's own thread.
public protocol CreditLedger: Sendable {
    /// The meter's numbered purchases, in sequence order.
    func purchases(meterID: Int64) throws(StoreError) -> [Purchase]
    /// Marks the meter's pending purchases up to `sequence` applied (a cancelled one is a void the meter took),
    /// advances its last applied sequence (never backwards) and writes the audit entries; returns those marked now.
    func markApplied(meter reference: String, upTo sequence: UInt32, source: String, by actor: Actor)
        throws(StoreError) -> [Purchase]
    /// After the meter refused a purchase for good: cancels it and returns the central order it delivered, when it
    /// delivered one; nil (the purchase stays queued, the desk decides) otherwise.
    func refuseCentralPurchase(_ id: Int64, reason: String, by actor: Actor) throws(StoreError) -> Int64?
}

extension BillingDatabase: CreditLedger {}
