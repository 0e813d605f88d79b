import GRDB
import MeterProtocol
import Prepaid

extension BillingDatabase {
    /// An account with its customer, as `account show` prints it.
    public struct AccountDetail: Hashable, Sendable {
        public var account: Account
        public var customer: Customer
        public var meter: Meter?
        public var pendingPurchases: Int

        public init(account: Account, customer: Customer, meter: Meter?, pendingPurchases: Int) {
            self.account = account
            self.customer = customer
            self.meter = meter
            self.pendingPurchases = pendingPurchases
        }
    }

    /// Opens an account for a new customer. `number` is the account number on cards; by default the next free one
    /// from 10000001.
    public func openAccount(
        name: String, address: String? = nil, phone: String? = nil, number: Int64? = nil,
        currency: Currency = .cny, by actor: Actor
    ) throws(StoreError) -> AccountDetail {
        let name = try DeskRules.checkNewAccount(name: name, number: number)
        return try self.write { db in
            var customer = Customer(id: nil, name: name, address: address, phone: phone, createdAt: actor.now)
            try customer.insert(db)
            let chosen = DeskRules.accountNumber(
                given: number, highest: try Int64.fetchOne(db, sql: "SELECT max(number) FROM account"))
            var account = Account(id: nil, customerId: customer.id!, number: chosen, currency: currency.code,
                                  balanceMinor: 0, state: .open, openedAt: actor.now, closedAt: nil)
            try account.insert(db)
            try AuditLog.append(db, operator: actor.name, action: "account.open", entity: "account", id: account.id,
                                now: actor.now, [("name", .string(customer.name)), ("number", .int(chosen)),
                                                 ("currency", .string(currency.code))])
            return AccountDetail(account: account, customer: customer, meter: nil, pendingPurchases: 0)
        }
    }

    /// Closes an account. Refused while it has a balance (unless `payout`, which records paying it back) or
    /// purchases that have not reached the meter; its meter is unassigned.
    public func closeAccount(_ reference: String, payout: Bool = false, by actor: Actor) throws(StoreError)
        -> AccountDetail
    {
        try self.write { db in
            var account = try Self.findAccount(db, reference)
            let paidOut = try DeskRules.checkClose(account, pending: try Self.pendingCount(db, accountID: account.id!),
                                                   payout: payout)
            if paidOut > 0 {
                try Self.move(db, &account, .payout, -paidOut, now: actor.now)
                try AuditLog.append(db, operator: actor.name, action: "account.payout", entity: "account",
                                    id: account.id, now: actor.now, [("amountMinor", .int(paidOut))])
            }
            try db.execute(sql: "UPDATE meter SET accountId = NULL WHERE accountId = ?", arguments: [account.id])
            account.state = .closed
            account.closedAt = actor.now
            try account.update(db)
            try AuditLog.append(db, operator: actor.name, action: "account.close", entity: "account", id: account.id,
                                now: actor.now)
            return try Self.detail(db, account)
        }
    }

    public func accounts() throws(StoreError) -> [AccountDetail] {
        try self.read { db in
            try Account.order(Column("id")).fetchAll(db).map { try Self.detail(db, $0) }
        }
    }

    /// An account by id or by account number.
    public func account(_ reference: String) throws(StoreError) -> AccountDetail {
        try self.read { db in try Self.detail(db, Self.findAccount(db, reference)) }
    }

    /// The account's movements, oldest first.
    public func movements(account reference: String) throws(StoreError) -> [Movement] {
        try self.read { db in
            let account = try Self.findAccount(db, reference)
            return try Movement.filter(Column("accountId") == account.id).order(Column("id")).fetchAll(db)
        }
    }

    // MARK: Helpers for operations

    static func detail(_ db: Database, _ account: Account) throws -> AccountDetail {
        let customer = try Customer.fetchOne(db, key: account.customerId)!
        let meter = try Meter.filter(Column("accountId") == account.id).fetchOne(db)
        return AccountDetail(account: account, customer: customer, meter: meter,
                             pendingPurchases: try Self.pendingCount(db, accountID: account.id!))
    }

    /// Finds an account by id ("12") or number ("#10000012" or a number that is no id).
    static func findAccount(_ db: Database, _ reference: String) throws -> Account {
        let text = reference.trimmedBlanks
        if text.hasPrefix("#"), let number = Int64(text.dropFirst()),
           let account = try Account.filter(Column("number") == number).fetchOne(db) {
            return account
        }
        if let id = Int64(text) {
            if let account = try Account.fetchOne(db, key: id) { return account }
            if let account = try Account.filter(Column("number") == id).fetchOne(db) { return account }
        }
        throw StoreError.accountNotFound(reference)
    }

    static func pendingCount(_ db: Database, accountID: Int64) throws -> Int {
        try Int.fetchOne(db, sql: """
            SELECT count(*) FROM purchase WHERE accountId = ? AND state IN ('created', 'written', 'queued')
            """, arguments: [accountID]) ?? 0
    }

    /// Adds a movement and moves the balance by the same amount: the only way balances change.
    static func move(
        _ db: Database, _ account: inout Account, _ kind: Movement.Kind, _ amount: Int64, now: Int64,
        purchaseID: Int64? = nil, paymentID: Int64? = nil
    ) throws {
        guard amount != 0 else { return }
        var movement = Movement(id: nil, accountId: account.id!, time: now, kind: kind, amountMinor: amount,
                                purchaseId: purchaseID, paymentId: paymentID)
        try movement.insert(db)
        let (sum, overflow) = account.balanceMinor.addingReportingOverflow(amount)
        guard !overflow else { throw StoreError.sale(.overflow) }
        account.balanceMinor = sum
        try db.execute(sql: "UPDATE account SET balanceMinor = ? WHERE id = ?", arguments: [sum, account.id])
    }
}
