import Foundation
import GRDB
import MeterProtocol
import Prepaid

extension BillingDatabase {
    /// What `sell` did: the purchase, and whether it is the first answer to an earlier request with this id.
    public struct SaleOutcome: Hashable, Sendable {
        public var purchase: Purchase
        /// True when the request id was seen before: nothing new was sold.
        public var repeated: Bool
        public var account: Account
        public var meter: Meter

        public init(purchase: Purchase, repeated: Bool, account: Account, meter: Meter) {
            self.purchase = purchase
            self.repeated = repeated
            self.account = account
            self.meter = meter
        }
    }

    /// Sells `amount` (plus the account's balance) as units for the account's meter (docs/STORE.md "Selling").
    ///
    /// One transaction: the tariff in force now, the tier position from the latest known consumption in the billing
    /// period, the fixed charges owed, `Prepaid.Tariff.sell`, the meter's next purchase sequence, the purchase
    /// (`created` for a card, `queued` for the gateway), the account's movements (deposit, charge) and the audit
    /// log. A repeated `requestID` returns the first purchase; one with other terms is `requestConflict`.
    public func sell(
        account reference: String, amount: Money, requestID: String, mode: Purchase.Mode, by actor: Actor
    ) throws(StoreError) -> SaleOutcome {
        try self.write { db in
            try self.sell(db, account: reference, amount: amount, requestID: requestID, mode: mode, paymentID: nil,
                          by: actor)
        }
    }

    func sell(
        _ db: Database, account reference: String, amount: Money, requestID: String, mode: Purchase.Mode,
        paymentID: Int64?, by actor: Actor
    ) throws -> SaleOutcome {
        try SaleRules.checkRequestID(requestID)
        var account = try Self.findAccount(db, reference)
        if let first = try Purchase.filter(Column("requestId") == requestID).fetchOne(db) {
            try SaleRules.checkRepeat(first, requestID: requestID, accountID: account.id!, amount: amount, mode: mode)
            return SaleOutcome(purchase: first, repeated: true, account: account,
                               meter: try Meter.fetchOne(db, key: first.meterId)!)
        }
        let meter = try SaleRules.checkBuyer(
            account: account, amount: amount, meter: try Meter.filter(Column("accountId") == account.id).fetchOne(db))
        let terms = try SaleRules.terms(
            meter: meter, account: account,
            version: try Self.versionInForceIfAny(db, tariffID: meter.tariffId, at: actor.now),
            tariffName: try Self.tariffName(db, meter.tariffId), now: actor.now)
        let position = try Self.unitsIntoPeriod(db, meterID: meter.id!, periodStart: terms.periodStart, now: actor.now)
        let paidThrough = try Int64.fetchOne(db, sql: """
            SELECT max(fixedPaidThrough) FROM purchase WHERE meterId = ? AND state <> 'cancelled'
            """, arguments: [meter.id])
        let last = try Int64.fetchOne(db, sql: "SELECT max(sequence) FROM purchase WHERE meterId = ?",
                                      arguments: [meter.id])
        self.crash("after-validate")
        var purchase = try SaleRules.purchase(
            terms: terms, account: account, meter: meter, amount: amount, unitsIntoPeriod: position,
            paidThrough: paidThrough, lastSequence: last, requestID: requestID, mode: mode, paymentID: paymentID,
            by: actor)
        self.crash("after-sequence")
        try purchase.insert(db)
        self.crash("after-insert")

        for (kind, amountMinor) in SaleRules.movements(purchase) {
            try Self.move(db, &account, kind, amountMinor, now: actor.now, purchaseID: purchase.id,
                          paymentID: kind == .deposit ? paymentID : nil)
        }
        self.crash("after-movements")
        try AuditLog.append(db, operator: actor.name, action: "purchase.create", entity: "purchase", id: purchase.id,
                            now: actor.now, SaleRules.auditDetail(purchase, meterSerial: meter.serial))
        return SaleOutcome(purchase: purchase, repeated: false, account: account, meter: meter)
    }

