import MeterProtocol
import Prepaid

/// The desk's rules for accounts, meters and tariffs (docs/STORE.md), written once for both stores: each store
/// fetches what these functions take and writes what they decide. Pure: no I/O, no clock. Sales: `SaleRules`.
public enum DeskRules {
    // MARK: Accounts

    /// The customer's name as stored (blanks trimmed); refuses an empty name and a number that is not positive.
    public static func checkNewAccount(name: String, number: Int64?) throws(StoreError) -> String {
        let trimmed = name.trimmedBlanks
        guard !trimmed.isEmpty else { throw .invalidArgument("the customer's name must not be empty") }
        if let number, number <= 0 { throw .invalidArgument("the account number must be positive") }
        return trimmed
    }

    /// The new account's number: the one given, else the next after the highest (from 10000001).
    public static func accountNumber(given: Int64?, highest: Int64?) -> Int64 {
        given ?? (highest ?? 10_000_000) + 1
    }

    /// Closing is refused while the account is closed, has credit on its way to the meter, or has a balance
    /// without `payout`. Returns what is paid out (0: nothing).
    public static func checkClose(_ account: Account, pending: Int, payout: Bool) throws(StoreError) -> Int64 {
        guard account.state == .open else { throw .accountClosed(account.id!) }
        guard pending == 0 else { throw .accountHasPendingPurchases(account.id!, count: pending) }
        guard account.balanceMinor > 0 else { return 0 }
        guard payout else { throw .accountHasBalance(account.id!, balanceMinor: account.balanceMinor) }
        return account.balanceMinor
    }

    // MARK: Bank payments

    /// What a bank payment brings: refused for a closed account, another currency, an amount that is not exact or
    /// not positive.
    public static func checkPayment(_ row: BankPaymentRow, account: Account) throws(StoreError) -> Money {
        guard account.state == .open else { throw .accountClosed(account.id!) }
        guard row.currency == account.currency else {
            throw .currencyMismatch(expected: account.currency, got: row.currency)
        }
        let money = try Amount.parse(row.amount, currency: StoreCurrency.named(row.currency))
        guard money.amountMinor > 0 else { throw .amountNotPositive }
        return money
    }

    /// A payment for `topup` (or with no purpose) to an account with a meter buys remote credit; any other is
    /// credited to the balance.
    public static func paymentBuysCredit(_ row: BankPaymentRow, accountHasMeter: Bool) -> Bool {
        let purpose = row.purpose.lowercased()
        return (purpose.isEmpty || purpose == "topup") && accountHasMeter
    }

    // MARK: Meters

    /// The unit a new meter counts; refuses card writers and serials outside 1...4294967294.
    public static func checkNewMeter(serial: UInt32, kind: DeviceKind) throws(StoreError) -> UnitKind {
        guard let unit = UnitKind(meterKind: kind) else { throw .invalidArgument("a card writer is not a meter") }
        guard serial >= 1, serial < CardImage.anyMeter else {
            throw .invalidArgument("a meter serial is 1...4294967294")
        }
        return unit
    }

    /// The tariff must sell what the meter counts.
    public static func checkTariff(_ tariff: TariffRecord, forMeterUnit unitKind: Int64) throws(StoreError) {
        guard tariff.unitKind == unitKind else {
            throw .unitKindMismatch(meter: SaleRules.symbol(unitKind), tariff: SaleRules.symbol(tariff.unitKind))
        }
    }

    /// Whether assigning `meter` to `account` changes anything (false: it is that account's already). Refused: a
    /// closed account, an account with another meter, a meter with credit not yet applied (it would follow the
    /// meter to the wrong customer).
    public static func checkAssign(meter: Meter, account: Account, accountsMeter: Meter?, pending: Int)
        throws(StoreError) -> Bool
    {
        guard account.state == .open else { throw .accountClosed(account.id!) }
        if meter.accountId == account.id { return false }
        if let other = accountsMeter { throw .meterAssigned(serial: other.serial, accountID: account.id!) }
        guard pending == 0 else { throw .meterHasPendingPurchases(serial: meter.serial, count: pending) }
        return true
    }

    /// Fixed charges are owed from the billing period of the assignment, by the tariff version in force then.
    public static func fixedChargesFrom(version: TariffVersion, now: Int64) throws(StoreError) -> Int64 {
        try version.tariff().period.index(containing: UInt32(clamping: now),
                                          utcOffsetSeconds: Int32(version.utcOffsetSeconds))
    }

    // MARK: Tariffs

    /// A new version of an existing tariff keeps its currency and unit and starts after its latest version.
    public static func checkNewVersion(_ tariff: Tariff, of existing: TariffRecord, validFrom: Int64,
                                       latestValidFrom: Int64?) throws(StoreError) {
        guard existing.currency == tariff.currency.code, existing.unitKind == Int64(tariff.unitKind.rawValue) else {
            throw .invalidTariff("tariff \(tariff.name) sells \(existing.currency) per "
                                 + "\(SaleRules.symbol(existing.unitKind)): a new version must too")
        }
        if let latest = latestValidFrom, validFrom <= latest {
            throw .invalidTariff("a new version must start after the latest one (\(latest))")
        }
    }
}
