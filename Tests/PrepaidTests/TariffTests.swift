import MetergwTestSupport
import Foundation
import Testing
@testable import Prepaid

/// The worked tariff examples of docs/CARD.md §2.4, as fixtures, and the conservation property.
@Suite struct TariffTests {
    static func price(_ yuanPerKWh: String) -> Price { Price(majorPerThousandUnits: yuanPerKWh, currency: .cny)! }

    static let flat = try! Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours, price: price("0.5283"))
    static let monthly = try! Tariff(
        name: "household-monthly", currency: .cny, unitKind: .wattHours, period: .monthly,
        tiers: [.init(upToUnits: 180_000, price: price("0.5283")), .init(upToUnits: 350_000, price: price("0.5783")),
                .init(upToUnits: nil, price: price("0.8283"))])
    static let monthlyWithFixed = try! Tariff(
        name: "household-monthly-fixed", currency: .cny, unitKind: .wattHours, period: .monthly,
        tiers: monthly.tiers, fixedChargePerPeriodMinor: 500)
    static let yearly = try! Tariff(
        name: "household-yearly", currency: .cny, unitKind: .wattHours, period: .yearly,
        tiers: [.init(upToUnits: 2_160_000, price: price("0.5283")),
                .init(upToUnits: 4_200_000, price: price("0.5783")), .init(upToUnits: nil, price: price("0.8283"))])
    static let water = try! Tariff(
        name: "water-yearly", currency: .cny, unitKind: .litres, period: .yearly,
        tiers: [.init(upToUnits: 180_000, price: price("5")), .init(upToUnits: 260_000, price: price("7")),
                .init(upToUnits: nil, price: price("9"))])

    struct Example: CustomTestStringConvertible, Sendable {
        var name: String
        var tariff: Tariff
        var position: UInt64
        var unpaidFixed: UInt32 = 0
        var paidFen: Int64
        var units: UInt64
        var valueFen: Int64
        var remainderFen: Int64
        var exactMicroFen: UInt64
        /// (tier, units) bought in each tier.
        var segments: [[UInt64]]
        var testDescription: String { self.name }
    }

    static let examples: [Example] = [
        Example(name: "flat, 100 yuan", tariff: flat, position: 0, paidFen: 10_000, units: 189_286,
                valueFen: 10_000, remainderFen: 0, exactMicroFen: 9_999_979_380, segments: [[0, 189_286]]),
        Example(name: "flat, 1 fen", tariff: flat, position: 0, paidFen: 1, units: 18, valueFen: 1,
                remainderFen: 0, exactMicroFen: 950_940, segments: [[0, 18]]),
        Example(name: "monthly, from 0 kWh, 50 yuan", tariff: monthly, position: 0, paidFen: 5_000, units: 94_643,
                valueFen: 5_000, remainderFen: 0, exactMicroFen: 4_999_989_690, segments: [[0, 94_643]]),
        Example(name: "monthly, at 150 kWh, 100 yuan", tariff: monthly, position: 150_000, paidFen: 10_000,
                units: 175_514, valueFen: 10_000, remainderFen: 0, exactMicroFen: 9_999_974_620,
                segments: [[0, 30_000], [1, 145_514]]),
        Example(name: "monthly, at 340 kWh, 200 yuan", tariff: monthly, position: 340_000, paidFen: 20_000,
                units: 244_476, valueFen: 20_000, remainderFen: 0, exactMicroFen: 19_999_947_080,
                segments: [[1, 10_000], [2, 234_476]]),
        Example(name: "monthly, at 400 kWh, 100 yuan", tariff: monthly, position: 400_000, paidFen: 10_000,
                units: 120_729, valueFen: 10_000, remainderFen: 0, exactMicroFen: 9_999_983_070,
                segments: [[2, 120_729]]),
        Example(name: "monthly with 5 yuan fixed charge owed, 100 yuan", tariff: monthlyWithFixed, position: 0,
                unpaidFixed: 1, paidFen: 10_000, units: 179_822, valueFen: 9_500, remainderFen: 0,
                exactMicroFen: 9_499_996_260, segments: [[0, 179_822]]),
        Example(name: "yearly, at 2000 kWh, 500 yuan", tariff: yearly, position: 2_000_000, paidFen: 50_000,
                units: 878_436, valueFen: 50_000, remainderFen: 0, exactMicroFen: 49_999_953_880,
                segments: [[0, 160_000], [1, 718_436]]),
        Example(name: "water yearly, at 170 m³, 100 yuan", tariff: water, position: 170_000, paidFen: 10_000,
                units: 17_142, valueFen: 10_000, remainderFen: 0, exactMicroFen: 9_999_400_000,
                segments: [[0, 10_000], [1, 7_142]]),
    ]

    @Test(arguments: examples) func workedExample(_ e: Example) throws {
        let sale = try e.tariff.sell(.fen(e.paidFen), at: TierPosition(unitsIntoPeriod: e.position,
                                                                       unpaidFixedCharges: e.unpaidFixed))
        #expect(sale.units.count == e.units)
        #expect(sale.valueMinor == e.valueFen)
        #expect(sale.remainderMinor == e.remainderFen)
        #expect(sale.valueMicroMinor == e.exactMicroFen)
        #expect(sale.segments.map { [UInt64($0.tier), $0.units] } == e.segments)
        #expect(sale.fixedChargesMinor + sale.valueMinor + sale.remainderMinor == e.paidFen)
    }

    @Test func pricesParseExactly() {
        #expect(Self.price("0.5283").microMinorPerUnit == 52_830)
        #expect(Self.price("5").microMinorPerUnit == 500_000)
        #expect(Self.price("0.00001").microMinorPerUnit == 1)
        #expect(Price(majorPerThousandUnits: "0.000001", currency: .cny) == nil)  // not exact in µfen/Wh
        #expect(Price(majorPerThousandUnits: "-1", currency: .cny) == nil)
        #expect(Price(majorPerThousandUnits: "1.", currency: .cny) == nil)
        #expect(Price(majorPerThousandUnits: "1e3", currency: .cny) == nil)
        #expect(Self.price("0.5283").majorPerThousandUnitsText(.cny) == "0.5283")
        #expect(Self.price("5").majorPerThousandUnitsText(.cny) == "5.00")
    }

    @Test func invalidTariffsAndSalesAreTypedErrors() {
        #expect(throws: TariffError.noTiers) {
            try Tariff(name: "x", currency: .cny, unitKind: .wattHours, period: .monthly, tiers: [])
        }
        #expect(throws: TariffError.boundsNotIncreasing(tier: 1)) {
            try Tariff(name: "x", currency: .cny, unitKind: .wattHours, period: .monthly,
                       tiers: [.init(upToUnits: 10, price: Self.price("1")),
                               .init(upToUnits: 10, price: Self.price("1")),
                               .init(upToUnits: nil, price: Self.price("1"))])
        }
        #expect(throws: TariffError.lastTierBounded) {
            try Tariff(name: "x", currency: .cny, unitKind: .wattHours, period: .monthly,
                       tiers: [.init(upToUnits: 10, price: Self.price("1"))])
        }
        #expect(throws: SaleError.insufficientForFixedCharges(neededMinor: 1000)) {
            try Self.monthlyWithFixed.sell(.fen(999), at: TierPosition(unitsIntoPeriod: 0, unpaidFixedCharges: 2))
        }
        #expect(throws: SaleError.negativeAmount) { try Self.flat.sell(.fen(-1), at: TierPosition()) }
        #expect(throws: SaleError.currencyMismatch) {
            try Self.flat.sell(Money(minor: 100, Currency(code: "EUR", minorUnitName: "cent", minorDigits: 2)),
                               at: TierPosition())
        }
        #expect(throws: SaleError.overflow) { try Self.flat.sell(.fen(Int64.max), at: TierPosition()) }
    }

    /// A tariff read from JSON is validated like one built in code, so a sale never divides by a zero price.
    @Test func decodedTariffsAreValidated() throws {
        let data = try JSONEncoder().encode(Self.monthlyWithFixed)
        #expect(try JSONDecoder().decode(Tariff.self, from: data) == Self.monthlyWithFixed)
        let zero = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "52830", with: "0")
        #expect(throws: TariffError.zeroPrice(tier: 0)) { try JSONDecoder().decode(Tariff.self, from: Data(zero.utf8)) }
        let noTiers = String(decoding: data, as: UTF8.self)
            .replacingOccurrences(of: #""tiers":\[.*\]"#, with: #""tiers":[]"#, options: .regularExpression)
        #expect(throws: TariffError.noTiers) { try JSONDecoder().decode(Tariff.self, from: Data(noTiers.utf8)) }
    }

    /// For any sale: paid = fixed charges + value of the units credited + remainder, exactly; the remainder is
    /// non-negative; one more unit would cost more than value + remainder; and `value(of:)` agrees with the sale.
    @Test func conservationAcrossTiersAndRounding() throws {
        var rng = SeededGenerator(seed: 0xC0FFEE)
        var withRemainder = 0
        var crossingTiers = 0
        for _ in 0..<5000 {
            let tierCount = Int.random(in: 1...4, using: &rng)
            var bound: UInt64 = 0
            var tiers: [Tariff.Tier] = []
            for i in 0..<tierCount {
                // Prices from 1 µfen to 5 fen per unit: remainders appear once a unit costs more than a fen.
                let price = Price(microMinorPerUnit: UInt64.random(in: 1...5_000_000, using: &rng))
                if i == tierCount - 1 {
                    tiers.append(.init(upToUnits: nil, price: price))
                } else {
                    bound += UInt64.random(in: 1...500_000, using: &rng)
                    tiers.append(.init(upToUnits: bound, price: price))
                }
            }
            let fixed = Bool.random(using: &rng) ? Int64.random(in: 0...2000, using: &rng) : 0
            let tariff = try Tariff(name: "random", currency: .cny, unitKind: .wattHours,
                                    period: Bool.random(using: &rng) ? .monthly : .yearly, tiers: tiers,
                                    fixedChargePerPeriodMinor: fixed)
            let position = TierPosition(unitsIntoPeriod: UInt64.random(in: 0...(bound + 1000), using: &rng),
                                        unpaidFixedCharges: UInt32.random(in: 0...2, using: &rng))
            let owed = fixed * Int64(position.unpaidFixedCharges)
            let paid = owed + Int64.random(in: 0...2_000_000, using: &rng)
            let sale = try tariff.sell(.fen(paid), at: position)
            #expect(sale.fixedChargesMinor == owed)
            #expect(sale.fixedChargesMinor + sale.valueMinor + sale.remainderMinor == paid)
            #expect(sale.remainderMinor >= 0)
            let value = try #require(tariff.value(of: sale.units.count, at: position.unitsIntoPeriod))
            #expect(value.minor == sale.valueMinor)
            #expect(value.microMinor == sale.valueMicroMinor)
            #expect(value.microMinor <= UInt64(paid - owed) * 1_000_000)
            let oneMore = try #require(tariff.value(of: sale.units.count + 1, at: position.unitsIntoPeriod))
            #expect(oneMore.microMinor > UInt64(paid - owed) * 1_000_000, "one more unit must not be affordable")
            #expect(sale.segments.reduce(0) { $0 + $1.units } == sale.units.count)
            #expect(sale.endPosition == position.unitsIntoPeriod + sale.units.count)
            if sale.remainderMinor > 0 { withRemainder += 1 }
            if sale.segments.count > 1 { crossingTiers += 1 }
        }
        #expect(withRemainder > 100)
        #expect(crossingTiers > 100)
    }

    @Test func billingPeriodsInChinaTime() {
        // 2026-11-25T08:30:00Z is November 2026 in UTC+8.
        let t: UInt32 = 0x6B06_9C88
        #expect(BillingPeriod.monthly.index(containing: t, utcOffsetSeconds: 28_800) == (2026 - 1970) * 12 + 10)
        #expect(BillingPeriod.yearly.index(containing: t, utcOffsetSeconds: 28_800) == 56)
        // 2026-12-31T16:00:00Z is already 2027-01-01 in UTC+8.
        let newYear: UInt32 = 1_798_732_800
        #expect(BillingPeriod.yearly.index(containing: newYear, utcOffsetSeconds: 28_800) == 57)
        #expect(BillingPeriod.yearly.index(containing: newYear - 1, utcOffsetSeconds: 28_800) == 56)
        #expect(BillingPeriod.yearly.start(ofPeriod: 57, utcOffsetSeconds: 28_800) == Int64(newYear))
        #expect(BillingPeriod.monthly.start(ofPeriod: 0) == 0)
        // Every month start maps back to its own index.
        for index in Int64(600)...Int64(720) {
            let start = BillingPeriod.monthly.start(ofPeriod: index, utcOffsetSeconds: 28_800)
            #expect(BillingPeriod.monthly.index(containing: UInt32(start), utcOffsetSeconds: 28_800) == index)
            #expect(BillingPeriod.monthly.index(containing: UInt32(start - 1), utcOffsetSeconds: 28_800) == index - 1)
        }
    }
}
