import BillingStore
import MeterBus
import MeterProtocol
import Prepaid

/// Delivers a meter's queued remote purchases over its bus, exactly once (docs/STORE.md "Remote top-up"): used
/// by the gateway's credit queue and by `metergw topup --remote`.
///
/// The meter's last applied sequence is read first, always: it confirms what the meter already has (a lost
/// answer, a crash after sending) and nothing is sent for those. The rest goes in sequence order, one signed
/// APPLY_CREDIT each (a cancelled purchase is a void of zero units, so the meter's sequence has no gap), and each
/// purchase is marked applied only on the meter's answer ("applied" or "already applied"). When an answer is lost,
/// the sequence is read again; the purchase stays queued unless the meter shows it applied.
///
/// Run it with the bus to itself (inside ``MeterDriver/onBus(_:)`` for async callers), so nothing else talks to
/// the meter between the read and the send.
public struct CreditDelivery: Sendable {
    /// The gateway's SQLite store, or the central store for a meter no gateway serves (`topup --remote --url`).
    public let store: any CreditLedger
    public let keys: IssuerKeys
    /// Who the audit log names ("gateway", the clerk).
    public let operatorName: String
    /// Unix seconds now.
    public let now: @Sendable () -> Int64
    /// A named point where a test may kill the process (`credit-read`, `credit-answered`, `credit-marked`).
    public let crashHook: (@Sendable (String) -> Void)?

    public init(store: any CreditLedger, keys: IssuerKeys, operatorName: String, now: @escaping @Sendable () -> Int64,
                crashHook: (@Sendable (String) -> Void)? = nil) {
        self.store = store
        self.keys = keys
        self.operatorName = operatorName
        self.now = now
        self.crashHook = crashHook
    }

    /// What one delivery did.
    public struct Outcome: Sendable {
        /// Purchases sent, with whether the meter applied them now (false: it had them already).
        public var sent: [(purchase: Purchase, applied: Bool)] = []
        /// Purchases confirmed by the store in this delivery (by the meter's answer or its last applied sequence).
        public var confirmed: [Purchase] = []
        /// The meter's last applied sequence when the delivery ended.
        public var lastApplied: UInt32 = 0
    }

    /// Why a delivery stopped short. Purchases not delivered stay queued; running it again is always safe.
    public enum Failure: Error, Sendable, CustomStringConvertible {
        case bus(BusError)
        case store(StoreError)
        /// A card purchase comes first in the meter's sequence: the card must reach the meter before this.
        case cardPurchaseFirst(purchase: Int64, sequence: Int64)
        /// The answer was lost and a fresh read shows the purchase not applied (or the meter could not be read).
        case answerLost(purchase: Int64, sequence: Int64, cause: BusError)
        /// The meter's protocol has no remote credit command (Modbus RTU, DL/T 645): nothing was sent.
        case noRemoteCredit(protocolName: String)
        /// The meter refused the credit of an order sold at the centre for good (``endsCredit(_:)``): the purchase
        /// is cancelled here and the refusal goes up to the centre, which raises a conflict for a person.
        case centralOrderRefused(purchase: Int64, sequence: Int64, order: Int64, refusal: String)

        public var description: String {
            switch self {
            case .bus(let error): error.description
            case .store(let error): error.explanation
            case .cardPurchaseFirst(let id, let sequence):
                "purchase \(id) (sequence \(sequence)) is on the customer's card and the meter needs it first: "
                    + "insert the card into the meter (or upload it at the desk); later purchases stay queued"
            case .answerLost(let id, let sequence, let cause):
                "\(cause.description)\nthe answer to purchase \(id) (sequence \(sequence)) was lost and the meter "
                    + "has not applied it (or could not be read): it stays queued; the next delivery reads the "
                    + "meter's last applied sequence before sending anything"
            case .noRemoteCredit(let name):
                "the meter speaks \(name), which has no remote credit command: its remote purchases stay queued and "
                    + "nothing was sent; cancel them and sell on a card, or move the meter to a native bus"
            case .centralOrderRefused(let id, let sequence, let order, let refusal):
                "the meter refused purchase \(id) (sequence \(sequence)), the central store's order \(order): "
                    + "\(refusal). It is cancelled here and the refusal goes to the central store, where a person "
                    + "settles it (`metergw central conflicts`); check the key file and the meter's key revision"
            }
        }
    }

    private var actor: Actor { Actor(self.operatorName, now: self.now()) }

