import BillingStore
import Foundation
import MeterProtocol
import PostgresNIO
import Prepaid

// The desk's rows on the central store: transactions that keep `StoreError`s, rows read as the same Codable
// records as SQLite's, and the few writes every operation shares (movements, the audit log).

extension CentralError {
    /// The desk's error for a failure of the central store: what happened and what to do, in the same words.
    public var storeError: StoreError {
        switch self {
        case .badURL: .invalidArgument(self.description)
        case .unreachable: .unreachable(self.description)
        case .authenticationFailed, .permissionDenied: .permissionDenied(self.description)
        case .noDatabase, .schema: .schema(self.description)
        case .constraint(let message): .constraint(message)
        case .outOfOrder: .database(self.description)
        case .server(let state, _) where state == "40001" || state == "40P01" || state == "55P03":
            .databaseLocked(self.description)
        case .server: .database(self.description)
        }
    }
}

extension CentralDatabase {
    // MARK: Transactions

    /// One write transaction (READ COMMITTED: each statement sees what committed before it, and the rows an
    /// operation decides on are locked explicitly). A `StoreError` thrown by `body` rolls back and is thrown as is.
    func deskWrite<T>(_ body: (PostgresConnection) async throws -> T) async throws(StoreError) -> T {
        try await self.desk("BEGIN", body)
    }