    /// Consumption known in the period starting at `periodStart`: the latest reading's register minus the register
    /// at the period's start (the latest reading at or before it, else the period's first reading). 0 when the
    /// meter has no reading in the period.
    static func unitsIntoPeriod(_ db: Database, meterID: Int64, periodStart: Int64, now: Int64) throws -> UInt64 {
        let latest = try Row.fetchOne(db, sql: """
            SELECT time, register FROM reading WHERE meterId = ? AND time <= ? ORDER BY time DESC LIMIT 1
            """, arguments: [meterID, now]).map { (time: $0["time"] as Int64, register: $0["register"] as Int64) }
        guard let latest, latest.time >= periodStart else { return 0 }
        let base = try Int64.fetchOne(db, sql: """
            SELECT register FROM reading WHERE meterId = ? AND time <= ? ORDER BY time DESC LIMIT 1
            """, arguments: [meterID, periodStart]) ?? Int64.fetchOne(db, sql: """
            SELECT register FROM reading WHERE meterId = ? AND time >= ? ORDER BY time LIMIT 1
            """, arguments: [meterID, periodStart])
        return SaleRules.unitsIntoPeriod(latest: latest, periodStart: periodStart, base: base)
    }

    // MARK: Transitions

    /// A card purchase is on the card: the caller wrote the image through the card writer, read it back and found
    /// it equal. Every `created` purchase of the meter up to this one is on that card (a credit block carries them
    /// all), so they all become `written`. Repeating it for the same card changes nothing.
    public func markWritten(purchase id: Int64, cardSerial: UInt32, generation: UInt16, by actor: Actor)
        throws(StoreError) -> [Purchase]
    {
        try self.write { db in
            guard let purchase = try Purchase.fetchOne(db, key: id) else {
                throw StoreError.purchaseNotFound(String(id))
            }
            let card = try Card.filter(Column("serial") == Int64(cardSerial)).fetchOne(db)
            let meter = try Meter.fetchOne(db, key: purchase.meterId)!
            guard try CardRules.checkWritten(purchase, card: card, cardSerial: cardSerial, generation: generation,
                                             meter: meter), let card
            else { return [purchase] }
            var written: [Purchase] = []
            for var p in try Purchase.filter(
                Column("meterId") == purchase.meterId && Column("state") == "created"
                    && Column("sequence") <= purchase.sequence
            ).order(Column("sequence")).fetchAll(db) {
                p.state = .written
                p.cardId = card.id
                p.writtenAt = actor.now
                try p.update(db, columns: ["state", "cardId", "writtenAt"])
                try AuditLog.append(db, operator: actor.name, action: "purchase.written", entity: "purchase", id: p.id,
                                    now: actor.now, CardRules.writtenDetail(card))
                written.append(p)
            }
            return written
        }
    }

    /// The meter confirmed every purchase up to `sequence` (a card's write-back, a remote "applied" or "already
    /// applied", a status read's last applied sequence). Each pending purchase up to it becomes `applied` exactly
    /// once; repeating it changes nothing. Returns the purchases applied by this call.
    public func markApplied(meter reference: String, upTo sequence: UInt32, source: String, by actor: Actor)
        throws(StoreError) -> [Purchase]
    {
        try self.write { db in
            try Self.markApplied(db, meter: try Self.findMeter(db, reference), upTo: Int64(sequence), source: source,
                                 by: actor)
        }
    }

    static func markApplied(_ db: Database, meter: Meter, upTo sequence: Int64, source: String, by actor: Actor)
        throws -> [Purchase]
    {
        let highest = try Int64.fetchOne(db, sql: "SELECT max(sequence) FROM purchase WHERE meterId = ?",
                                         arguments: [meter.id])
        guard try CardRules.checkApplied(meter: meter, upTo: sequence, highestSequence: highest, source: source)
        else { return [] }
        try db.execute(sql: "UPDATE meter SET lastAppliedSequence = ? WHERE id = ?", arguments: [sequence, meter.id])
        var applied: [Purchase] = []
        for var p in try Purchase.filter(
            Column("meterId") == meter.id && Column("sequence") <= sequence && Column("sequence") > meter.lastAppliedSequence
        ).order(Column("sequence")).fetchAll(db) {
            guard p.isPending else {
                if p.state == .cancelled {
                    // A cancelled purchase is a void (zero units) for the meter; it must never carry units to it.
                    try AuditLog.append(db, operator: actor.name, action: "purchase.void-confirmed", entity: "purchase",
                                        id: p.id, now: actor.now, CardRules.voidConfirmedDetail(source: source))
                }
                continue
            }
            p.state = .applied
            p.appliedAt = actor.now
            p.appliedSource = source
            try p.update(db, columns: ["state", "appliedAt", "appliedSource"])
            try AuditLog.append(db, operator: actor.name, action: "purchase.applied", entity: "purchase", id: p.id,
                                now: actor.now, CardRules.appliedDetail(source: source, upTo: sequence))
            applied.append(p)
        }
        return applied
    }

