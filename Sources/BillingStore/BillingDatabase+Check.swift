import GRDB

extension BillingDatabase {
    /// One broken invariant found by `check()`.
    public struct Violation: Hashable, Sendable, CustomStringConvertible {
        /// The invariant's name (docs/STORE.md "Invariants").
        public var invariant: String
        public var detail: String
        public var description: String { "\(self.invariant): \(self.detail)" }
    }

    /// `metergw db check`: SQLite's integrity and foreign key checks, then the business invariants that the
    /// constraints cannot state row by row. Empty when all hold. `full` also recomputes the daily consumption
    /// summary from every reading (slow on a large store).
    public func check(full: Bool = false) throws(StoreError) -> [Violation] {
        try self.read { db in
            var out: [Violation] = []
            func add(_ name: String, _ sql: String, _ text: (Row) -> String) throws {
                for row in try Row.fetchAll(db, sql: sql) { out.append(Violation(invariant: name, detail: text(row))) }
            }
            for row in try String.fetchAll(db, sql: "PRAGMA integrity_check") where row != "ok" {
                out.append(Violation(invariant: "integrity", detail: row))
            }
            try add("foreign-keys", "PRAGMA foreign_key_check") { row in
                "\(row[0] as String? ?? "?") row \(row[1] as Int64? ?? -1) refers to a missing \(row[2] as String? ?? "?")"
            }
            try add("balance-equals-movements", """
                SELECT a.id, a.balanceMinor, coalesce(sum(m.amountMinor), 0) AS total
                FROM account a LEFT JOIN movement m ON m.accountId = a.id
                GROUP BY a.id HAVING a.balanceMinor <> total
                """) { row in
                "account \(row[0] as Int64) has balance \(row[1] as Int64) but its movements sum to \(row[2] as Int64)"
            }
            try add("sequences-contiguous", """
                SELECT m.serial, m.sequenceBase, min(p.sequence), max(p.sequence), count(*)
                FROM purchase p JOIN meter m ON m.id = p.meterId GROUP BY p.meterId
                HAVING min(p.sequence) <> m.sequenceBase + 1 OR max(p.sequence) - min(p.sequence) + 1 <> count(*)
                """) { row in
                "meter \(row[0] as Int64): sequences \(row[2] as Int64)...\(row[3] as Int64) (\(row[4] as Int64) "
                    + "purchases) after base \(row[1] as Int64) have a gap"
            }
            try add("applied-once", """
                SELECT entityId, count(*) FROM auditLog WHERE action = 'purchase.applied'
                GROUP BY entityId HAVING count(*) > 1
                """) { row in "purchase \(row[0] as Int64) was applied \(row[1] as Int64) times" }
            try add("applied-matches-meter", """
                SELECT p.id, p.sequence, p.state, m.serial, m.lastAppliedSequence FROM purchase p
                JOIN meter m ON m.id = p.meterId
                WHERE (p.state IN ('created', 'written', 'queued') AND p.sequence <= m.lastAppliedSequence)
                   OR (p.state = 'applied' AND p.sequence > m.lastAppliedSequence)
                """) { row in
                "purchase \(row[0] as Int64) (sequence \(row[1] as Int64)) is \(row[2] as String) but meter "
                    + "\(row[3] as Int64) last applied \(row[4] as Int64)"
            }
            try add("purchase-movements", """
                SELECT p.id, p.paidMinor, p.fixedChargesMinor + p.valueMinor AS charged, p.state,
                    coalesce(sum(CASE WHEN v.kind = 'deposit' THEN v.amountMinor END), 0) AS deposit,
                    coalesce(sum(CASE WHEN v.kind = 'purchase' THEN v.amountMinor END), 0) AS purchase,
                    coalesce(sum(CASE WHEN v.kind = 'refund' THEN v.amountMinor END), 0) AS refund
                FROM purchase p LEFT JOIN movement v ON v.purchaseId = p.id GROUP BY p.id
                HAVING deposit <> p.paidMinor OR purchase <> -charged
                    OR refund <> (CASE WHEN p.state = 'cancelled' THEN charged ELSE 0 END)
                """) { row in
                "purchase \(row[0] as Int64) (\(row[3] as String)): paid \(row[1] as Int64), charged \(row[2] as Int64)"
                    + ", but its movements are deposit \(row[4] as Int64), charge \(row[5] as Int64), refund "
                    + "\(row[6] as Int64)"
            }
            try add("closed-accounts-settled", """
                SELECT a.id, count(p.id) FROM account a JOIN purchase p ON p.accountId = a.id
                WHERE a.state = 'closed' AND p.state IN ('created', 'written', 'queued') GROUP BY a.id
                """) { row in "closed account \(row[0] as Int64) has \(row[1] as Int64) pending purchase(s)" }
            if full {
                let offset = try Self.utcOffset(db)
                try add("daily-summary", """
                    WITH r AS (
                        SELECT meterId, (time + \(offset)) / 86400 - ((time + \(offset)) % 86400 < 0) AS day,
                               min(time) AS firstTime, max(time) AS lastTime
                        FROM reading GROUP BY meterId, day)
                    SELECT r.meterId, r.day FROM r LEFT JOIN dailyConsumption d
                        ON d.meterId = r.meterId AND d.day = r.day
                    WHERE d.meterId IS NULL OR d.firstTime <> r.firstTime OR d.lastTime <> r.lastTime
                    """) { row in "meter id \(row[0] as Int64) day \(row[1] as Int64) summary differs from readings" }
            }
            return out
        }
    }
}
