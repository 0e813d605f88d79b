import GRDB
import MeterProtocol
import Prepaid

/// One row of a bank's debit or transfer file (docs/STORE.md "Bank payments"):
/// `date,reference,account,amount,currency,purpose`.
public struct BankPaymentRow: Hashable, Sendable {
    public var line: Int
    public var date: String
    public var reference: String
    public var account: String
    public var amount: String
    public var currency: String
    public var purpose: String

    /// Parses the file: a header line naming the columns, then one payment a line. Fields are plain (no quotes or
    /// commas inside); blank lines are skipped.
    public static func parse(csv text: String) throws(StoreError) -> [BankPaymentRow] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        guard let header = lines.first?.split(separator: ",").map({ String($0).trimmedBlanks }),
              header == ["date", "reference", "account", "amount", "currency", "purpose"]
        else {
            throw .invalidArgument("the first line must be the header date,reference,account,amount,currency,purpose")
        }
        var rows: [BankPaymentRow] = []
        for (i, line) in lines.enumerated().dropFirst() where !line.trimmedBlanks.isEmpty {
            let f = line.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmedBlanks }
            guard f.count == 6 else { throw .invalidArgument("line \(i + 1): expected 6 fields, found \(f.count)") }
            guard LocalTime.parseDate(f[0]) != nil else { throw .invalidArgument("line \(i + 1): date is YYYY-MM-DD") }
            guard !f[1].isEmpty else { throw .invalidArgument("line \(i + 1): the bank reference is empty") }
            rows.append(BankPaymentRow(line: i + 1, date: f[0], reference: f[1], account: f[2], amount: f[3],
                                       currency: f[4], purpose: f[5]))
        }
        return rows
    }
}

extension BillingDatabase {
    /// What importing one payment did.
    public enum PaymentResult: Hashable, Sendable {
        /// Became a queued (remote) purchase for the account's meter.
        case purchase(line: Int, reference: String, purchaseID: Int64)
        /// Credited to the account's balance.
        case credit(line: Int, reference: String, amountMinor: Int64)
        /// Refused (duplicate reference, unknown or closed account, bad amount); nothing stored for it.
        case refused(line: Int, reference: String, StoreError)
    }

    /// Imports bank payments, each in its own transaction so one bad row does not block the others. A payment
    /// becomes a queued purchase when its purpose is `topup` (or empty) and the account has a meter; otherwise a
    /// credit on the account's balance (used by its next sale). A reference imported before is refused.
    public func importPayments(_ rows: [BankPaymentRow], by actor: Actor) -> [PaymentResult] {
        rows.map { row in
            do throws(StoreError) {
                return try self.write { db in try self.importPayment(db, row, by: actor) }
            } catch {
                return .refused(line: row.line, reference: row.reference, error)
            }
        }
    }

    func importPayment(_ db: Database, _ row: BankPaymentRow, by actor: Actor) throws -> PaymentResult {
        if try BankPayment.filter(Column("reference") == row.reference).fetchCount(db) > 0 {
            throw StoreError.duplicatePayment(reference: row.reference)
        }
        var account = try Self.findAccount(db, row.account)
        let money = try DeskRules.checkPayment(row, account: account)
        var payment = BankPayment(id: nil, reference: row.reference, date: row.date, accountId: account.id!,
                                  amountMinor: money.amountMinor, currency: row.currency, purpose: row.purpose,
                                  importedAt: actor.now, operator: actor.name)
        try payment.insert(db)
        try AuditLog.append(db, operator: actor.name, action: "payment.import", entity: "bankPayment", id: payment.id,
                            now: actor.now, [("reference", .string(row.reference)), ("amountMinor", .int(money.amountMinor))])
        if DeskRules.paymentBuysCredit(row, accountHasMeter: try Meter.filter(Column("accountId") == account.id)
            .fetchCount(db) > 0) {
            let outcome = try self.sell(db, account: String(account.id!), amount: money,
                                        requestID: "bank:" + row.reference, mode: .remote, paymentID: payment.id,
                                        by: actor)
            return .purchase(line: row.line, reference: row.reference, purchaseID: outcome.purchase.id!)
        }
        try Self.move(db, &account, .deposit, money.amountMinor, now: actor.now, paymentID: payment.id)
        return .credit(line: row.line, reference: row.reference, amountMinor: money.amountMinor)
    }
}
