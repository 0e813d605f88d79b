import GRDB
import Prepaid

/// Why a store operation was refused or failed (docs/STORE.md "Errors"). The store is left as it was: every
/// operation is one transaction, rolled back on any of these.
public enum StoreError: Error, Hashable, Sendable {
    // MARK: Input
    /// An amount with more decimals than the currency has, or not a number.
    case invalidAmount(String, reason: String)
    /// A sale or payment of zero or less.
    case amountNotPositive
    case currencyMismatch(expected: String, got: String)
    /// The money (with the balance) buys no whole unit at the tariff.
    case buysNoUnits
    case sale(SaleError)
    case invalidTariff(String)
    case invalidArgument(String)

    // MARK: Things that do not exist or are in the wrong state
    case accountNotFound(String)
    case accountClosed(Int64)
    case accountHasBalance(Int64, balanceMinor: Int64)
    case accountHasPendingPurchases(Int64, count: Int)
    case accountHasNoMeter(Int64)
    case meterNotFound(String)
    case meterExists(serial: Int64)
    case meterAssigned(serial: Int64, accountID: Int64)
    case meterHasPendingPurchases(serial: Int64, count: Int)
    case tariffNotFound(String)
    case noTariffInForce(tariff: String, time: Int64)
    case unitKindMismatch(meter: String, tariff: String)
    /// A card sale at the centre for a meter whose gateway numbers its purchases (docs/CENTRAL.md).
    case meterServedByGateway(serial: Int64, gateway: String)
    /// `topup --remote` at the centre for a meter whose gateway delivers its credit (docs/CENTRAL.md).
    case deliveredByGateway(serial: Int64, gateway: String)
    case purchaseNotFound(String)
    case cardNotFound(serial: Int64)
    /// A card bound to another meter (or account) than the purchase's.
    case cardForAnotherMeter(cardSerial: Int64, meterSerial: Int64)
    /// A purchase cannot move from its state to the one asked for (docs/STORE.md "Purchase states").
    case invalidTransition(purchase: Int64, from: String, to: String)
    /// The request id was used before for a different sale: the first purchase stands, this one is refused.
    case requestConflict(requestID: String, purchaseID: Int64)
    /// The request id was used by a remote order sold at the centre (`central sell`): one space for both.
    case requestUsedByOrder(requestID: String, orderID: Int64)
    /// A bank reference imported before.
    case duplicatePayment(reference: String)
    /// A card image whose MACs do not verify, or that is not a written-back user card.
    case forgedWriteBack(String)
    case notACardImage(String)

    // MARK: The database
    case databaseLocked(String)
    case diskFull(String)
    case readOnly(String)
    case cannotOpen(String)
    case corrupt(String)
    /// A constraint refused a row: the operation broke an invariant the schema guards.
    case constraint(String)
    case database(String)
    case io(String)

    // MARK: The central store (`--url`)
    /// No server answered, or the connection broke: the message names the URL (without its password).
    case unreachable(String)
    /// The login may not do this (a gateway's login at the desk), or the server refused the login.
    case permissionDenied(String)
    /// The central store's schema is not this build's: the message says to migrate or to upgrade.
    case schema(String)

