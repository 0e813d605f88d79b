import Foundation
import MeterProtocol
import Prepaid

/// The rules of a sale at the desk (docs/STORE.md "Selling"), written once for both stores: each store fetches
/// the rows these functions name and writes the purchase they return, so SQLite and PostgreSQL cannot disagree on
/// a price, a tier position, a fixed charge or a sequence. Pure: no I/O, no clock (`Actor.now` is given).
public enum SaleRules {
    /// A request id is 1 to 200 characters (the schemas' CHECK says the same).
    public static func checkRequestID(_ requestID: String) throws(StoreError) {
        guard !requestID.isEmpty, requestID.count <= 200 else {
            throw .invalidArgument("a request id is 1 to 200 characters")
        }
    }

    /// A request id seen before: the first purchase stands when the terms are the same; other terms are refused.
    public static func checkRepeat(
        _ first: Purchase, requestID: String, accountID: Int64, amount: Money, mode: Purchase.Mode
    ) throws(StoreError) {
        guard first.accountId == accountID, first.paidMinor == amount.amountMinor,
              first.currency == amount.currency.code, first.mode == mode
        else { throw .requestConflict(requestID: requestID, purchaseID: first.id ?? 0) }
    }

    /// The buyer may buy: a positive amount in the account's currency, an open account, a meter.
    public static func checkBuyer(account: Account, amount: Money, meter: Meter?) throws(StoreError) -> Meter {
        guard amount.amountMinor > 0 else { throw .amountNotPositive }
        guard amount.currency.code == account.currency else {
            throw .currencyMismatch(expected: account.currency, got: amount.currency.code)
        }
        guard account.state == .open else { throw .accountClosed(account.id ?? 0) }
        guard let meter else { throw .accountHasNoMeter(account.id ?? 0) }
        return meter
    }

    /// The tariff in force for a sale and the billing period it falls in.
    public struct Terms: Sendable, Hashable {
        public var tariff: Tariff
        public var version: TariffVersion
        /// The billing period containing the sale (an index, `BillingPeriod.index`).
        public var period: Int64
        /// Its start, Unix seconds: the store reads the meter's consumption since then.
        public var periodStart: Int64
    }

    /// The terms of a sale at `now`: `version` is the meter's tariff version in force then (the latest whose
    /// `validFrom` is not after `now`), nil when there is none.
    public static func terms(
        meter: Meter, account: Account, version: TariffVersion?, tariffName: String, now: Int64
    ) throws(StoreError) -> Terms {
        guard let version else { throw .noTariffInForce(tariff: tariffName, time: now) }
        let tariff = try version.tariff()
        guard Int64(tariff.unitKind.rawValue) == meter.unitKind else {
            throw .unitKindMismatch(meter: Self.symbol(meter.unitKind), tariff: tariff.unitKind.symbol)
        }
        guard tariff.currency.code == account.currency else {
            throw .currencyMismatch(expected: account.currency, got: tariff.currency.code)
        }
        let offset = Int32(version.utcOffsetSeconds)
        let period = tariff.period.index(containing: UInt32(clamping: now), utcOffsetSeconds: offset)
        return Terms(tariff: tariff, version: version, period: period,
                     periodStart: tariff.period.start(ofPeriod: period, utcOffsetSeconds: offset))
    }

    /// Consumption known in the period: the latest reading's register (at or before now) minus the register at the
    /// period's start (`base`: the latest reading at or before it, else the period's first reading). 0 when the
    /// latest reading is older than the period.
    public static func unitsIntoPeriod(latest: (time: Int64, register: Int64)?, periodStart: Int64, base: Int64?)
        -> UInt64
    {
        guard let latest, latest.time >= periodStart else { return 0 }
        return UInt64(max(0, latest.register - (base ?? 0)))
    }

