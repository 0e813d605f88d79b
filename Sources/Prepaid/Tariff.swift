/// How money becomes units (docs/CARD.md §2): flat, or tiered by consumption within a billing period, with an
/// optional fixed charge per period. Integer arithmetic only; see `sell(_:at:)` for the rounding rule.
public struct Tariff: Hashable, Sendable, Codable {
    public let name: String
    public let currency: Currency
    public let unitKind: UnitKind
    /// The period tier positions and fixed charges count in.
    public let period: BillingPeriod
    /// In ascending order of `upTo`; the last tier has no upper bound. A flat tariff has one tier.
    public let tiers: [Tier]
    /// Charged once per period, before any units are sold in it (0: none).
    public let fixedChargePerPeriodMinor: Int64

    /// One step of a tiered tariff: the price of every unit up to `upToUnits` consumed in the period.
    public struct Tier: Hashable, Sendable, Codable {
        /// Cumulative units in the period where this tier ends (exclusive of later tiers); nil for the last tier.
        public var upToUnits: UInt64?
        public var price: Price

        public init(upToUnits: UInt64?, price: Price) {
            self.upToUnits = upToUnits
            self.price = price
        }
    }

    public init(
        name: String, currency: Currency, unitKind: UnitKind, period: BillingPeriod, tiers: [Tier],
        fixedChargePerPeriodMinor: Int64 = 0
    ) throws(TariffError) {
        try Self.validate(tiers: tiers, fixedChargePerPeriodMinor: fixedChargePerPeriodMinor)
        self.name = name
        self.currency = currency
        self.unitKind = unitKind
        self.period = period
        self.tiers = tiers
        self.fixedChargePerPeriodMinor = fixedChargePerPeriodMinor
    }

    enum CodingKeys: String, CodingKey {
        case name, currency, unitKind, period, tiers, fixedChargePerPeriodMinor
    }

    /// Decodes and validates: a tariff from a file obeys the same rules as one built in code.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(
            name: c.decode(String.self, forKey: .name), currency: c.decode(Currency.self, forKey: .currency),
            unitKind: c.decode(UnitKind.self, forKey: .unitKind), period: c.decode(BillingPeriod.self, forKey: .period),
            tiers: c.decode([Tier].self, forKey: .tiers),
            fixedChargePerPeriodMinor: c.decode(Int64.self, forKey: .fixedChargePerPeriodMinor))
    }

    static func validate(tiers: [Tier], fixedChargePerPeriodMinor: Int64) throws(TariffError) {
        guard let last = tiers.last else { throw .noTiers }
        guard last.upToUnits == nil else { throw .lastTierBounded }
        var previous: UInt64 = 0
        for (i, tier) in tiers.enumerated() {
            guard tier.price.microMinorPerUnit > 0 else { throw .zeroPrice(tier: i) }
            if let bound = tier.upToUnits {
                guard bound > previous else { throw .boundsNotIncreasing(tier: i) }
                previous = bound
            } else if i != tiers.count - 1 {
                throw .boundsNotIncreasing(tier: i)
            }
        }
        guard fixedChargePerPeriodMinor >= 0 else { throw .negativeFixedCharge }
    }

    /// A single price for every unit.
    public static func flat(
        name: String, currency: Currency, unitKind: UnitKind, price: Price, period: BillingPeriod = .monthly,
        fixedChargePerPeriodMinor: Int64 = 0
    ) throws(TariffError) -> Tariff {
        try Tariff(name: name, currency: currency, unitKind: unitKind, period: period,
                   tiers: [Tier(upToUnits: nil, price: price)], fixedChargePerPeriodMinor: fixedChargePerPeriodMinor)
    }

    /// The tier that unit number `position + 1` of the period falls in.
    public func tierIndex(at position: UInt64) -> Int {
        self.tiers.firstIndex { tier in tier.upToUnits.map { position < $0 } ?? true } ?? self.tiers.count - 1
    }

    // MARK: Selling

    /// Converts `money` into whole units at this tariff, starting at `position` in the period (docs/CARD.md §2.2).
    ///
    /// Unpaid fixed charges are taken first. Units are then bought one tier after another at each tier's price,
    /// as many as the rest pays for in full (rounded down). The value of those units is their exact price, in µminor,
    /// rounded **up** to a whole minor unit; what is left is the remainder, which stays on the account. So
    /// `money == fixedCharges + value + remainder` exactly, `remainder >= 0`, and one more unit would cost more than
    /// `value + remainder`.
    public func sell(_ money: Money, at position: TierPosition) throws(SaleError) -> Sale {
        guard money.currency == self.currency else { throw .currencyMismatch }
        guard money.amountMinor >= 0 else { throw .negativeAmount }
        let fixed = self.fixedChargePerPeriodMinor.multipliedReportingOverflow(by: Int64(position.unpaidFixedCharges))
        guard !fixed.overflow else { throw .overflow }
        guard money.amountMinor >= fixed.partialValue else {
            throw .insufficientForFixedCharges(neededMinor: fixed.partialValue)
        }
        let budgetMinor = UInt64(money.amountMinor - fixed.partialValue)
        let budget = budgetMinor.multipliedReportingOverflow(by: Price.microPerMinor)
        guard !budget.overflow else { throw .overflow }

        var left = budget.partialValue
        var at = position.unitsIntoPeriod
        var segments: [Sale.Segment] = []
        var total: UInt64 = 0
        var index = self.tierIndex(at: at)
        while index < self.tiers.count {
            let tier = self.tiers[index]
            let price = tier.price.microMinorPerUnit
            let affordable = left / price
            let room = tier.upToUnits.map { $0 - at } ?? UInt64.max
            let units = min(affordable, room)
            if units > 0 {
                let cost = units * price  // <= left: cannot overflow
                let newAt = at.addingReportingOverflow(units)
                let newTotal = total.addingReportingOverflow(units)
                guard !newAt.overflow, !newTotal.overflow else { throw .overflow }
                left -= cost
                at = newAt.partialValue
                total = newTotal.partialValue
                segments.append(Sale.Segment(tier: index, units: units, price: tier.price, valueMicroMinor: cost))
            }
            if units < room { break }  // the next unit of this tier is not paid for in full
            index += 1
        }
        let exact = budget.partialValue - left
        let value = Int64((exact + Price.microPerMinor - 1) / Price.microPerMinor)
        return Sale(
            paid: money, fixedChargesMinor: fixed.partialValue, units: Units(total, self.unitKind),
            valueMinor: value, remainderMinor: Int64(budgetMinor) - value, valueMicroMinor: exact,
            segments: segments, endPosition: at)
    }

    /// The value of `units` bought from `position`: their exact price in µminor, and that rounded up to whole minor
    /// units (the amount `sell` charges for them). Nil if it does not fit in 64 bits.
    public func value(of units: UInt64, at position: UInt64) -> (microMinor: UInt64, minor: Int64)? {
        var left = units
        var at = position
        var total: UInt64 = 0
        var index = self.tierIndex(at: at)
        while left > 0 && index < self.tiers.count {
            let tier = self.tiers[index]
            let room = tier.upToUnits.map { $0 - at } ?? UInt64.max
            let n = min(left, room)
            let cost = n.multipliedReportingOverflow(by: tier.price.microMinorPerUnit)
            guard !cost.overflow else { return nil }
            let sum = total.addingReportingOverflow(cost.partialValue)
            guard !sum.overflow else { return nil }
            total = sum.partialValue
            left -= n
            let newAt = at.addingReportingOverflow(n)
            guard !newAt.overflow else { return nil }
            at = newAt.partialValue
            index += 1
        }
        let minor = (total / Price.microPerMinor) + (total % Price.microPerMinor == 0 ? 0 : 1)
        guard minor <= UInt64(Int64.max) else { return nil }
        return (total, Int64(minor))
    }
}

