import BillingStore
import Foundation
import MeterProtocol
import PostgresNIO
import Prepaid

/// The billing desk on the central store (docs/CENTRAL.md "The desk on the central store"): the same operations,
/// rules and records as on SQLite. The rules are `DeskRules` and `SaleRules`; this file only fetches and writes
/// rows. Each operation is one transaction; where SQLite relied on its single writer, the rows decided on are
/// locked (`FOR UPDATE`: the account sold to, the meter numbered) or an advisory lock orders the writers (account
/// numbers, tariff versions).
extension CentralDatabase: BillingDesk {
    // MARK: Accounts

    public func openAccount(
        name: String, address: String?, phone: String?, number: Int64?, currency: Currency, by actor: Actor
    ) async throws(StoreError) -> BillingDatabase.AccountDetail {
        let name = try DeskRules.checkNewAccount(name: name, number: number)
        return try await self.deskWrite { c in
            try await self.lockNumbering(c)
            let customerID = try await self.id(c, """
                INSERT INTO customer (name, address, phone, created_at)
                VALUES (\(name), \(address), \(phone), \(actor.now)) RETURNING id
                """)
            let highest = try await self.optional(c, "SELECT max(number) FROM account", as: Int64.self)
            let chosen = DeskRules.accountNumber(given: number, highest: highest)
            let accountID = try await self.id(c, """
                INSERT INTO account (customer_id, number, currency, balance_minor, state, opened_at)
                VALUES (\(customerID), \(chosen), \(currency.code), 0, 'open', \(actor.now)) RETURNING id
                """)
            try await self.audit(c, actor, "account.open", "account", accountID,
                                 [("name", .string(name)), ("number", .int(chosen)),
                                  ("currency", .string(currency.code))])
            return try await self.detail(c, try await self.account(c, id: accountID))
        }
    }

