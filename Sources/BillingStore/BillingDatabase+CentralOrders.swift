import Foundation
import GRDB

/// Remote credit sold at the central store for one of this gateway's meters (docs/CENTRAL.md "Downlink").
public struct CentralOrderInput: Sendable, Equatable {
    /// The centre's order id: receiving the same order twice changes nothing.
    public var orderID: Int64
    public var requestID: String
    public var meterSerial: UInt32
    public var units: Int64
    public var unitKind: Int64
    /// What the customer paid at the centre, in minor units of `currency`.
    public var amountMinor: Int64
    public var currency: String
    public var soldAt: Int64

    public init(orderID: Int64, requestID: String, meterSerial: UInt32, units: Int64, unitKind: Int64,
                amountMinor: Int64, currency: String, soldAt: Int64) {
        self.orderID = orderID
        self.requestID = requestID
        self.meterSerial = meterSerial
        self.units = units
        self.unitKind = unitKind
        self.amountMinor = amountMinor
        self.currency = currency
        self.soldAt = soldAt
    }
}

/// What the gateway did with a central order.
public enum CentralOrderOutcome: Sendable, Equatable {
    /// Queued as this local remote purchase, which the credit queue delivers.
    case queued(Purchase)
    /// Not taken (`unknown-meter`, `no-account`, `account-closed`, `unit-kind`, `currency`, `no-tariff`,
    /// `sequence-exhausted`): the refusal goes up through the outbox and becomes a conflict for a person.
    case refused(String)
    /// Received before: nothing changed.
    case alreadyReceived
}