    /// The purchase a sale creates (without its id): the money with the account's balance, priced by
    /// `Prepaid.Tariff.sell` from the tier position with the fixed charges owed, numbered with the meter's next
    /// sequence. `paidThrough` is the latest `fixedPaidThrough` of the meter's purchases that stand (nil: none);
    /// `lastSequence` the highest sequence the store gave the meter (nil: none).
    public static func purchase(
        terms: Terms, account: Account, meter: Meter, amount: Money, unitsIntoPeriod position: UInt64,
        paidThrough: Int64?, lastSequence: Int64?, requestID: String, mode: Purchase.Mode, paymentID: Int64?,
        by actor: Actor
    ) throws(StoreError) -> Purchase {
        let tariff = terms.tariff
        let paidUpTo = paidThrough ?? (meter.fixedChargesFrom - 1)
        let unpaid = tariff.fixedChargePerPeriodMinor > 0 ? max(0, terms.period - paidUpTo) : 0
        let (money, overflow) = amount.amountMinor.addingReportingOverflow(account.balanceMinor)
        guard !overflow else { throw .sale(.overflow) }
        let sale: Sale
        do {
            sale = try tariff.sell(
                Money(minor: money, tariff.currency),
                at: TierPosition(unitsIntoPeriod: position, unpaidFixedCharges: UInt32(clamping: unpaid)))
        } catch {
            throw .sale(error)
        }
        guard sale.units.count > 0 else { throw .buysNoUnits }
        guard sale.units.count <= UInt64(UInt32.max) else {
            throw .invalidArgument("one purchase carries at most 4294967295 units (a card's credit block)")
        }
        let sequence = try Self.nextSequence(meter: meter, lastSequence: lastSequence)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let saleJSON: String
        do {
            saleJSON = String(decoding: try encoder.encode(sale), as: UTF8.self)
        } catch {
            throw .invalidArgument("the sale cannot be recorded: \(error)")
        }
        return Purchase(
            id: nil, requestId: requestID, accountId: account.id!, meterId: meter.id!, sequence: sequence, mode: mode,
            state: mode == .card ? .created : .queued, currency: account.currency, paidMinor: amount.amountMinor,
            balanceUsedMinor: account.balanceMinor, fixedChargesMinor: sale.fixedChargesMinor,
            valueMinor: sale.valueMinor, remainderMinor: sale.remainderMinor, units: Int64(sale.units.count),
            unitKind: meter.unitKind, tierPosition: Int64(position), unpaidFixedCharges: unpaid,
            fixedPaidThrough: max(terms.period, paidUpTo), tariffVersionId: terms.version.id!, sale: saleJSON,
            cardId: nil, paymentId: paymentID, createdAt: actor.now, writtenAt: nil, appliedAt: nil,
            appliedSource: nil, cancelledAt: nil, operator: actor.name)
    }

    /// The meter's next purchase sequence: above every sequence given and above its base (its last applied
    /// sequence when it was registered). Sequences are u32 on the meter.
    public static func nextSequence(meter: Meter, lastSequence: Int64?) throws(StoreError) -> Int64 {
        let sequence = max(lastSequence ?? meter.sequenceBase, meter.sequenceBase) + 1
        guard sequence <= Int64(UInt32.max) else {
            throw .invalidArgument("meter \(meter.serial) has used every purchase sequence")
        }
        return sequence
    }

    /// The balance after a sale: the money brought in (deposit) less what it charged (purchase).
    public static func movements(_ purchase: Purchase) -> [(Movement.Kind, Int64)] {
        [(.deposit, purchase.paidMinor), (.purchase, -purchase.chargedMinor)]
    }

    /// The audit log's detail of a new purchase.
    public static func auditDetail(_ p: Purchase, meterSerial: Int64) -> [(String, JSONValue)] {
        [("requestId", .string(p.requestId)), ("account", .int(p.accountId)), ("meter", .int(meterSerial)),
         ("sequence", .int(p.sequence)), ("mode", .string(p.mode.rawValue)), ("paidMinor", .int(p.paidMinor)),
         ("balanceUsedMinor", .int(p.balanceUsedMinor)), ("units", .int(p.units)),
         ("remainderMinor", .int(p.remainderMinor))]
    }

    /// A purchase may be cancelled while its credit has not left the desk (`created` or `queued`); cancelling a
    /// cancelled one changes nothing (returns false).
    public static func checkCancel(_ p: Purchase) throws(StoreError) -> Bool {
        if p.state == .cancelled { return false }
        guard p.state == .created || p.state == .queued else {
            throw .invalidTransition(purchase: p.id ?? 0, from: p.state.rawValue, to: "cancelled")
        }
        return true
    }

    static func symbol(_ unitKind: Int64) -> String { (UnitKind(rawValue: UInt8(unitKind)) ?? .wattHours).symbol }
}