    /// Maps any error from GRDB or SQLite to a store error by its result code.
    public init(_ error: any Error) {
        if let error = error as? StoreError {
            self = error
            return
        }
        guard let db = error as? DatabaseError else {
            self = .io(String(describing: error))
            return
        }
        let message = db.message ?? "\(db.resultCode)"
        switch db.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED: self = .databaseLocked(message)
        case .SQLITE_FULL: self = .diskFull(message)
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH: self = .readOnly(message)
        case .SQLITE_CANTOPEN: self = .cannotOpen(message)
        case .SQLITE_CORRUPT, .SQLITE_NOTADB: self = .corrupt(message)
        case .SQLITE_CONSTRAINT: self = .constraint(message)
        case .SQLITE_IOERR: self = .io(message)
        default: self = .database(message)
        }
    }

    /// Words for a person: what is wrong and, where it helps, what to do.
    public var explanation: String {
        switch self {
        case .invalidAmount(let text, let reason): "invalid amount \"\(text)\": \(reason)"
        case .amountNotPositive: "the amount must be more than zero"
        case .currencyMismatch(let expected, let got): "the account is in \(expected), not \(got)"
        case .buysNoUnits: "the amount (with the account's balance) does not buy one whole unit at the tariff"
        case .sale(let error): "the sale is not possible: \(error)"
        case .invalidTariff(let why): "invalid tariff: \(why)"
        case .invalidArgument(let why): why
        case .accountNotFound(let id): "no account \(id)"
        case .accountClosed(let id): "account \(id) is closed"
        case .accountHasBalance(let id, let balance):
            "account \(id) still has a balance of \(balance) minor units: pay it out first (close --payout)"
        case .accountHasPendingPurchases(let id, let count):
            "account \(id) has \(count) purchase(s) not yet applied by the meter: wait for them or cancel them"
        case .accountHasNoMeter(let id): "account \(id) has no meter: assign one with `metergw meter assign`"
        case .meterNotFound(let id): "no meter \(id)"
        case .meterExists(let serial): "meter \(serial) is already registered"
        case .meterAssigned(let serial, let account): "meter \(serial) is assigned to account \(account)"
        case .meterHasPendingPurchases(let serial, let count):
            "meter \(serial) has \(count) purchase(s) not yet applied: they must reach the meter first"
        case .tariffNotFound(let name): "no tariff \(name)"
        case .noTariffInForce(let name, let time): "tariff \(name) has no version valid at \(time)"
        case .unitKindMismatch(let meter, let tariff): "the meter counts \(meter) but the tariff sells \(tariff)"
        case .meterServedByGateway(let serial, let gateway):
            "meter \(serial) is served by gateway \(gateway), which numbers its purchases and keeps its cards: sell "
                + "its credit here with --remote (the gateway delivers it), or sell, upload or replace its card at "
                + "that gateway's desk"
        case .deliveredByGateway(let serial, let gateway):
            "meter \(serial) is served by gateway \(gateway), which delivers its remote credit (and numbers its "
                + "purchases): nothing was sold or sent; see where its credit stands with `metergw sync status --url` "
                + "and `metergw purchase list --account A --url`"
        case .purchaseNotFound(let id): "no purchase \(id)"
        case .cardNotFound(let serial): "no card \(serial)"
        case .cardForAnotherMeter(let card, let meter): "card \(card) belongs to another meter than \(meter)"
        case .invalidTransition(let id, let from, let to): "purchase \(id) is \(from): it cannot become \(to)"
        case .requestConflict(let request, let purchase):
            "request id \(request) was already used for purchase \(purchase) with other parameters"
        case .requestUsedByOrder(let request, let order):
            "request id \(request) was already used for the central store's remote order \(order) (central sell): "
                + "use a new request id for a new sale"
        case .duplicatePayment(let reference): "bank reference \(reference) was imported before"
        case .forgedWriteBack(let why): "card write-back refused: \(why)"
        case .notACardImage(let why): "not a card image: \(why)"
        case .databaseLocked(let m): "the database is locked by another process (\(m)): retry in a moment"
        case .diskFull(let m): "the disk is full (\(m)): free space and retry; nothing was changed"
        case .readOnly(let m): "the database is read-only (\(m)): check the file's mode and owner"
        case .cannotOpen(let m): "cannot open the database (\(m)): check the path (--db or METERGW_DB)"
        case .corrupt(let m): "the database file is damaged or not a database (\(m)): restore a backup"
        case .constraint(let m): "refused by a store constraint: \(m)"
        case .database(let m): "database error: \(m)"
        case .io(let m): "I/O error: \(m)"
        case .unreachable(let m), .permissionDenied(let m), .schema(let m): m
        }
    }
}
