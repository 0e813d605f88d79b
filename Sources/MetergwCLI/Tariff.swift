import ArgumentParser
import BillingStore
import MeterProtocol
import Prepaid

/// `metergw tariff`: tariffs and their versions (docs/CARD.md §2, docs/STORE.md).
struct TariffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tariff", abstract: "Add tariffs (or new versions of one), list and show them.",
        subcommands: [Add.self, List.self, Show.self])

    static func json(_ d: BillingDatabase.TariffDetail) -> JSONValue {
        .object([
            ("id", .int(d.tariff.id!)), ("name", .string(d.tariff.name)), ("currency", .string(d.tariff.currency)),
            ("unit", .string(UnitKind(rawValue: UInt8(d.tariff.unitKind))?.symbol ?? "?")),
            ("versions", .array(d.versions.map { v in
                let t = try? v.tariff()
                return .object([
                    ("version", .int(v.version)), ("validFrom", .int(v.validFrom)),
                    ("utcOffsetSeconds", .int(v.utcOffsetSeconds)), ("period", .string(t?.period.rawValue ?? "?")),
                    ("fixedChargePerPeriod", StoreCLI.moneyJSON(t?.fixedChargePerPeriodMinor ?? 0, d.tariff.currency)),
                    ("tiers", .array((t?.tiers ?? []).map { tier in
                        .object([("upToUnits", tier.upToUnits.map { .uint($0) } ?? .null),
                                 ("microMinorPerUnit", .uint(tier.price.microMinorPerUnit)),
                                 ("pricePerThousandUnits", .string(tier.price.majorPerThousandUnitsText(
                                     StoreCurrency.named(d.tariff.currency))))])
                    })),
                ])
            })),
        ])
    }

    static func human(_ d: BillingDatabase.TariffDetail) -> [String] {
        let unit = UnitKind(rawValue: UInt8(d.tariff.unitKind)) ?? .wattHours
        let big = unit == .wattHours ? "kWh" : "m³"
        var lines = ["tariff \(d.tariff.name) (\(d.tariff.currency) per \(big))"]
        for v in d.versions {
            guard let t = try? v.tariff() else { continue }
            let offset = v.utcOffsetSeconds
            lines.append("  version \(v.version) from \(LocalTime.text(v.validFrom, offset: offset)), \(t.period.rawValue)"
                + (t.fixedChargePerPeriodMinor > 0
                    ? ", fixed charge \(StoreCLI.money(t.fixedChargePerPeriodMinor, d.tariff.currency))" : ""))
            for tier in t.tiers {
                let bound = tier.upToUnits.map { "up to \($0) \(unit.symbol)" } ?? "above"
                lines.append("    \(bound): \(tier.price.majorPerThousandUnitsText(t.currency)) \(t.currency.code)/\(big)")
            }
        }
        return lines
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a tariff, or a new version of an existing one.",
            discussion: """
                Prices are in major units per 1000 units (yuan per kWh, yuan per m³), exact to five decimals. \
                A flat tariff: --price 0.5283. Tiers: --tier 180000:0.5283 --tier 350000:0.5783 --tier 0.8283 \
                (bounds in Wh or L consumed in the period; the last tier has none).
                """)
        @OptionGroup var desk: DeskOptions
        @Option(help: "The tariff's name.") var name: String
        @Option(help: "Wh (electricity, heat) or L (water).") var unit = "Wh"
        @Option(help: "ISO 4217 currency.") var currency = "CNY"
        @Option(help: "A flat price per 1000 units.") var price: String?
        @Option(help: "A tier, UPTO:PRICE or PRICE for the last (repeat in order).") var tier: [String] = []
        @Option(help: "monthly or yearly.") var period = "monthly"
        @Option(help: "Fixed charge per period, e.g. 5.00.") var fixed = "0"
        @Option(help: "First day it applies, YYYY-MM-DD in local time (default: now).") var validFrom: String?
        @Option(help: "Local time's offset from UTC in seconds (28800 for China).") var utcOffset: Int32 = 28800
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let currency = StoreCurrency.named(self.currency)
            guard let unitKind = UnitKind.allCases.first(where: { $0.symbol == self.unit }) else {
                throw CLIError(.usage, "--unit is Wh or L")
            }
            guard let period = BillingPeriod(rawValue: self.period) else {
                throw CLIError(.usage, "--period is monthly or yearly")
            }
            func price(_ text: String) throws -> Price {
                guard let p = Price(majorPerThousandUnits: text, currency: currency) else {
                    throw CLIError(.usage, "price \(text) is not an exact decimal per 1000 units (e.g. 0.5283)")
                }
                return p
            }
            var tiers: [Tariff.Tier] = []
            if let flat = self.price {
                guard self.tier.isEmpty else { throw CLIError(.usage, "give --price or --tier, not both") }
                tiers = [Tariff.Tier(upToUnits: nil, price: try price(flat))]
            } else {
                for text in self.tier {
                    let parts = text.split(separator: ":")
                    if parts.count == 2, let bound = UInt64(parts[0]) {
                        tiers.append(Tariff.Tier(upToUnits: bound, price: try price(String(parts[1]))))
                    } else {
                        tiers.append(Tariff.Tier(upToUnits: nil, price: try price(text)))
                    }
                }
            }
            let fixed = try StoreCLI.run { try Amount.parse(self.fixed, currency: currency) }
            let tariff: Tariff
            do {
                tariff = try Tariff(name: self.name, currency: currency, unitKind: unitKind, period: period,
                                    tiers: tiers, fixedChargePerPeriodMinor: fixed.amountMinor)
            } catch {
                throw CLIError(.usage, "invalid tariff: \(error)")
            }
            var validFrom = StoreCLI.now
            if let text = self.validFrom {
                guard let day = LocalTime.parseDate(text) else { throw CLIError(.usage, "--valid-from is YYYY-MM-DD") }
                validFrom = day * 86400 - Int64(self.utcOffset)
            }
            let (start, offset, actor) = (validFrom, self.utcOffset, self.desk.actor)
            let detail = try self.desk.run { db in
                try await db.addTariff(tariff, validFrom: start, utcOffsetSeconds: offset, by: actor)
            }
            StoreCLI.emit(json: self.json, TariffCommand.json(detail)) { TariffCommand.human(detail) }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tariffs with their versions.")
        @OptionGroup var desk: DeskOptions
        @Flag(help: "Print one JSON array.") var json = false

        func run() throws {
            let all = try self.desk.run { try await $0.tariffs() }
            StoreCLI.emit(json: self.json, .array(all.map(TariffCommand.json))) { all.flatMap(TariffCommand.human) }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a tariff's versions and prices.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "The tariff's name.") var name: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let name = self.name
            let detail = try self.desk.run { try await $0.tariff(name) }
            StoreCLI.emit(json: self.json, TariffCommand.json(detail)) { TariffCommand.human(detail) }
        }
    }
}
