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
                """, arguments: [offset, from, to])
            var out: [String: SalesRow] = [:]
            var order: [String] = []
            for row in rows {
                let day: Int64 = row["day"]
                let period = granularity == .day ? LocalTime.dateText(day: day) : LocalTime.monthText(day: day)
                let account: Int64? = perAccount ? row["accountId"] : nil
                let currency: String = row["currency"]
                let key = "\(period)|\(account ?? 0)|\(currency)"
                if out[key] == nil {
                    order.append(key)
                    out[key] = SalesRow(period: period, account: account, purchases: 0, paidMinor: 0, valueMinor: 0,
                                        fixedChargesMinor: 0, units: 0, currency: currency)
                }
                out[key]!.purchases += row["n"] as Int
                out[key]!.paidMinor += row["paid"] as Int64
                out[key]!.valueMinor += row["value"] as Int64
                out[key]!.fixedChargesMinor += row["fixed"] as Int64
                out[key]!.units += row["units"] as Int64
            }
            return order.map { out[$0]! }
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
                let serial: Int64 = meter["serial"]
                for (day, units) in try Self.dailyUnits(db, meter: meter["id"], fromDay: fromDay, toDay: toDay) {
                    let period = granularity == .day ? LocalTime.dateText(day: day) : LocalTime.monthText(day: day)
                    if let last = out.last, last.meterSerial == serial, last.period == period {
                        out[out.count - 1].units += units
                    } else {
                        out.append(ConsumptionRow(period: period, meterSerial: serial, unitKind: meter["unitKind"],
                                                  units: units))
                    }
                }
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
            let (deposits, charged, refunds, payouts) = (try sum("deposit"), try sum("purchase"), try sum("refund"),
                                                        try sum("payout"))
            return Statement(
                account: account.id!, month: LocalTime.monthText(day: monthStartDay), currency: account.currency,
                openingBalanceMinor: opening, depositsMinor: deposits, chargedMinor: -charged, refundsMinor: refunds,
                payoutsMinor: -payouts, closingBalanceMinor: opening + deposits + charged + refunds + payouts,
                purchases: bought["n"], unitsBought: bought["units"],
                consumption: consumption,
                unitKind: meter?.unitKind)
        }
    }
}