    public func closeAccount(_ reference: String, payout: Bool, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.AccountDetail
    {
        try await self.deskWrite { c in
            var account = try await self.findAccount(c, reference, lock: true)
            let paidOut = try DeskRules.checkClose(
                account, pending: try await self.pendingCount(c, account: account.id!), payout: payout)
            if paidOut > 0 {
                try await self.move(c, &account, .payout, -paidOut, now: actor.now)
                try await self.audit(c, actor, "account.payout", "account", account.id,
                                     [("amountMinor", .int(paidOut))])
            }
            try await c.execute("UPDATE meter SET account_id = NULL WHERE account_id = \(account.id!)",
                                logger: self.logger)
            try await c.execute("""
                UPDATE account SET state = 'closed', closed_at = \(actor.now) WHERE id = \(account.id!)
                """, logger: self.logger)
            try await self.audit(c, actor, "account.close", "account", account.id)
            return try await self.detail(c, try await self.account(c, id: account.id!))
        }
    }

    public func accounts() async throws(StoreError) -> [BillingDatabase.AccountDetail] {
        try await self.deskRead { c in
            var out: [BillingDatabase.AccountDetail] = []
            for account in try await self.records(c, "SELECT to_jsonb(a)::text FROM account a ORDER BY a.id",
                                                  as: Account.self) {
                out.append(try await self.detail(c, account))
            }
            return out
        }
    }

    public func account(_ reference: String) async throws(StoreError) -> BillingDatabase.AccountDetail {
        try await self.deskRead { c in try await self.detail(c, try await self.findAccount(c, reference)) }
    }

    public func movements(account reference: String) async throws(StoreError) -> [Movement] {
        try await self.deskRead { c in
            let account = try await self.findAccount(c, reference)
            return try await self.records(c, """
                SELECT to_jsonb(v)::text FROM movement v WHERE v.account_id = \(account.id!) ORDER BY v.id
                """, as: Movement.self)
        }
    }

    // MARK: Meters

    public func addMeter(
        serial: UInt32, kind: DeviceKind, tariff: String, bus: String?, address: UInt8?, keyRevision: UInt8,
        lastApplied: UInt32, by actor: Actor
    ) async throws(StoreError) -> Meter {
        let unit = try DeskRules.checkNewMeter(serial: serial, kind: kind)
        return try await self.deskWrite { c in
            let record = try await self.findTariff(c, tariff)
            try DeskRules.checkTariff(record, forMeterUnit: Int64(unit.rawValue))
            let serial = Int64(serial)
            if try await self.optional(c, "SELECT id FROM meter WHERE serial = \(serial)", as: Int64.self) != nil {
                throw StoreError.meterExists(serial: serial)
            }
            let id = try await self.id(c, """
                INSERT INTO meter (serial, kind, unit_kind, bus, address, tariff_id, key_revision, sequence_base,
                                   last_applied_sequence, fixed_charges_from, created_at)
                VALUES (\(serial), \(kind.name), \(Int16(unit.rawValue)), \(bus), \(address.map(Int16.init)),
                        \(record.id!), \(Int16(keyRevision)), \(Int64(lastApplied)), \(Int64(lastApplied)), 0,
                        \(actor.now))
                RETURNING id
                """)
            try await self.audit(c, actor, "meter.add", "meter", id,
                                 [("serial", .int(serial)), ("kind", .string(kind.name)),
                                  ("tariff", .string(record.name))])
            return try await self.meter(c, id: id)
        }
    }

    public func assignMeter(_ meterReference: String, to accountReference: String, by actor: Actor)
        async throws(StoreError) -> Meter
    {
        try await self.deskWrite { c in
            let account = try await self.findAccount(c, accountReference, lock: true)
            var meter = try await self.findMeter(c, meterReference, lock: true)
            let pending = try await self.count(c, """
                SELECT count(*) FROM purchase
                WHERE meter_id = \(meter.id!) AND state IN ('created', 'written', 'queued')
                """)
            let accountsMeter = try await self.records(
                c, "SELECT to_jsonb(m)::text FROM meter m WHERE m.account_id = \(account.id!)", as: Meter.self).first
            guard try DeskRules.checkAssign(meter: meter, account: account, accountsMeter: accountsMeter,
                                            pending: Int(pending))
            else { return meter }
            let previous = meter.accountId
            guard let version = try await self.versionInForce(c, tariffID: meter.tariffId, at: actor.now) else {
                throw StoreError.noTariffInForce(tariff: try await self.tariffName(c, meter.tariffId), time: actor.now)
            }
            meter.accountId = account.id
            meter.fixedChargesFrom = try DeskRules.fixedChargesFrom(version: version, now: actor.now)
            try await c.execute("""
                UPDATE meter SET account_id = \(account.id!), fixed_charges_from = \(meter.fixedChargesFrom)
                WHERE id = \(meter.id!)
                """, logger: self.logger)
            try await c.execute("UPDATE card SET state = 'replaced' WHERE meter_id = \(meter.id!) AND state = 'active'",
                                logger: self.logger)
            try await self.audit(c, actor, "meter.assign", "meter", meter.id,
                                 [("account", .int(account.id!)),
                                  ("previousAccount", previous.map { .int($0) } ?? .null)])
            return meter
        }
    }

    public func setTariff(_ meterReference: String, tariff: String, by actor: Actor) async throws(StoreError)
        -> Meter
    {
        try await self.deskWrite { c in
            // Locked as a sale locks it: a sale at the same moment prices by the tariff before or after, not both.
            let meter = try await self.findMeter(c, meterReference, lock: true)
            let record = try await self.findTariff(c, tariff)
            try DeskRules.checkTariff(record, forMeterUnit: meter.unitKind)
            try await c.execute("UPDATE meter SET tariff_id = \(record.id!) WHERE id = \(meter.id!)",
                                logger: self.logger)
            try await self.audit(c, actor, "meter.tariff", "meter", meter.id, [("tariff", .string(record.name))])
            return try await self.meter(c, id: meter.id!)
        }
    }

    public func meters() async throws(StoreError) -> [Meter] {
        try await self.deskRead { c in
            try await self.records(c, "SELECT to_jsonb(m)::text FROM meter m ORDER BY m.serial", as: Meter.self)
        }
    }

    public func meter(_ reference: String) async throws(StoreError) -> Meter {
        try await self.deskRead { c in try await self.findMeter(c, reference) }
    }

    public func pendingCreditBlock(meter reference: String) async throws(StoreError)
        -> BillingDatabase.PendingCredit?
    {
        try await self.deskRead { c in try await self.pendingCredit(c, meter: try await self.findMeter(c, reference)) }
    }

    /// The meter's pending purchases (`created`, `written`, `queued`) as one card block (`PendingCredit.of`).
    func pendingCredit(_ c: PostgresConnection, meter: Meter) async throws -> BillingDatabase.PendingCredit? {
        try BillingDatabase.PendingCredit.of(meter: meter, pending: try await self.purchases(c, where: """
            p.meter_id = \(meter.id!) AND p.state IN ('created', 'written', 'queued') ORDER BY p.sequence
            """))
    }

    // MARK: Tariffs

    public func addTariff(_ tariff: Tariff, validFrom: Int64, utcOffsetSeconds: Int32, by actor: Actor)
        async throws(StoreError) -> BillingDatabase.TariffDetail
    {
        let definition = try TariffJSON.encode(tariff)
        return try await self.deskWrite { c in
            try await self.lockNumbering(c)
            let existing = try await self.records(
                c, "SELECT to_jsonb(t)::text FROM tariff t WHERE t.name = \(tariff.name)", as: TariffRecord.self).first
            let tariffID: Int64
            if let existing {
                try DeskRules.checkNewVersion(
                    tariff, of: existing, validFrom: validFrom, latestValidFrom: try await self.optional(
                        c, "SELECT max(valid_from) FROM tariff_version WHERE tariff_id = \(existing.id!)",
                        as: Int64.self))
                tariffID = existing.id!
            } else {
                tariffID = try await self.id(c, """
                    INSERT INTO tariff (name, currency, unit_kind, created_at)
                    VALUES (\(tariff.name), \(tariff.currency.code), \(Int16(tariff.unitKind.rawValue)), \(actor.now))
                    RETURNING id
                    """)
                try await self.audit(c, actor, "tariff.add", "tariff", tariffID, [("name", .string(tariff.name))])
            }
            let next = (try await self.optional(
                c, "SELECT max(version)::bigint FROM tariff_version WHERE tariff_id = \(tariffID)", as: Int64.self)
                ?? 0) + 1
            let versionID = try await self.id(c, """
                INSERT INTO tariff_version (tariff_id, version, valid_from, utc_offset_seconds, definition, created_at)
                VALUES (\(tariffID), \(Int32(next)), \(validFrom), \(utcOffsetSeconds), \(definition)::jsonb,
                        \(actor.now))
                RETURNING id
                """)
            try await self.audit(c, actor, "tariff.version", "tariffVersion", versionID,
                                 [("tariff", .string(tariff.name)), ("version", .int(next)),
                                  ("validFrom", .int(validFrom))])
            return try await self.tariffDetail(c, try await self.findTariff(c, String(tariffID)))
        }
    }

    public func tariffs() async throws(StoreError) -> [BillingDatabase.TariffDetail] {
        try await self.deskRead { c in
            var out: [BillingDatabase.TariffDetail] = []
            for record in try await self.records(c, "SELECT to_jsonb(t)::text FROM tariff t ORDER BY t.name",
                                                 as: TariffRecord.self) {
                out.append(try await self.tariffDetail(c, record))
            }
            return out
        }
    }

    public func tariff(_ reference: String) async throws(StoreError) -> BillingDatabase.TariffDetail {
        try await self.deskRead { c in try await self.tariffDetail(c, try await self.findTariff(c, reference)) }
    }

    // MARK: Sales and purchases

    public func sell(account reference: String, amount: Money, requestID: String, mode: Purchase.Mode, by actor: Actor)
        async throws(StoreError) -> BillingDatabase.SaleOutcome
    {
        try await self.deskWrite { c in
            try await self.sell(c, account: reference, amount: amount, requestID: requestID, mode: mode,
                                paymentID: nil, by: actor)
        }
    }

    func sell(
        _ c: PostgresConnection, account reference: String, amount: Money, requestID: String, mode: Purchase.Mode,
        paymentID: Int64?, by actor: Actor
    ) async throws -> BillingDatabase.SaleOutcome {
        try SaleRules.checkRequestID(requestID)
        try await self.lockRequestID(c, requestID)
        // The account's row is the sale's lock: a second sale (or a repeat of this one) for it waits here
        // and then sees this one committed, as SQLite's single writer would have it.
        var account = try await self.findAccount(c, reference, lock: true)
        if let first = try await self.purchases(c, where: "p.request_id = \(requestID)").first {
            try SaleRules.checkRepeat(first, requestID: requestID, accountID: account.id!, amount: amount,
                                      mode: mode)
            return BillingDatabase.SaleOutcome(purchase: first, repeated: true, account: account,
                                               meter: try await self.meter(c, id: first.meterId))
        }
        // Request ids are one space with the remote orders of `central sell`.
        if let order = try await self.optional(c, "SELECT id FROM remote_order WHERE request_id = \(requestID)",
                                               as: Int64.self) {
            throw StoreError.requestUsedByOrder(requestID: requestID, orderID: order)
        }
        // The meter's row is locked too: its next sequence is decided from the sequences it has.
        let meter = try SaleRules.checkBuyer(account: account, amount: amount, meter: try await self.records(
            c, "SELECT to_jsonb(m)::text FROM meter m WHERE m.account_id = \(account.id!) FOR UPDATE",
            as: Meter.self).first)
        // A meter a gateway serves takes its credit from that gateway, which numbers its purchases.
        let gateway = try await self.servingGateway(c, meterID: meter.id!)
        if let gateway, mode != .remote {
            throw StoreError.meterServedByGateway(serial: meter.serial, gateway: gateway.name)
        }
        let terms = try SaleRules.terms(
            meter: meter, account: account,
            version: try await self.versionInForce(c, tariffID: meter.tariffId, at: actor.now),
            tariffName: try await self.tariffName(c, meter.tariffId), now: actor.now)
        let position = try await self.unitsIntoPeriod(c, meterID: meter.id!, periodStart: terms.periodStart,
                                                      now: actor.now)
        let paidThrough = try await self.optional(c, """
            SELECT max(fixed_paid_through) FROM purchase WHERE meter_id = \(meter.id!) AND state <> 'cancelled'
            """, as: Int64.self)
        let last = try await self.optional(c, "SELECT max(sequence) FROM purchase WHERE meter_id = \(meter.id!)",
                                           as: Int64.self)
        var purchase = try SaleRules.purchase(
            terms: terms, account: account, meter: meter, amount: amount, unitsIntoPeriod: position,
            paidThrough: paidThrough, lastSequence: last, requestID: requestID, mode: mode, paymentID: paymentID,
            by: actor)
        if let gateway {
            // The order the gateway fetches: the units priced here and what they cost (fixed charges with
            // their value). The purchase's sequence is the gateway's to give.
            let orderID = try await self.id(c, """
                INSERT INTO remote_order (request_id, meter_id, gateway_id, account_id, units, unit_kind,
                                          amount_minor, currency, created_at, operator)
                VALUES (\(requestID), \(meter.id!), \(gateway.id), \(account.id!), \(purchase.units),
                        \(Int16(purchase.unitKind)), \(purchase.chargedMinor), \(purchase.currency), \(actor.now),
                        \(actor.name))
                RETURNING id
                """)
            purchase.id = try await self.insert(c, purchase, order: orderID)
            purchase.sequence = 0
            try await self.audit(c, actor, "remote-order.sell", "remote_order", orderID,
                                 [("requestId", .string(requestID)), ("meter", .int(meter.serial)),
                                  ("units", .int(purchase.units)), ("amountMinor", .int(purchase.chargedMinor)),
                                  ("gateway", .string(gateway.name)), ("purchase", .int(purchase.id!))])
        } else {
            purchase.id = try await self.insert(c, purchase)
        }
        for (kind, amountMinor) in SaleRules.movements(purchase) {
            try await self.move(c, &account, kind, amountMinor, now: actor.now, purchaseID: purchase.id,
                                paymentID: kind == .deposit ? paymentID : nil)
        }
        try await self.audit(c, actor, "purchase.create", "purchase", purchase.id,
                             SaleRules.auditDetail(purchase, meterSerial: meter.serial))
        return BillingDatabase.SaleOutcome(purchase: try await self.purchase(c, id: purchase.id!),
                                           repeated: false, account: account, meter: meter)
    }

    // MARK: Payments and reports

    public func importPayments(_ rows: [BankPaymentRow], by actor: Actor) async -> [BillingDatabase.PaymentResult] {
        var out: [BillingDatabase.PaymentResult] = []
        for row in rows {
            do throws(StoreError) {
                out.append(try await self.deskWrite { c in try await self.importPayment(c, row, by: actor) })
            } catch {
                out.append(.refused(line: row.line, reference: row.reference, error))
            }
        }
        return out
    }

    func importPayment(_ c: PostgresConnection, _ row: BankPaymentRow, by actor: Actor) async throws
        -> BillingDatabase.PaymentResult
    {
        if try await self.optional(c, "SELECT id FROM bank_payment WHERE reference = \(row.reference)",
                                   as: Int64.self) != nil {
            throw StoreError.duplicatePayment(reference: row.reference)
        }
        // The sale below locks its request id; taken here, before the account's row, the locks come in the
        // order every sale takes them (a desk sale under the same id cannot deadlock with this import).
        let requestID = "bank:" + row.reference
        try await self.lockRequestID(c, requestID)
        var account = try await self.findAccount(c, row.account, lock: true)
        let money = try DeskRules.checkPayment(row, account: account)
        let paymentID = try await self.id(c, """
            INSERT INTO bank_payment (reference, date, account_id, amount_minor, currency, purpose, imported_at,
                                      operator)
            VALUES (\(row.reference), \(row.date), \(account.id!), \(money.amountMinor), \(row.currency),
                    \(row.purpose), \(actor.now), \(actor.name))
            RETURNING id
            """)
        try await self.audit(c, actor, "payment.import", "bankPayment", paymentID,
                             [("reference", .string(row.reference)), ("amountMinor", .int(money.amountMinor))])
        let hasMeter = try await self.optional(c, "SELECT id FROM meter WHERE account_id = \(account.id!)",
                                               as: Int64.self) != nil
        if DeskRules.paymentBuysCredit(row, accountHasMeter: hasMeter) {
            let outcome = try await self.sell(c, account: String(account.id!), amount: money,
                                              requestID: requestID, mode: .remote, paymentID: paymentID,
                                              by: actor)
            return .purchase(line: row.line, reference: row.reference, purchaseID: outcome.purchase.id!)
        }
        try await self.move(c, &account, .deposit, money.amountMinor, now: actor.now, paymentID: paymentID)
        return .credit(line: row.line, reference: row.reference, amountMinor: money.amountMinor)
    }

    public func statement(account reference: String, monthStartDay: Int64) async throws(StoreError)
        -> BillingDatabase.Statement
    {
        let endDay = LocalTime.nextMonth(day: monthStartDay) - 1
        return try await self.deskRead { c in
            let account = try await self.findAccount(c, reference)
            let offset = try await self.utcOffset(c)
            let from = monthStartDay * 86400 - offset
            let to = (endDay + 1) * 86400 - offset
            let id = account.id!
            let opening = try await self.count(c, """
                SELECT coalesce(sum(amount_minor), 0)::bigint FROM movement WHERE account_id = \(id) AND time < \(from)
                """)
            func sum(_ kind: String) async throws -> Int64 {
                try await self.count(c, """
                    SELECT coalesce(sum(amount_minor), 0)::bigint FROM movement
                    WHERE account_id = \(id) AND kind = \(kind) AND time >= \(from) AND time < \(to)
                    """)
            }
            let bought = try await self.count(c, """
                SELECT count(*) FROM purchase
                WHERE account_id = \(id) AND state <> 'cancelled' AND created_at >= \(from) AND created_at < \(to)
                """)
            let units = try await self.count(c, """
                SELECT coalesce(sum(units), 0)::bigint FROM purchase
                WHERE account_id = \(id) AND state <> 'cancelled' AND created_at >= \(from) AND created_at < \(to)
                """)
            let meter = try await self.records(
                c, "SELECT to_jsonb(m)::text FROM meter m WHERE m.account_id = \(id)", as: Meter.self).first
            var consumption: Int64?
            if let meter {
                func register(_ condition: PostgresQuery) async throws -> Int64? {
                    var query = condition
                    query.sql = "SELECT register FROM reading WHERE meter_id = \(meter.id!) AND " + condition.sql
                    return try await self.optional(c, query, as: Int64.self)
                }
                consumption = BillingDatabase.Statement.consumption(
                    lastInMonth: try await register("time >= \(from) AND time < \(to) ORDER BY time DESC LIMIT 1"),
                    lastBefore: try await register("time < \(from) ORDER BY time DESC LIMIT 1"),
                    firstInMonth: try await register("time >= \(from) AND time < \(to) ORDER BY time LIMIT 1"))
            }
            return BillingDatabase.Statement(
                account: account, monthStartDay: monthStartDay, openingBalanceMinor: opening,
                movements: (try await sum("deposit"), try await sum("purchase"), try await sum("refund"),
                            try await sum("payout")),
                purchases: Int(bought), unitsBought: units, meter: meter, consumption: consumption)
        }
    }

    public func salesReport(
        fromDay: Int64, toDay: Int64, by granularity: BillingDatabase.Granularity, perAccount: Bool
    ) async throws(StoreError) -> [BillingDatabase.SalesRow] {
        try await self.deskRead { c in
            let offset = try await self.utcOffset(c)
            let from = fromDay * 86400 - offset
            let to = (toDay + 1) * 86400 - offset
            var days: [BillingDatabase.SalesDay] = []
            // Integer division as SQLite's: the times are after 1970, so truncation is the floor.
            for try await (day, account, currency, n, paid, value, fixed, units) in try await c.query("""
                SELECT (created_at + \(offset)) / 86400 AS day, account_id, currency, count(*), sum(paid_minor)::bigint,
                       sum(value_minor)::bigint, sum(fixed_charges_minor)::bigint, sum(units)::bigint
                FROM purchase WHERE created_at >= \(from) AND created_at < \(to) AND state <> 'cancelled'
                GROUP BY day, account_id, currency ORDER BY day, account_id
                """, logger: self.logger).decode((Int64, Int64, String, Int64, Int64, Int64, Int64, Int64).self) {
                days.append(BillingDatabase.SalesDay(day: day, account: account, currency: currency,
                                                     purchases: Int(n), paidMinor: paid, valueMinor: value,
                                                     fixedChargesMinor: fixed, units: units))
            }
            return BillingDatabase.SalesRow.rows(days, by: granularity, perAccount: perAccount)
        }
    }

    public func cancel(purchase id: Int64, by actor: Actor) async throws(StoreError) -> Purchase {
        try await self.deskWrite { c in
            // The account first (as a sale locks it), then the purchase.
            let accountID = try await self.purchase(c, id: id).accountId
            var account = try await self.findAccount(c, String(accountID), lock: true)
            guard let purchase = try await self.purchases(c, where: "p.id = \(id) FOR UPDATE").first else {
                throw StoreError.purchaseNotFound(String(id))
            }
            guard try SaleRules.checkCancel(purchase) else { return purchase }
            try await self.withdrawOrder(c, purchase: purchase)
            try await c.execute("UPDATE purchase SET state = 'cancelled', cancelled_at = \(actor.now) WHERE id = \(id)",
                                logger: self.logger)
            try await self.move(c, &account, .refund, purchase.chargedMinor, now: actor.now, purchaseID: id)
            try await self.audit(c, actor, "purchase.cancel", "purchase", id,
                                 [("refundMinor", .int(purchase.chargedMinor))])
            return try await self.purchase(c, id: id)
        }
    }

    public func purchase(_ id: Int64) async throws(StoreError) -> Purchase {
        try await self.deskRead { c in try await self.purchase(c, id: id) }
    }

    public func purchases(account: String?) async throws(StoreError) -> [Purchase] {
        try await self.deskRead { c in
            if let account {
                let a = try await self.findAccount(c, account)
                return try await self.purchases(c, where: "p.account_id = \(a.id!) ORDER BY p.id")
            }
            return try await self.purchases(c, where: "true ORDER BY p.id")
        }
    }

    public func receipt(purchase id: Int64) async throws(StoreError) -> Receipt {
        try await self.deskRead { c in
            let p = try await self.purchase(c, id: id)
            let account = try await self.account(c, id: p.accountId)
            let customer = try await self.records(
                c, "SELECT to_jsonb(u)::text FROM customer u WHERE u.id = \(account.customerId)", as: Customer.self)[0]
            let meter = try await self.meter(c, id: p.meterId)
            let cardSerial = try await p.cardId.asyncMap { card in
                try await self.optional(c, "SELECT serial FROM card WHERE id = \(card)", as: Int64.self)
            } ?? nil
            let offset = try await self.utcOffset(c)
            return Receipt(purchase: p, account: account, customer: customer, meter: meter, cardSerial: cardSerial,
                           offset: offset)
        }
    }
}

extension CentralDatabase {
    /// Orders the sales of one request id, desk sales and `central sell` alike (one space of request ids): the
    /// second waits for the first to commit and then sees it. Taken before any row lock.
    func lockRequestID(_ c: PostgresConnection, _ requestID: String) async throws {
        try await c.execute("SELECT pg_advisory_xact_lock(\(Self.requestLockClass), hashtext(\(requestID)))",
                            logger: self.logger)
    }