extension BillingDatabase {
    /// Takes the centre's orders: each becomes a queued remote purchase of its meter (money paid at the centre, so
    /// the local account gets the deposit and the charge, and its balance does not move), or a refusal. One
    /// transaction per order, with its outbox entry; an order received before is skipped, so a fetch repeated after
    /// a lost answer queues nothing twice.
    public func receive(_ order: CentralOrderInput, by actor: Actor) throws(StoreError) -> CentralOrderOutcome {
        guard order.orderID > 0, order.units >= 1, order.units <= Int64(UInt32.max), order.amountMinor > 0 else {
            throw .invalidArgument("central order \(order.orderID) has no units or no amount: the centre's "
                                   + "schema forbids that; check the centre's version")
        }
        return try self.write { db in
            if try Int64.fetchOne(db, sql: "SELECT 1 FROM centralOrder WHERE orderId = ?",
                                  arguments: [order.orderID]) != nil {
                return .alreadyReceived
            }
            func refuse(_ reason: String) throws -> CentralOrderOutcome {
                try db.execute(sql: """
                    INSERT INTO centralOrder (orderId, requestId, meterSerial, refusal, receivedAt) VALUES (?, ?, ?, ?, ?)
                    """, arguments: [order.orderID, order.requestID, Int64(order.meterSerial), reason, actor.now])
                try AuditLog.append(db, operator: actor.name, action: "central-order.refuse", entity: "centralOrder",
                                    id: order.orderID, now: actor.now,
                                    [("meter", .int(Int64(order.meterSerial))), ("refusal", .string(reason))])
                return .refused(reason)
            }
            guard let meter = try Meter.filter(Column("serial") == Int64(order.meterSerial)).fetchOne(db) else {
                return try refuse("unknown-meter")
            }
            guard let accountID = meter.accountId, var account = try Account.fetchOne(db, key: accountID) else {
                return try refuse("no-account")
            }
            guard account.state == .open else { return try refuse("account-closed") }
            guard meter.unitKind == order.unitKind else { return try refuse("unit-kind") }
            guard account.currency == order.currency else { return try refuse("currency") }
            let last = try Int64.fetchOne(db, sql: "SELECT max(sequence) FROM purchase WHERE meterId = ?",
                                          arguments: [meter.id])
            guard let sequence = try? SaleRules.nextSequence(meter: meter, lastSequence: last) else {
                return try refuse("sequence-exhausted")
            }
            // The purchase row names the tariff version in force; a meter without one cannot take credit yet.
            guard let version = try? Self.versionInForce(db, tariffID: meter.tariffId, at: actor.now) else {
                return try refuse("no-tariff")
            }
            let paidThrough = try Int64.fetchOne(db, sql: """
                SELECT max(fixedPaidThrough) FROM purchase WHERE meterId = ? AND state <> 'cancelled'
                """, arguments: [meter.id]) ?? (meter.fixedChargesFrom - 1)
            // The centre priced it: the local row records what was sold there, not a local tariff's answer.
            let sale: [String: Int64] = ["centralOrder": order.orderID, "units": order.units,
                                         "valueMinor": order.amountMinor, "soldAt": order.soldAt]
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            var purchase = Purchase(
                id: nil, requestId: "central-order-\(order.orderID)", accountId: accountID, meterId: meter.id!,
                sequence: sequence, mode: .remote, state: .queued, currency: order.currency,
                paidMinor: order.amountMinor, balanceUsedMinor: 0, fixedChargesMinor: 0, valueMinor: order.amountMinor,
                remainderMinor: 0, units: order.units, unitKind: meter.unitKind, tierPosition: 0,
                unpaidFixedCharges: 0, fixedPaidThrough: paidThrough, tariffVersionId: version.id!,
                sale: String(decoding: try encoder.encode(sale), as: UTF8.self), cardId: nil, paymentId: nil,
                createdAt: actor.now, writtenAt: nil, appliedAt: nil, appliedSource: nil, cancelledAt: nil,
                operator: actor.name)
            try purchase.insert(db)
            try db.execute(sql: """
                INSERT INTO centralOrder (orderId, requestId, meterSerial, purchaseId, receivedAt) VALUES (?, ?, ?, ?, ?)
                """, arguments: [order.orderID, order.requestID, Int64(order.meterSerial), purchase.id, actor.now])
            try Self.move(db, &account, .deposit, order.amountMinor, now: actor.now, purchaseID: purchase.id)
            try Self.move(db, &account, .purchase, -order.amountMinor, now: actor.now, purchaseID: purchase.id)
            try AuditLog.append(
                db, operator: actor.name, action: "purchase.create", entity: "purchase", id: purchase.id,
                now: actor.now, [("requestId", .string(purchase.requestId)), ("centralOrder", .int(order.orderID)),
                                 ("centralRequestId", .string(order.requestID)), ("meter", .int(meter.serial)),
                                 ("sequence", .int(sequence)), ("units", .int(order.units)),
                                 ("paidMinor", .int(order.amountMinor))])
            return .queued(purchase)
        }
    }

    /// The central orders received, newest last: (order id, local purchase id or nil, refusal or nil). The
    /// refusal is the one at receipt, or a later one (the meter refused the credit, a person cancelled it here).
    public func centralOrders() throws(StoreError) -> [(orderID: Int64, purchaseID: Int64?, refusal: String?)] {
        try self.read { db in
            try Row.fetchAll(db, sql: """
                SELECT c.orderId, c.purchaseId, coalesce(r.reason, c.refusal) FROM centralOrder c
                LEFT JOIN centralOrderRefusal r ON r.orderId = c.orderId ORDER BY c.orderId
                """).map { ($0[0], $0[1], $0[2]) }
        }
    }

    /// The meter refused a purchase's credit for good (`reason`, e.g. `meter-refused:authentication-failed`): if
    /// it delivers an order sold at the centre, it is cancelled and the refusal goes up to the centre (see
    /// ``cancel(purchase:by:)``), and the centre's order id is returned. A local purchase is left queued for a
    /// person at the desk (nil).
    public func refuseCentralPurchase(_ id: Int64, reason: String, by actor: Actor) throws(StoreError) -> Int64? {
        try self.write { db in
            guard let order = try Int64.fetchOne(db, sql: "SELECT orderId FROM centralOrder WHERE purchaseId = ?",
                                                 arguments: [id]),
                  let purchase = try Purchase.fetchOne(db, key: id), purchase.state == .queued
            else { return nil }
            _ = try Self.cancel(db, purchaseID: id, reason: reason, by: actor)
            return order
        }
    }
}