/// Where a sale starts in the tariff: units already counted in the current period, and fixed charges still owed.
public struct TierPosition: Hashable, Sendable, Codable {
    /// Consumption in the current billing period known for the meter (from its latest reading).
    public var unitsIntoPeriod: UInt64
    /// Periods whose fixed charge has not been paid yet (usually 0, or 1 for the first sale of a period).
    public var unpaidFixedCharges: UInt32

    public init(unitsIntoPeriod: UInt64 = 0, unpaidFixedCharges: UInt32 = 0) {
        self.unitsIntoPeriod = unitsIntoPeriod
        self.unpaidFixedCharges = unpaidFixedCharges
    }
}

/// The result of selling money at a tariff. `paid == fixedCharges + value + remainder`, exactly.
public struct Sale: Hashable, Sendable, Codable {
    public var paid: Money
    public var fixedChargesMinor: Int64
    /// Whole units bought.
    public var units: Units
    /// What the units cost, in whole minor units (their exact value rounded up).
    public var valueMinor: Int64
    /// Money that did not buy a whole unit: stays on the account as balance.
    public var remainderMinor: Int64
    /// The exact value of the units in millionths of a minor unit (`valueMinor` is this rounded up).
    public var valueMicroMinor: UInt64
    /// The units bought in each tier, in order.
    public var segments: [Segment]
    /// The tier position after this sale's units.
    public var endPosition: UInt64

    public struct Segment: Hashable, Sendable, Codable {
        public var tier: Int
        public var units: UInt64
        public var price: Price
        public var valueMicroMinor: UInt64
    }

    public var fixedCharges: Money { Money(minor: self.fixedChargesMinor, self.paid.currency) }
    public var value: Money { Money(minor: self.valueMinor, self.paid.currency) }
    public var remainder: Money { Money(minor: self.remainderMinor, self.paid.currency) }
}

public enum TariffError: Error, Hashable, Sendable {
    case noTiers
    case lastTierBounded
    case boundsNotIncreasing(tier: Int)
    case zeroPrice(tier: Int)
    case negativeFixedCharge
}

public enum SaleError: Error, Hashable, Sendable {
    case currencyMismatch
    case negativeAmount
    /// The payment does not cover the fixed charges owed; nothing was sold.
    case insufficientForFixedCharges(neededMinor: Int64)
    case overflow
}