    /// Delivers `meter`'s pending purchases up to `upTo` (nil: all), reached at `address` through `driver`.
    public func deliver(
        meter: Meter, address: MeterAddress, upTo: Int64? = nil, driver: some MeterDriver
    ) throws(Failure) -> Outcome {
        guard driver.capabilities.contains(.credit) else { throw .noRemoteCredit(protocolName: driver.protocolName) }
        var outcome = Outcome()
        let reference = String(meter.serial)
        // 1. What the meter has: confirm it, send nothing for it.
        var state = try Self.bus { () throws(BusError) in try driver.readSequence(address) }
        outcome.lastApplied = state.lastAppliedPurchase
        outcome.confirmed += try self.mark(reference, upTo: state.lastAppliedPurchase, source: "reading")
        self.crashHook?("credit-read")
        let all = try Self.stored { () throws(StoreError) in try self.store.purchases(meterID: meter.id!) }
        var signer = KeyFileSigner(keys: self.keys, after: state)
        // 2. The rest, in sequence order.
        for p in all where Int64(state.lastAppliedPurchase) < p.sequence && p.sequence <= (upTo ?? Int64.max) {
            let units: UInt32
            switch p.state {
            case .queued: units = UInt32(p.units)
            case .cancelled:
                // A void keeps the meter's sequence without a gap; only needed before a later remote purchase.
                guard all.contains(where: { $0.sequence > p.sequence && $0.state == .queued }) else { continue }
                units = 0
            case .applied: continue
            case .created, .written: throw .cardPurchaseFirst(purchase: p.id!, sequence: p.sequence)
            }
            let answer = Result { () throws(BusError) in
                try driver.applyCredit(address, purchaseSequence: UInt32(p.sequence), units: units, signer: signer)
            }
            signer = signer.next
            switch answer {
            case .success(let credit):
                self.crashHook?("credit-answered")
                outcome.confirmed += try self.mark(reference, upTo: UInt32(p.sequence), source: "remote")
                self.crashHook?("credit-marked")
                outcome.sent.append((p, credit.applied))
                outcome.lastApplied = credit.lastAppliedSequence
                state.lastAppliedPurchase = max(state.lastAppliedPurchase, UInt32(p.sequence))
            case .failure(.refused(let nak, let evidence)):
                try self.refuseCentralOrder(p, after: all, nak: nak)
                throw .bus(.refused(nak, evidence))
            case .failure(let cause):
                // The answer was lost: the meter may or may not have applied it. Read, never resend blindly.
                guard let after = try? driver.readSequence(address), Int64(after.lastAppliedPurchase) >= p.sequence
                else { throw .answerLost(purchase: p.id!, sequence: p.sequence, cause: cause) }
                outcome.confirmed += try self.mark(reference, upTo: after.lastAppliedPurchase, source: "reading")
                outcome.sent.append((p, true))
                outcome.lastApplied = after.lastAppliedPurchase
                state = after
                signer = KeyFileSigner(keys: self.keys, after: after)
            }
        }
        return outcome
    }

    /// Refusals that no resend changes: the command's MAC does not verify (another key), another key revision, a
    /// credit the meter cannot hold, or one it does not allow (another unit). The rest (busy, a replayed counter, a
    /// sequence gap before a card) may pass on a later delivery.
    public static func endsCredit(_ nak: Nak) -> Bool {
        switch nak.knownCode {
        case .authenticationFailed, .keyRevisionMismatch, .valueOutOfRange, .notPermitted: true
        default: false
        }
    }

    /// After the meter refused the command for `sent` for good: the purchase it blocks (itself, or the next queued
    /// one when a void was refused) is, if it delivers a centrally sold order, cancelled and refused back to the
    /// centre, so that the centre learns it and no later delivery can apply what a person there may sell again.
    /// A local purchase stays queued (the desk decides), as before.
    private func refuseCentralOrder(_ sent: Purchase, after all: [Purchase], nak: Nak) throws(Failure) {
        guard Self.endsCredit(nak) else { return }
        let blocked = sent.state == .queued
            ? sent : all.first { $0.sequence > sent.sequence && $0.state == .queued }
        guard let blocked else { return }
        let refusal = "meter-refused:" + (nak.knownCode?.name ?? "nak-\(nak.code)")
        let order = try Self.stored { () throws(StoreError) in
            try self.store.refuseCentralPurchase(blocked.id!, reason: refusal, by: self.actor)
        }
        guard let order else { return }
        throw .centralOrderRefused(purchase: blocked.id!, sequence: blocked.sequence, order: order, refusal: refusal)
    }

    private func mark(_ meter: String, upTo sequence: UInt32, source: String) throws(Failure) -> [Purchase] {
        try Self.stored { () throws(StoreError) in
            try self.store.markApplied(meter: meter, upTo: sequence, source: source, by: self.actor)
        }
    }

    private static func bus<T>(_ body: () throws(BusError) -> T) throws(Failure) -> T {
        do { return try body() } catch { throw .bus(error) }
    }

    private static func stored<T>(_ body: () throws(StoreError) -> T) throws(Failure) -> T {
        do { return try body() } catch { throw .store(error) }
    }
}
