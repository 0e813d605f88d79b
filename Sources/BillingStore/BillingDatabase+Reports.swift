import GRDB

extension BillingDatabase {
    /// How reports group rows in time.
    public enum Granularity: String, Sendable, CaseIterable { case day, month }

    /// One row of the sales report: a day or month, and (optionally) one account.
    public struct SalesRow: Hashable, Sendable {
        public var period: String
        public var account: Int64?
        public var purchases: Int
        public var paidMinor: Int64
        public var valueMinor: Int64
        public var fixedChargesMinor: Int64
        public var units: Int64
        public var currency: String

        /// The report's rows from the days' sums (ordered by day, then account): per day or month, per account if
        /// asked. Written once for both stores.
        public static func rows(_ days: [SalesDay], by granularity: Granularity, perAccount: Bool) -> [SalesRow] {
            var out: [String: SalesRow] = [:]
            var order: [String] = []
            for d in days {
                let period = granularity == .day ? LocalTime.dateText(day: d.day) : LocalTime.monthText(day: d.day)
                let account: Int64? = perAccount ? d.account : nil
                let key = "\(period)|\(account ?? 0)|\(d.currency)"
                if out[key] == nil {
                    order.append(key)
                    out[key] = SalesRow(period: period, account: account, purchases: 0, paidMinor: 0, valueMinor: 0,
                                        fixedChargesMinor: 0, units: 0, currency: d.currency)
                }
                out[key]!.purchases += d.purchases
                out[key]!.paidMinor += d.paidMinor
                out[key]!.valueMinor += d.valueMinor
                out[key]!.fixedChargesMinor += d.fixedChargesMinor
                out[key]!.units += d.units
            }
            return order.map { out[$0]! }
        }
    }

    /// Sales (not cancelled) created in local days `fromDay...toDay`, summed per day or month, per account if asked.
    public func salesReport(fromDay: Int64, toDay: Int64, by granularity: Granularity, perAccount: Bool)
        throws(StoreError) -> [SalesRow]
    {
        try self.read { db in
            let offset = try Self.utcOffset(db)
            let from = fromDay * 86400 - offset
            let to = (toDay + 1) * 86400 - offset
            let rows = try Row.fetchAll(db, sql: """
                SELECT (createdAt + ?) / 86400 AS day, accountId, currency, count(*) AS n, sum(paidMinor) AS paid,
                       sum(valueMinor) AS value, sum(fixedChargesMinor) AS fixed, sum(units) AS units
                FROM purchase WHERE createdAt >= ? AND createdAt < ? AND state <> 'cancelled'
                GROUP BY day, accountId, currency ORDER BY day, accountId
                """, arguments: [offset, from, to]).map { row in
                SalesDay(day: row["day"], account: row["accountId"], currency: row["currency"], purchases: row["n"],
                         paidMinor: row["paid"], valueMinor: row["value"], fixedChargesMinor: row["fixed"],
                         units: row["units"])
            }
            return SalesRow.rows(rows, by: granularity, perAccount: perAccount)
        }
    }

    /// One local day's sales of one account in one currency, as a store sums them (either store's SQL).
    public struct SalesDay: Hashable, Sendable {
        public var day: Int64
        public var account: Int64
        public var currency: String
        public var purchases: Int
        public var paidMinor: Int64
        public var valueMinor: Int64
        public var fixedChargesMinor: Int64
        public var units: Int64

        public init(day: Int64, account: Int64, currency: String, purchases: Int, paidMinor: Int64, valueMinor: Int64,
                    fixedChargesMinor: Int64, units: Int64) {
            self.day = day
            self.account = account
            self.currency = currency
            self.purchases = purchases
            self.paidMinor = paidMinor
            self.valueMinor = valueMinor
            self.fixedChargesMinor = fixedChargesMinor
            self.units = units
        }
    }

    /// One row of the consumption report.
    public struct ConsumptionRow: Hashable, Sendable {
        public var period: String
        public var meterSerial: Int64
        public var unitKind: Int64
        public var units: Int64
    }