    /// One read: a single snapshot, so an account and its meter and movements agree.
    func deskRead<T>(_ body: (PostgresConnection) async throws -> T) async throws(StoreError) -> T {
        try await self.desk("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }

    private func desk<T>(_ begin: PostgresQuery, _ body: (PostgresConnection) async throws -> T)
        async throws(StoreError) -> T
    {
        do {
            return try await self.inTransaction(begin, body)
        } catch let error as StoreError {
            throw error
        } catch let error as DecodingError {
            throw .database("a central store row does not read as a record: \(error)")
        } catch {
            throw CentralError.from(error, url: self.url).storeError
        }
    }

    /// Orders the desk's writers that number things (account numbers, tariff versions): the second waits for the
    /// first to commit, as on SQLite.
    func lockNumbering(_ c: PostgresConnection) async throws {
        try await c.execute("SELECT pg_advisory_xact_lock(\(Self.deskLock))", logger: self.logger)
    }

    /// "metergw desk" in ASCII, beside the migrations' lock.
    static let deskLock: Int64 = 0x6D67_6465_736B

    // MARK: Reading rows

    /// Rows whose single column is a row as JSON (`to_jsonb(t)::text`): their snake_case names are the records'
    /// camelCase keys, so the central store reads the very records the SQLite store reads.
    func records<R: Decodable>(_ c: PostgresConnection, _ query: PostgresQuery, as type: R.Type) async throws -> [R] {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        var out: [R] = []
        for try await text in try await c.query(query, logger: self.logger).decode(String.self) {
            out.append(try decoder.decode(R.self, from: Data(text.utf8)))
        }
        return out
    }

    /// The first column of the first row, nil when there is no row or it is NULL.
    func optional<T: PostgresDecodable & Sendable>(_ c: PostgresConnection, _ query: PostgresQuery, as type: T.Type)
        async throws -> T? where T._DecodableType == T
    {
        var first: T??
        // Every row is read, so the connection is ready for the next statement.
        for try await value in try await c.query(query, logger: self.logger).decode(T?.self) where first == nil {
            first = .some(value)
        }
        return first ?? nil
    }

    /// An `INSERT ... RETURNING id`.
    func id(_ c: PostgresConnection, _ query: PostgresQuery) async throws -> Int64 {
        guard let id = try await self.optional(c, query, as: Int64.self) else {
            throw StoreError.database("the central store returned no id")
        }
        return id
    }

    func count(_ c: PostgresConnection, _ query: PostgresQuery) async throws -> Int64 {
        try await self.optional(c, query, as: Int64.self) ?? 0
    }

    /// The store's local time offset (setting `utcOffsetSeconds`, as on SQLite).
    func utcOffset(_ c: PostgresConnection) async throws -> Int64 {
        try await self.optional(c, "SELECT value::bigint FROM setting WHERE key = 'utcOffsetSeconds'",
                                as: Int64.self) ?? 28800
    }

    // MARK: Accounts

    func account(_ c: PostgresConnection, id: Int64, lock: Bool = false) async throws -> Account {
        guard let account = try await self.records(c, """
            SELECT to_jsonb(a)::text FROM account a WHERE a.id = \(id) \(unescaped: lock ? "FOR UPDATE" : "")
            """, as: Account.self).first
        else { throw StoreError.accountNotFound(String(id)) }
        return account
    }

    /// An account by id ("12") or number ("#10000012" or a number that is no id), as on SQLite.
    func findAccount(_ c: PostgresConnection, _ reference: String, lock: Bool = false) async throws -> Account {
        let text = reference.trimmingCharacters(in: [" ", "\t"])
        let forUpdate = lock ? "FOR UPDATE" : ""
        if text.hasPrefix("#"), let number = Int64(text.dropFirst()), let account = try await self.records(c, """
            SELECT to_jsonb(a)::text FROM account a WHERE a.number = \(number) \(unescaped: forUpdate)
            """, as: Account.self).first {
            return account
        }
        if let id = Int64(text) {
            if let account = try await self.records(c, """
                SELECT to_jsonb(a)::text FROM account a WHERE a.id = \(id) \(unescaped: forUpdate)
                """, as: Account.self).first {
                return account
            }
            if let account = try await self.records(c, """
                SELECT to_jsonb(a)::text FROM account a WHERE a.number = \(id) \(unescaped: forUpdate)
                """, as: Account.self).first {
                return account
            }
        }
        throw StoreError.accountNotFound(reference)
    }

    func detail(_ c: PostgresConnection, _ account: Account) async throws -> BillingDatabase.AccountDetail {
        let customer = try await self.records(
            c, "SELECT to_jsonb(u)::text FROM customer u WHERE u.id = \(account.customerId)", as: Customer.self)[0]
        let meter = try await self.records(
            c, "SELECT to_jsonb(m)::text FROM meter m WHERE m.account_id = \(account.id!)", as: Meter.self).first
        let pending = try await self.pendingCount(c, account: account.id!)
        return BillingDatabase.AccountDetail(account: account, customer: customer, meter: meter,
                                             pendingPurchases: pending)
    }

    func pendingCount(_ c: PostgresConnection, account id: Int64) async throws -> Int {
        Int(try await self.count(c, """
            SELECT count(*) FROM purchase WHERE account_id = \(id) AND state IN ('created', 'written', 'queued')
            """))
    }

    /// Adds a movement and moves the balance by the same amount: the only way balances change (as on SQLite).
    func move(
        _ c: PostgresConnection, _ account: inout Account, _ kind: Movement.Kind, _ amount: Int64, now: Int64,
        purchaseID: Int64? = nil, paymentID: Int64? = nil
    ) async throws {
        guard amount != 0 else { return }
        let (sum, overflow) = account.balanceMinor.addingReportingOverflow(amount)
        guard !overflow else { throw StoreError.sale(.overflow) }
        try await c.execute("""
            INSERT INTO movement (account_id, time, kind, amount_minor, purchase_id, payment_id)
            VALUES (\(account.id!), \(now), \(kind.rawValue), \(amount), \(purchaseID), \(paymentID))
            """, logger: self.logger)
        try await c.execute("UPDATE account SET balance_minor = \(sum) WHERE id = \(account.id!)", logger: self.logger)
        account.balanceMinor = sum
    }

    /// One line of the audit log, in the same transaction as the change (the same actions and details as SQLite).
    func audit(
        _ c: PostgresConnection, _ actor: Actor, _ action: String, _ entity: String, _ id: Int64?,
        _ detail: [(String, JSONValue)] = []
    ) async throws {
        try await c.execute("""
            INSERT INTO audit_log (time, operator, action, entity, entity_id, detail)
            VALUES (\(actor.now), \(actor.name), \(action), \(entity), \(id),
                    \(JSONValue.object(detail).rendered())::jsonb)
            """, logger: self.logger)
    }

    // MARK: Meters

    func meter(_ c: PostgresConnection, id: Int64) async throws -> Meter {
        guard let meter = try await self.records(
            c, "SELECT to_jsonb(m)::text FROM meter m WHERE m.id = \(id)", as: Meter.self).first
        else { throw StoreError.meterNotFound("id:\(id)") }
        return meter
    }

    /// A meter by serial (or "id:N"), as on SQLite.
    func findMeter(_ c: PostgresConnection, _ reference: String, lock: Bool = false) async throws -> Meter {
        let text = reference.trimmingCharacters(in: [" ", "\t"])
        let forUpdate = lock ? "FOR UPDATE" : ""
        if text.hasPrefix("id:"), let id = Int64(text.dropFirst(3)), let meter = try await self.records(c, """
            SELECT to_jsonb(m)::text FROM meter m WHERE m.id = \(id) \(unescaped: forUpdate)
            """, as: Meter.self).first {
            return meter
        }
        if let serial = Int64(text), let meter = try await self.records(c, """
            SELECT to_jsonb(m)::text FROM meter m WHERE m.serial = \(serial) \(unescaped: forUpdate)
            """, as: Meter.self).first {
            return meter
        }
        throw StoreError.meterNotFound(reference)
    }

    // MARK: Tariffs

    /// A tariff by name, else by id.
    func findTariff(_ c: PostgresConnection, _ reference: String) async throws -> TariffRecord {
        if let record = try await self.records(
            c, "SELECT to_jsonb(t)::text FROM tariff t WHERE t.name = \(reference)", as: TariffRecord.self).first {
            return record
        }
        if let id = Int64(reference), let record = try await self.records(
            c, "SELECT to_jsonb(t)::text FROM tariff t WHERE t.id = \(id)", as: TariffRecord.self).first {
            return record
        }
        throw StoreError.tariffNotFound(reference)
    }

    func tariffName(_ c: PostgresConnection, _ id: Int64) async throws -> String {
        try await self.optional(c, "SELECT name FROM tariff WHERE id = \(id)", as: String.self) ?? "?"
    }

    /// A version's definition is jsonb here and JSON text in the record.
    static let versionJSON = "(to_jsonb(v) || jsonb_build_object('definition', v.definition::text))::text"

    func tariffDetail(_ c: PostgresConnection, _ record: TariffRecord) async throws -> BillingDatabase.TariffDetail {
        BillingDatabase.TariffDetail(tariff: record, versions: try await self.records(c, """
            SELECT \(unescaped: Self.versionJSON) FROM tariff_version v WHERE v.tariff_id = \(record.id!)
            ORDER BY v.version
            """, as: TariffVersion.self))
    }

    /// The version in force at `time`: the latest whose start is not after it (nil: none).
    func versionInForce(_ c: PostgresConnection, tariffID: Int64, at time: Int64) async throws -> TariffVersion? {
        try await self.records(c, """
            SELECT \(unescaped: Self.versionJSON) FROM tariff_version v
            WHERE v.tariff_id = \(tariffID) AND v.valid_from <= \(time) ORDER BY v.valid_from DESC LIMIT 1
            """, as: TariffVersion.self).first
    }

    // MARK: Purchases

    /// A purchase's sale is jsonb here and JSON text in the record; a sequence its gateway has not given yet
    /// (NULL) reads as 0.
    static let purchaseJSON =
        "(to_jsonb(p) || jsonb_build_object('sale', p.sale::text, 'sequence', coalesce(p.sequence, 0)))::text"

    /// Purchases (alias `p`) matching `condition`, which may end in ORDER BY or FOR UPDATE.
    func purchases(_ c: PostgresConnection, where condition: PostgresQuery) async throws -> [Purchase] {
        var query = condition
        query.sql = "SELECT \(Self.purchaseJSON) FROM purchase p WHERE " + condition.sql
        return try await self.records(c, query, as: Purchase.self)
    }

    func purchase(_ c: PostgresConnection, id: Int64) async throws -> Purchase {
        guard let p = try await self.purchases(c, where: "p.id = \(id)").first else {
            throw StoreError.purchaseNotFound(String(id))
        }
        return p
    }

    /// Consumption known in the period (`SaleRules.unitsIntoPeriod`) from the meter's readings, as on SQLite.
    func unitsIntoPeriod(_ c: PostgresConnection, meterID: Int64, periodStart: Int64, now: Int64) async throws
        -> UInt64
    {
        var latest: (time: Int64, register: Int64)?
        for try await (time, register) in try await c.query("""
            SELECT time, register FROM reading WHERE meter_id = \(meterID) AND time <= \(now)
            ORDER BY time DESC LIMIT 1
            """, logger: self.logger).decode((Int64, Int64).self) {
            latest = (time, register)
        }
        guard let latest, latest.time >= periodStart else { return 0 }
        let before = try await self.optional(c, """
            SELECT register FROM reading WHERE meter_id = \(meterID) AND time <= \(periodStart)
            ORDER BY time DESC LIMIT 1
            """, as: Int64.self)
        let base: Int64?
        if let before {
            base = before
        } else {
            base = try await self.optional(c, """
                SELECT register FROM reading WHERE meter_id = \(meterID) AND time >= \(periodStart)
                ORDER BY time LIMIT 1
                """, as: Int64.self)
        }
        return SaleRules.unitsIntoPeriod(latest: latest, periodStart: periodStart, base: base)
    }

    /// Inserts a purchase that `SaleRules` decided; returns its id. A remote sale delivered through `order` has no
    /// sequence yet (its gateway gives it).
    func insert(_ c: PostgresConnection, _ p: Purchase, order: Int64? = nil) async throws -> Int64 {
        try await self.id(c, """
            INSERT INTO purchase (request_id, account_id, meter_id, sequence, mode, state, currency, paid_minor,
                                  balance_used_minor, fixed_charges_minor, value_minor, remainder_minor, units,
                                  unit_kind, tier_position, unpaid_fixed_charges, fixed_paid_through,
                                  tariff_version_id, sale, card_id, payment_id, created_at, operator,
                                  remote_order_id)
            VALUES (\(p.requestId), \(p.accountId), \(p.meterId), \(order == nil ? p.sequence : nil),
                    \(p.mode.rawValue), \(p.state.rawValue), \(p.currency), \(p.paidMinor), \(p.balanceUsedMinor),
                    \(p.fixedChargesMinor), \(p.valueMinor), \(p.remainderMinor), \(p.units), \(Int16(p.unitKind)),
                    \(p.tierPosition), \(Int32(clamping: p.unpaidFixedCharges)), \(p.fixedPaidThrough),
                    \(p.tariffVersionId), \(p.sale)::jsonb, \(p.cardId), \(p.paymentId), \(p.createdAt), \(p.operator),
                    \(order))
            RETURNING id
            """)
    }
}
