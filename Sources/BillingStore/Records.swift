import Foundation
import GRDB
import Prepaid

// Codable records, one per table (docs/STORE.md "Tables"). Money is Int64 minor units with the currency's code;
// units are Int64 with their unit kind; times are Int64 Unix seconds (UTC).

/// A person or company that pays.
public struct Customer: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var name: String
    public var address: String?
    public var phone: String?
    public var createdAt: Int64

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// A prepaid account: its balance is the money not yet turned into units (sale remainders, credits).
public struct Account: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var customerId: Int64
    /// The account number printed on receipts and written on cards (u64 on the card, positive here).
    public var number: Int64
    public var currency: String
    public var balanceMinor: Int64
    public var state: State
    public var openedAt: Int64
    public var closedAt: Int64?

    public enum State: String, Codable, Hashable, Sendable { case open, closed }

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
    public var balance: Money { Money(minor: self.balanceMinor, StoreCurrency.named(self.currency)) }
}

/// One change of an account's balance. The balance is always the sum of its movements (`db check`).
public struct Movement: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var accountId: Int64
    public var time: Int64
    public var kind: Kind
    public var amountMinor: Int64
    public var purchaseId: Int64?
    public var paymentId: Int64?

    /// deposit (+, money brought in), purchase (−, what a sale charged), refund (+, a cancelled sale),
    /// payout (−, balance paid back on closing).
    public enum Kind: String, Codable, Hashable, Sendable { case deposit, purchase, refund, payout }

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// A tariff's name, currency and unit; its prices live in versions.
public struct TariffRecord: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "tariff"
    public var id: Int64?
    public var name: String
    public var currency: String
    public var unitKind: Int64
    public var createdAt: Int64

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// A tariff's prices from `validFrom` until the next version's `validFrom`. Immutable once stored.
public struct TariffVersion: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var tariffId: Int64
    public var version: Int64
    public var validFrom: Int64
    /// Local time for billing periods (28800 for China).
    public var utcOffsetSeconds: Int64
    /// `Prepaid.Tariff` as JSON: prices as integer µminor per unit, so exact.
    public var definition: String
    public var createdAt: Int64

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }

    public func tariff() throws(StoreError) -> Tariff { try TariffJSON.decode(self.definition) }
}

/// A meter on a bus, its tariff, key revision and the purchase sequences it is known to have applied.
public struct Meter: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var serial: Int64
    public var kind: String
    public var unitKind: Int64
    public var bus: String?
    public var address: Int64?
    public var tariffId: Int64
    public var keyRevision: Int64
    public var accountId: Int64?
    /// The meter's last applied sequence when it was registered: this store's sequences start above it.
    public var sequenceBase: Int64
    public var lastAppliedSequence: Int64
    /// The first billing period whose fixed charge the meter's account owes.
    public var fixedChargesFrom: Int64
    public var createdAt: Int64

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
    public var units: UnitKind { UnitKind(rawValue: UInt8(self.unitKind)) ?? .wattHours }
}

/// A user card issued for a meter and its account; a replacement has the next generation.
public struct Card: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var serial: Int64
    public var meterId: Int64
    public var accountId: Int64
    public var generation: Int64
    public var state: State
    public var issuedAt: Int64

    public enum State: String, Codable, Hashable, Sendable { case active, replaced }

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// A sale of units for one meter (docs/STORE.md "Purchase states").
public struct Purchase: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var requestId: String
    public var accountId: Int64
    public var meterId: Int64
    /// The meter's purchase sequence; 0 on the central store while the gateway that delivers a remote sale has
    /// not yet numbered it (docs/CENTRAL.md "Selling at the centre").
    public var sequence: Int64
    /// The sequence, nil while a central remote sale waits for its gateway to number it.
    public var numberedSequence: Int64? { self.sequence > 0 ? self.sequence : nil }
    public var mode: Mode
    public var state: State
    public var currency: String
    /// Money brought for this sale.
    public var paidMinor: Int64
    /// The account's balance added to it (earlier remainders and credits).
    public var balanceUsedMinor: Int64
    public var fixedChargesMinor: Int64
    public var valueMinor: Int64
    /// Left on the account: `paid + balanceUsed == fixedCharges + value + remainder`.
    public var remainderMinor: Int64
    public var units: Int64
    public var unitKind: Int64
    public var tierPosition: Int64
    public var unpaidFixedCharges: Int64
    /// The billing period through which fixed charges are paid once this sale stands.
    public var fixedPaidThrough: Int64
    public var tariffVersionId: Int64
    /// `Prepaid.Sale` as JSON (tiers, exact value in µminor).
    public var sale: String
    public var cardId: Int64?
    public var paymentId: Int64?
    public var createdAt: Int64
    public var writtenAt: Int64?
    public var appliedAt: Int64?
    public var appliedSource: String?
    public var cancelledAt: Int64?
    public var `operator`: String

    public enum Mode: String, Codable, Hashable, Sendable, CaseIterable { case card, remote }
    public enum State: String, Codable, Hashable, Sendable, CaseIterable {
        case created, written, queued, applied, cancelled
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }

    /// What the sale took from the account: fixed charges and the value of the units.
    public var chargedMinor: Int64 { self.fixedChargesMinor + self.valueMinor }
    public var money: Currency { StoreCurrency.named(self.currency) }
    public var unitSymbol: String { (UnitKind(rawValue: UInt8(self.unitKind)) ?? .wattHours).symbol }
    /// Credit that has not reached the meter yet (and may, so it must still be delivered or confirmed).
    public var isPending: Bool { [.created, .written, .queued].contains(self.state) }
}

/// A payment from a bank file, imported once (UNIQUE reference).
public struct BankPayment: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var reference: String
    public var date: String
    public var accountId: Int64
    public var amountMinor: Int64
    public var currency: String
    public var purpose: String
    public var importedAt: Int64
    public var `operator`: String

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// One line of the append-only audit log: who did what to which row, when.
public struct AuditEntry: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "auditLog"
    public var id: Int64?
    public var time: Int64
    public var `operator`: String
    public var action: String
    public var entity: String
    public var entityId: Int64?
    public var detail: String

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// A card brought back from a meter, as read (the whole image, MACs verified before it was stored).
public struct CardUpload: Codable, Hashable, Sendable, FetchableRecord, MutablePersistableRecord {
    public var id: Int64?
    public var image: Data
    public var cardSerial: Int64
    public var cardId: Int64?
    public var meterId: Int64
    public var outcome: Int64
    public var refusal: Int64
    public var refusalDetail: Int64
    public var lastAppliedSequence: Int64
    public var unitsApplied: Int64
    public var register: Int64
    public var credit: Int64
    public var meterTime: Int64
    public var alarms: Int64
    public var uploadedAt: Int64
    public var `operator`: String

    public mutating func didInsert(_ inserted: InsertionSuccess) { self.id = inserted.rowID }
}

/// Currencies by ISO code. CNY is the one the project sells in; other codes get two minor digits.
public enum StoreCurrency {
    public static func named(_ code: String) -> Currency {
        switch code {
        case "CNY": .cny
        default: Currency(code: code, minorUnitName: "minor", minorDigits: 2)
        }
    }
}