    /// Cancels a purchase whose credit has not left the desk (`created` or `queued`) and refunds what it charged to
    /// the account's balance. Its sequence stays taken, as a void of zero units that the next card block or a
    /// zero-unit APPLY_CREDIT carries, so the meter's sequence has no gap.
    public func cancel(purchase id: Int64, by actor: Actor) throws(StoreError) -> Purchase {
        try self.write { db in try Self.cancel(db, purchaseID: id, reason: Self.cancelledAtGateway, by: actor) }
    }

    /// Why a centrally sold order was refused when a person cancelled its purchase here.
    public static let cancelledAtGateway = "cancelled-at-gateway"

    /// Cancels a created or queued purchase and refunds what it charged. A purchase that delivers an order sold at
    /// the centre is refused back to the centre with `reason` (its refusal is in the outbox before the
    /// cancellation), and the money paid there goes back there (a payout after the refund): the local balance
    /// does not move, and a person at the centre decides (docs/CENTRAL.md "Refusals").
    static func cancel(_ db: Database, purchaseID id: Int64, reason: String, by actor: Actor) throws -> Purchase {
        guard var purchase = try Purchase.fetchOne(db, key: id) else {
            throw StoreError.purchaseNotFound(String(id))
        }
        guard try SaleRules.checkCancel(purchase) else { return purchase }
        let order = try Int64.fetchOne(db, sql: "SELECT orderId FROM centralOrder WHERE purchaseId = ?",
                                       arguments: [id])
        if let order {
            try db.execute(sql: """
                INSERT INTO centralOrderRefusal (orderId, reason, refusedAt) VALUES (?, ?, ?)
                """, arguments: [order, reason, actor.now])
        }
        purchase.state = .cancelled
        purchase.cancelledAt = actor.now
        try purchase.update(db, columns: ["state", "cancelledAt"])
        var account = try Account.fetchOne(db, key: purchase.accountId)!
        try Self.move(db, &account, .refund, purchase.chargedMinor, now: actor.now, purchaseID: purchase.id)
        if order != nil {
            try Self.move(db, &account, .payout, -purchase.chargedMinor, now: actor.now, purchaseID: purchase.id)
        }
        var detail: [(String, JSONValue)] = [("refundMinor", .int(purchase.chargedMinor))]
        if let order { detail += [("centralOrder", .int(order)), ("refusal", .string(reason))] }
        try AuditLog.append(db, operator: actor.name, action: "purchase.cancel", entity: "purchase", id: purchase.id,
                            now: actor.now, detail)
        return purchase
    }

    public func purchase(_ id: Int64) throws(StoreError) -> Purchase {
        try self.read { db in
            guard let p = try Purchase.fetchOne(db, key: id) else { throw StoreError.purchaseNotFound(String(id)) }
            return p
        }
    }

    public func purchase(requestID: String) throws(StoreError) -> Purchase? {
        try self.read { db in try Purchase.filter(Column("requestId") == requestID).fetchOne(db) }
    }

    /// Purchases of one account, or all, newest last.
    public func purchases(account: String? = nil) throws(StoreError) -> [Purchase] {
        try self.read { db in
            if let account {
                let a = try Self.findAccount(db, account)
                return try Purchase.filter(Column("accountId") == a.id).order(Column("id")).fetchAll(db)
            }
            return try Purchase.order(Column("id")).fetchAll(db)
        }
    }

    /// Queued purchases for the gateway's credit queue, oldest sequence first per meter.
    public func queuedPurchases() throws(StoreError) -> [Purchase] {
        try self.read { db in
            try Purchase.filter(Column("state") == "queued").order(Column("meterId"), Column("sequence")).fetchAll(db)
        }
    }
}
