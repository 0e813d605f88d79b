import ArgumentParser
import BillingStore
import MeterProtocol

/// `metergw report`: sales, consumption, meters, alarms, balances, statements and receipt reprints
/// (docs/STORE.md §6).
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report", abstract: "Reports from the billing store: --csv, --json or a table.",
        subcommands: [Sales.self, Consumption.self, Meters.self, Alarms.self, Balances.self, Statement.self,
                      Receipt.self])

    struct Range: ParsableArguments {
        @Option(help: "First day, YYYY-MM-DD (local time).") var from: String
        @Option(help: "Last day, YYYY-MM-DD (inclusive).") var to: String
        @Option(help: "day or month.") var by = "day"
        @Flag(help: "Comma-separated values with a header line.") var csv = false
        @Flag(help: "One JSON array.") var json = false

        func days() throws -> (Int64, Int64, BillingDatabase.Granularity) {
            guard let from = LocalTime.parseDate(self.from), let to = LocalTime.parseDate(self.to), from <= to else {
                throw CLIError(.usage, "--from and --to are YYYY-MM-DD dates, from not after to")
            }
            guard let by = BillingDatabase.Granularity(rawValue: self.by) else {
                throw CLIError(.usage, "--by is day or month")
            }
            return (from, to, by)
        }

        /// Prints rows as CSV, JSON objects or aligned columns.
        func emit(_ header: [String], _ rows: [[JSONValue]]) {
            Self.emit(header, rows, csv: self.csv, json: self.json)
        }

        static func emit(_ header: [String], _ rows: [[JSONValue]], csv: Bool, json: Bool) {
            if json {
                Output.line(JSONValue.array(rows.map { .object(Array(zip(header, $0))) }).rendered())
                return
            }
            let text = rows.map { $0.map(Self.text) }
            if csv {
                Output.line(header.joined(separator: ","))
                for row in text { Output.line(row.joined(separator: ",")) }
                return
            }
            let widths = header.indices.map { i in max(header[i].count, text.map { $0[i].count }.max() ?? 0) + 2 }
            func line(_ cells: [String]) -> String {
                zip(cells, widths).map { $0 + String(repeating: " ", count: $1 - $0.count) }.joined()
            }
            Output.line(line(header))
            for row in text { Output.line(line(row)) }
        }

        static func text(_ v: JSONValue) -> String {
            switch v {
            case .string(let s): s
            case .int(let i): String(i)
            case .uint(let u): String(u)
            case .null: ""
            default: v.rendered()
            }
        }
    }

    struct Sales: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Sales per day or month (per account).")
        @OptionGroup var desk: DeskOptions
        @OptionGroup var range: Range
        @Flag(help: "One row per account.") var perAccount = false

        func run() throws {
            let (from, to, by) = try self.range.days()
            let perAccount = self.perAccount
            let rows = try self.desk.run { db in
                try await db.salesReport(fromDay: from, toDay: to, by: by, perAccount: perAccount)
            }
            func money(_ m: Int64, _ c: String) -> JSONValue { .string(Amount.text(m, c).split(separator: " ")[0].description) }
            self.range.emit(["period", "account", "purchases", "paid", "value", "fixedCharges", "units", "currency"],
                            rows.map { r in
                                [.string(r.period), StoreCLI.optional(r.account), .int(Int64(r.purchases)),
                                 money(r.paidMinor, r.currency), money(r.valueMinor, r.currency),
                                 money(r.fixedChargesMinor, r.currency), .int(r.units), .string(r.currency)]
                            })
        }
    }

    struct Consumption: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Consumption per meter per day or month.")
        @OptionGroup var desk: DeskOptions
        @OptionGroup var range: Range

        func run() throws {
            let (from, to, by) = try self.range.days()
            let bar = ProgressBar()
            let rows = try self.desk.run { db in
                try await db.consumptionRows(fromDay: from, toDay: to, by: by) { done, total in
                    bar.show(done: done, total: total, "report consumption: \(done) of \(total) meters")
                }
            }
            bar.clear()
            self.range.emit(["period", "meter", "units", "unit"], rows.map { r in
                [.string(r.period), .int(r.meterSerial), .int(r.units),
                 .string(r.unitKind == 2 ? "L" : "Wh")]
            })
        }
    }

    /// `--from`/`--to` and the output format, for reports that have no `--by`.
    struct Period: ParsableArguments {
        @Option(help: "First day, YYYY-MM-DD (local time).") var from: String
        @Option(help: "Last day, YYYY-MM-DD (inclusive).") var to: String
        @Flag(help: "Comma-separated values with a header line.") var csv = false
        @Flag(help: "One JSON array.") var json = false

        func days() throws -> (Int64, Int64) {
            guard let from = LocalTime.parseDate(self.from), let to = LocalTime.parseDate(self.to), from <= to else {
                throw CLIError(.usage, "--from and --to are YYYY-MM-DD dates, from not after to")
            }
            return (from, to)
        }

        func emit(_ header: [String], _ rows: [[JSONValue]]) {
            Range.emit(header, rows, csv: self.csv, json: self.json)
        }
    }

    static func time(_ time: Int64?, _ offset: Int64) -> JSONValue {
        time.map { .string(LocalTime.text($0, offset: offset)) } ?? .null
    }

    struct Meters: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Each meter's last reading, consumption, credit and pending purchases.",
            discussion: """
                Per meter: serial, kind, account, tariff, the last reading up to the period's end and its time, \
                the consumption in the period (as report consumption sums it; empty without a reading in it), the \
                latest credit the meter reported and when, and, as of now, its last applied purchase sequence and \
                the purchases still pending (sold, not yet confirmed by the meter). Shows progress on a terminal.
                """)
        @OptionGroup var desk: DeskOptions
        @OptionGroup var period: Period

        func run() throws {
            let (from, to) = try self.period.days()
            let bar = ProgressBar()
            let (offset, rows) = try self.desk.run { db in
                let offset = try await db.utcOffsetSeconds()
                return (offset, try await db.meterRows(fromDay: from, toDay: to) { done, total in
                    bar.show(done: done, total: total, "report meters: \(done) of \(total) meters")
                })
            }
            bar.clear()
            self.period.emit(["meter", "kind", "account", "tariff", "lastReading", "register", "consumption",
                              "credit", "creditAt", "unit", "lastAppliedSequence", "pendingPurchases",
                              "pendingUnits"], rows.map { r in
                [.int(r.serial), .string(r.kind), StoreCLI.optional(r.account), .string(r.tariff),
                 ReportCommand.time(r.lastReadingTime, offset), StoreCLI.optional(r.lastRegister),
                 StoreCLI.optional(r.consumption), StoreCLI.optional(r.credit),
                 ReportCommand.time(r.creditTime, offset), .string(r.unitKind == 2 ? "L" : "Wh"),
                 .int(r.lastAppliedSequence), .int(Int64(r.pendingPurchases)), .int(r.pendingUnits)]
            })
        }
    }

    struct Alarms: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Alarm episodes per meter: raised, cleared, acknowledged, how long.",
            discussion: """
                An episode runs from the first reading that showed an alarm bit to the first that showed it \
                clear; every episode that overlaps the period is listed, with its real start and end. \
                "acknowledged" is the meter's own record of an alarms ack (event 0070) during the episode. An \
                alarm still set has no "cleared", and its duration runs to now. Shows progress on a terminal.
                """)
        @OptionGroup var desk: DeskOptions
        @OptionGroup var period: Period

        func run() throws {
            let (from, to) = try self.period.days()
            let bar = ProgressBar()
            let now = self.desk.actor.now
            let (offset, rows) = try self.desk.run { db in
                let offset = try await db.utcOffsetSeconds()
                return (offset, try await db.alarmEpisodes(fromDay: from, toDay: to, now: now) { done, total in
                    bar.show(done: done, total: total, "report alarms: \(done) of \(total) meters")
                })
            }
            bar.clear()
            self.period.emit(["meter", "alarm", "raised", "cleared", "acknowledged", "durationSeconds"], rows.map { e in
                [.int(e.meterSerial), .string(e.alarm), ReportCommand.time(e.raised, offset),
                 ReportCommand.time(e.cleared, offset), ReportCommand.time(e.acknowledged, offset),
                 .int(e.durationSeconds)]
            })
        }
    }

    struct Balances: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every account's balance now.")
        @OptionGroup var desk: DeskOptions
        @Flag(help: "Comma-separated values.") var csv = false
        @Flag(help: "One JSON array.") var json = false

        func run() throws {
            let all = try self.desk.run { try await $0.accounts() }
            let header = ["account", "number", "name", "state", "balance", "currency", "pendingPurchases"]
            let rows: [[String]] = all.map { d in
                [String(d.account.id!), String(d.account.number), d.customer.name, d.account.state.rawValue,
                 String(Amount.text(d.account.balanceMinor, d.account.currency).split(separator: " ")[0]),
                 d.account.currency, String(d.pendingPurchases)]
            }
            if self.json {
                Output.line(JSONValue.array(all.map(StoreCLI.accountJSON)).rendered())
            } else {
                Output.line(header.joined(separator: self.csv ? "," : "  "))
                for row in rows { Output.line(row.joined(separator: self.csv ? "," : "  ")) }
            }
        }
    }

    struct Statement: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "An account's monthly statement.")
        @OptionGroup var desk: DeskOptions
        @Option(help: "Account id, or #number.") var account: String
        @Option(help: "The month, YYYY-MM.") var month: String
        @Flag(help: "One JSON object.") var json = false

        func run() throws {
            guard let day = LocalTime.parseMonth(self.month) else { throw CLIError(.usage, "--month is YYYY-MM") }
            let account = self.account
            let s = try self.desk.run { try await $0.statement(account: account, monthStartDay: day) }
            let c = s.currency
            StoreCLI.emit(json: self.json, .object([
                ("account", .int(s.account)), ("month", .string(s.month)),
                ("openingBalance", StoreCLI.moneyJSON(s.openingBalanceMinor, c)),
                ("deposits", StoreCLI.moneyJSON(s.depositsMinor, c)), ("charged", StoreCLI.moneyJSON(s.chargedMinor, c)),
                ("refunds", StoreCLI.moneyJSON(s.refundsMinor, c)), ("payouts", StoreCLI.moneyJSON(s.payoutsMinor, c)),
                ("closingBalance", StoreCLI.moneyJSON(s.closingBalanceMinor, c)), ("purchases", .int(Int64(s.purchases))),
                ("unitsBought", .int(s.unitsBought)), ("consumption", StoreCLI.optional(s.consumption)),
            ])) {
                ["statement of account \(s.account) for \(s.month)"] + StoreCLI.table([
                    ("opening balance", StoreCLI.money(s.openingBalanceMinor, c)),
                    ("deposits", StoreCLI.money(s.depositsMinor, c)),
                    ("purchases", "\(s.purchases), charged \(StoreCLI.money(s.chargedMinor, c)), "
                        + Amount.units(s.unitsBought, s.unitKind ?? 1)),
                    ("refunds", StoreCLI.money(s.refundsMinor, c)),
                    ("payouts", StoreCLI.money(s.payoutsMinor, c)),
                    ("consumption", s.consumption.map { Amount.units($0, s.unitKind ?? 1) } ?? "no meter"),
                    ("closing balance", StoreCLI.money(s.closingBalanceMinor, c)),
                ])
            }
        }
    }

    struct Receipt: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Reprint a purchase's receipt.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "Purchase id.") var purchase: Int64

        func run() throws {
            let id = self.purchase
            let receipt = try self.desk.run { try await $0.receipt(purchase: id) }
            Output.write(1, receipt.text)
        }
    }
}
