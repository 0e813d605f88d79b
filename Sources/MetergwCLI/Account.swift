import ArgumentParser
import BillingStore
import MeterProtocol
import Prepaid

/// `metergw account`: customers' prepaid accounts (docs/STORE.md).
struct AccountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "account", abstract: "Open, list, show and close prepaid accounts.",
        subcommands: [Add.self, List.self, Show.self, Close.self])

    static func human(_ d: BillingDatabase.AccountDetail) -> [String] {
        ["account \(d.account.id!) (number \(d.account.number)): \(d.customer.name)"] + StoreCLI.table([
            ("state", d.account.state.rawValue),
            ("balance", StoreCLI.money(d.account.balanceMinor, d.account.currency)),
            ("meter", d.meter.map { "\($0.serial) (\($0.kind))" } ?? "none"),
            ("pending purchases", "\(d.pendingPurchases)"),
        ])
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Open an account for a new customer.")
        @OptionGroup var desk: DeskOptions
        @Option(help: "The customer's name.") var name: String
        @Option(help: "Postal address.") var address: String?
        @Option(help: "Telephone.") var phone: String?
        @Option(help: "Account number on cards (default: the next free from 10000001).") var number: Int64?
        @Option(help: "ISO 4217 currency.") var currency = "CNY"
        @Flag(help: "Print the new account as one JSON object.") var json = false

        func run() throws {
            let (name, address, phone, number) = (self.name, self.address, self.phone, self.number)
            let (currency, actor) = (StoreCurrency.named(self.currency), self.desk.actor)
            let detail = try self.desk.run { db in
                try await db.openAccount(name: name, address: address, phone: phone, number: number,
                                         currency: currency, by: actor)
            }
            StoreCLI.emit(json: self.json, StoreCLI.accountJSON(detail)) { ["opened " + AccountCommand.human(detail)[0]] }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every account.")
        @OptionGroup var desk: DeskOptions
        @Flag(help: "Print one JSON array.") var json = false

        func run() throws {
            let all = try self.desk.run { try await $0.accounts() }
            StoreCLI.emit(json: self.json, .array(all.map(StoreCLI.accountJSON))) {
                ["id     number     state   balance          meter       name"] + all.map { d in
                    func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
                    return pad("\(d.account.id!)", 7) + pad("\(d.account.number)", 11) + pad(d.account.state.rawValue, 8)
                        + pad(StoreCLI.money(d.account.balanceMinor, d.account.currency), 17)
                        + pad(d.meter.map { "\($0.serial)" } ?? "-", 12) + d.customer.name
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an account, its meter and its movements.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "Account id, or #number.") var account: String
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let account = self.account
            let (detail, movements) = try self.desk.run { db in
                (try await db.account(account), try await db.movements(account: account))
            }
            let currency = detail.account.currency
            var object = StoreCLI.accountJSON(detail)
            if case .object(var members) = object {
                members.append(("movements", .array(movements.map { m in
                    .object([("id", .int(m.id!)), ("time", .int(m.time)), ("kind", .string(m.kind.rawValue)),
                             ("amount", StoreCLI.moneyJSON(m.amountMinor, currency)),
                             ("purchase", StoreCLI.optional(m.purchaseId)),
                             ("payment", StoreCLI.optional(m.paymentId))])
                })))
                object = .object(members)
            }
            StoreCLI.emit(json: self.json, object) {
                AccountCommand.human(detail) + ["  movements"] + movements.map { m in
                    "    \(UTCTime.iso8601(UInt32(clamping: m.time)))  \(m.kind.rawValue)  "
                        + StoreCLI.money(m.amountMinor, currency) + (m.purchaseId.map { "  purchase \($0)" } ?? "")
                }
            }
        }
    }

    struct Close: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Close an account (no pending purchase; a balance only with --payout).")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "Account id, or #number.") var account: String
        @Flag(help: "Record paying the remaining balance back to the customer.") var payout = false
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let (account, payout, actor) = (self.account, self.payout, self.desk.actor)
            let detail = try self.desk.run { try await $0.closeAccount(account, payout: payout, by: actor) }
            StoreCLI.emit(json: self.json, StoreCLI.accountJSON(detail)) { ["closed " + AccountCommand.human(detail)[0]] }
        }
    }
}