    /// Consumption per meter in local days `fromDay...toDay`, per day or month, from the daily summary (not the raw
    /// readings): a day's consumption is its last register minus the previous known day's last register (or its
    /// own first register when none is known before). Independent of the number of raw readings. Walks the meters
    /// one by one (by serial), calling `progress` after each.
    public func consumptionReport(fromDay: Int64, toDay: Int64, by granularity: Granularity,
                                  progress: ReportProgress? = nil)
        throws(StoreError) -> [ConsumptionRow]
    {
        try self.read { db in
            let meters = try Row.fetchAll(db, sql: "SELECT id, serial, unitKind FROM meter ORDER BY serial")
            var out: [ConsumptionRow] = []
            for (index, meter) in meters.enumerated() {
                out += ConsumptionRules.rows(
                    serial: meter["serial"], unitKind: meter["unitKind"],
                    daily: try Self.dailyUnits(db, meter: meter["id"], fromDay: fromDay, toDay: toDay), by: granularity)
                progress?(index + 1, meters.count)
            }
            return out
        }
    }

    /// A monthly statement: the account's balance at the month's start and end, its purchases and payments in it,
    /// and its meter's consumption.
    public struct Statement: Hashable, Sendable {
        public var account: Int64
        public var month: String
        public var currency: String
        public var openingBalanceMinor: Int64
        public var depositsMinor: Int64
        public var chargedMinor: Int64
        public var refundsMinor: Int64
        public var payoutsMinor: Int64
        public var closingBalanceMinor: Int64
        public var purchases: Int
        public var unitsBought: Int64
        public var consumption: Int64?
        public var unitKind: Int64?

        /// The statement from what a store summed for the month: the balance before it, the month's movements by
        /// kind (signed as stored), the purchases that stand, and the meter's consumption. Written once for both
        /// stores.
        public init(
            account: Account, monthStartDay: Int64, openingBalanceMinor opening: Int64,
            movements m: (deposits: Int64, charged: Int64, refunds: Int64, payouts: Int64), purchases: Int,
            unitsBought: Int64, meter: Meter?, consumption: Int64?
        ) {
            self.account = account.id!
            self.month = LocalTime.monthText(day: monthStartDay)
            self.currency = account.currency
            self.openingBalanceMinor = opening
            self.depositsMinor = m.deposits
            self.chargedMinor = -m.charged
            self.refundsMinor = m.refunds
            self.payoutsMinor = -m.payouts
            self.closingBalanceMinor = opening + m.deposits + m.charged + m.refunds + m.payouts
            self.purchases = purchases
            self.unitsBought = unitsBought
            self.consumption = meter == nil ? nil : consumption
            self.unitKind = meter?.unitKind
        }

        /// A month's consumption from its readings: the last register in it less the last before it (or, when
        /// none is before, its first). The daily summary's days add up to the same (each day is its last register
        /// less the previous day's). 0 without a reading in the month.
        public static func consumption(lastInMonth: Int64?, lastBefore: Int64?, firstInMonth: Int64?) -> Int64 {
            guard let last = lastInMonth, let base = lastBefore ?? firstInMonth else { return 0 }
            return last - base
        }
    }

    public func statement(account reference: String, monthStartDay: Int64) throws(StoreError) -> Statement {
        let endDay = LocalTime.nextMonth(day: monthStartDay) - 1
        return try self.read { db in
            let account = try Self.findAccount(db, reference)
            let offset = try Self.utcOffset(db)
            let from = monthStartDay * 86400 - offset
            let to = (endDay + 1) * 86400 - offset
            let opening = try Int64.fetchOne(db, sql: """
                SELECT coalesce(sum(amountMinor), 0) FROM movement WHERE accountId = ? AND time < ?
                """, arguments: [account.id, from])!
            func sum(_ kind: String) throws -> Int64 {
                try Int64.fetchOne(db, sql: """
                    SELECT coalesce(sum(amountMinor), 0) FROM movement
                    WHERE accountId = ? AND kind = ? AND time >= ? AND time < ?
                    """, arguments: [account.id, kind, from, to])!
            }
            let bought = try Row.fetchOne(db, sql: """
                SELECT count(*) AS n, coalesce(sum(units), 0) AS units FROM purchase
                WHERE accountId = ? AND state <> 'cancelled' AND createdAt >= ? AND createdAt < ?
                """, arguments: [account.id, from, to])!
            let meter = try Meter.filter(Column("accountId") == account.id).fetchOne(db)
            let consumption = try meter.map { m in
                try Self.dailyUnits(db, meter: m.id!, fromDay: monthStartDay, toDay: endDay).reduce(0) { $0 + $1.units }
            }
            return Statement(
                account: account, monthStartDay: monthStartDay, openingBalanceMinor: opening,
                movements: (try sum("deposit"), try sum("purchase"), try sum("refund"), try sum("payout")),
                purchases: bought["n"], unitsBought: bought["units"], meter: meter, consumption: consumption)
        }
    }
}