    /// The first key of the two-key advisory locks on request ids ("rq").
    static let requestLockClass: Int32 = 0x7271

    /// The gateway that serves a meter (nil: none, the centre numbers its purchases).
    func servingGateway(_ c: PostgresConnection, meterID: Int64) async throws -> (id: Int64, name: String)? {
        var found: (id: Int64, name: String)?
        for try await (id, name) in try await c.query("""
            SELECT g.id, g.name FROM meter m JOIN gateway g ON g.id = m.gateway_id
            WHERE m.id = \(meterID) AND g.retired_at IS NULL
            """, logger: self.logger).decode((Int64, String).self) {
            found = (id, name)
        }
        return found
    }

    /// A purchase sold here for a gateway to deliver is cancelled only while its order has not been handed to the
    /// gateway (or the gateway refused it, or it became a conflict): then the order is withdrawn with it.
    func withdrawOrder(_ c: PostgresConnection, purchase: Purchase) async throws {
        var order: (id: Int64, state: String, fetched: Bool, gateway: String)?
        for try await (id, state, fetched, gateway) in try await c.query("""
            SELECT o.id, o.state, o.fetched_at IS NOT NULL, g.name
            FROM purchase p JOIN remote_order o ON o.id = p.remote_order_id JOIN gateway g ON g.id = o.gateway_id
            WHERE p.id = \(purchase.id!) FOR UPDATE OF o
            """, logger: self.logger).decode((Int64, String, Bool, String).self) {
            order = (id, state, fetched, gateway)
        }
        guard let order else { return }
        let withdrawable = ["refused", "conflict", "cancelled"].contains(order.state)
            || (order.state == "pending" && !order.fetched)
        guard withdrawable else {
            throw StoreError.invalidTransition(
                purchase: purchase.id!, from: "with gateway \(order.gateway) (order \(order.id) \(order.state))",
                to: "cancelled")
        }
        // A refused order keeps its state and the gateway's reason; it is not delivered either way.
        if order.state == "pending" || order.state == "conflict" {
            try await c.execute("UPDATE remote_order SET state = 'cancelled' WHERE id = \(order.id)",
                                logger: self.logger)
        }
    }
}

extension Optional {
    fileprivate func asyncMap<U>(_ transform: (Wrapped) async throws -> U) async rethrows -> U? {
        guard let self else { return nil }
        return try await transform(self)
    }
}
