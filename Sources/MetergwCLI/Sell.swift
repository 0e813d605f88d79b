import ArgumentParser
import BillingStore
import CentralStore
import Foundation
import MeterProtocol
import Prepaid

/// `metergw sell`: a sale at the desk (docs/STORE.md "Selling").
struct Sell: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sell units for an account's meter: queued for the gateway (--remote) or written to a card.",
        discussion: """
            The money and the account's balance buy whole units at the tariff in force, from the meter's tier \
            position. Give --request-id so a repeated request (a double click, a retry after a crash) returns the \
            first purchase instead of selling twice; without one, a new id is made and printed.
            With --writer PORT the card in the writer is read first (a card of another meter is refused; the \
            customer's card with the meter's write-back is uploaded first), then the purchase, with every credit \
            still pending for the meter, is written as one signed credit block onto that same card, read back and \
            compared; only then is it marked written. If the write fails the purchase stays "created": put the \
            card back and run the same command with the same --request-id.
            --printer PORT also prints the receipt on a serial ESC/POS printer.
            """)

    @OptionGroup var desk: DeskOptions
    @Option(help: "Account id, or #number.") var account: String
    @Option(help: "Money brought, in major units (e.g. 100.00).") var amount: String
    @Flag(help: "Queue the credit for the gateway to send to the meter.") var remote = false
    @Option(help: "The card writer's port: write the credit to the customer's card.") var writer: String?
    @Option(help: "The card writer's bus address.") var writerAddress: UInt8 = 100
    @Option(help: "The card writer's line settings.") var writerLine = PortOptions.defaultLine
    @Option(help: "The metergw key file, to sign the card (default: $XDG_CONFIG_HOME/metergw/keys).")
    var keys: String?
    @Option(help: "A serial ESC/POS receipt printer's port: print the receipt there too.") var printer: String?
    @Option(help: "The receipt printer's line settings.") var printerLine = ReceiptPrinter.defaultLine
    @Option(help: "Idempotency key: the same id never sells twice.") var requestId: String?
    @Flag(help: "Print the purchase as one JSON object.") var json = false

    func validate() throws {
        if self.remote == (self.writer != nil) { throw ValidationError("give exactly one of --remote or --writer PORT") }
    }

    func run() throws {
        let requestID = self.requestId ?? UUID().uuidString.lowercased()
        let card: CardSale.Written?
        let outcome: BillingDatabase.SaleOutcome
        let receipt: Receipt
        let purchase: Purchase
        let balanceMinor: Int64
        // On the central store: who delivers remote credit (nil: a SQLite store, where the question does not arise).
        var delivery: CentralDelivery?
        if let writer {
            let (account, amount, actor) = (self.account, self.amount, self.desk.actor)
            let (line, address, keys) = (self.writerLine, self.writerAddress, self.keys)
            (outcome, card, receipt, purchase, balanceMinor) = try self.desk.run { db in
                let detail = try await db.account(account)
                let money = try Amount.parse(amount, currency: StoreCurrency.named(detail.account.currency))
                // Refused before the writer's port is touched.
                guard let meter = detail.meter else { throw StoreError.accountHasNoMeter(detail.account.id!) }
                let issuer = CardIssuer(keys: try KeyFileOption.load(keys))
                let sale = CardSale(db: db, actor: actor, issuer: issuer,
                                    writer: try DeskWriter.open(port: writer, line: line, address: address))
                let (outcome, written) = try await sale.sell(account: account, meter: meter, amount: money,
                                                             requestID: requestID)
                return (outcome, written, try await db.receipt(purchase: outcome.purchase.id!),
                        try await db.purchase(outcome.purchase.id!), try await db.account(account).account.balanceMinor)
            }
        } else {
            card = nil
            let (account, amount, actor) = (self.account, self.amount, self.desk.actor)
            (outcome, receipt, purchase, balanceMinor, delivery) = try self.desk.run { db in
                let detail = try await db.account(account)
                let money = try Amount.parse(amount, currency: StoreCurrency.named(detail.account.currency))
                let outcome = try await db.sell(account: account, amount: money, requestID: requestID, mode: .remote,
                                                by: actor)
                var delivery: CentralDelivery?
                if let central = db as? CentralDatabase {
                    delivery = CentralDelivery(
                        gateway: try await central.servingGateway(meter: "id:\(outcome.meter.id!)"))
                }
                return (outcome, try await db.receipt(purchase: outcome.purchase.id!),
                        try await db.purchase(outcome.purchase.id!), try await db.account(account).account.balanceMinor,
                        delivery)
            }
        }
        if self.json {
            var object = StoreCLI.purchaseJSON(purchase, repeated: outcome.repeated)
            if case .object(var members) = object {
                members.append(("meter", .int(outcome.meter.serial)))
                members.append(("accountBalance", StoreCLI.moneyJSON(balanceMinor, outcome.account.currency)))
                if let card { members.append(("card", card.json)) }
                if let delivery { members.append(("delivery", delivery.json)) }
                object = .object(members)
            }
            Output.line(object.rendered())
        } else {
            if outcome.repeated {
                Output.line("request \(requestID) was sold before: this is purchase \(outcome.purchase.id!), nothing new")
            }
            if let upload = card?.upload { for line in CardUploadReport.lines(upload) { Output.line(line) } }
            if let card, !card.alreadyWritten {
                Output.line("wrote card \(card.plan.cardSerial) (generation \(card.plan.generation)): purchases "
                            + "\(card.plan.credit.firstSequence)...\(card.plan.credit.lastSequence), "
                            + "\(card.plan.credit.units) units, read back and verified")
            }
            Output.write(1, receipt.text)
            if let delivery, delivery.gateway == nil {
                Output.line(delivery.words(meter: outcome.meter.serial))
            }
        }
        if let printer {
            do {
                try ReceiptPrinter.print(receipt, port: printer, line: self.printerLine)
            } catch let error as CLIError {
                throw CLIError(error.status, "the sale is complete, but the receipt printer failed: \(error.message); "
                               + "reprint it by running the same command again (same --request-id)")
            }
        }
    }
}

/// Who delivers a remote sale made at the centre: the gateway that serves the meter, or, when none does, the
/// technician's `topup --remote --url` on the meter's bus (docs/CENTRAL.md).
struct CentralDelivery: Sendable {
    var gateway: String?

    var json: JSONValue {
        .object([("gateway", self.gateway.map { .string($0) } ?? .null),
                 ("deliveredBy", .string(self.gateway.map { "gateway \($0)" } ?? "metergw topup --remote --url"))])
    }

    func words(meter serial: Int64) -> String {
        "no gateway serves meter \(serial): deliver this credit on its bus with `metergw topup --remote --url … "
            + "--account A --port PORT`"
    }
}

/// `metergw purchase`: purchases after the sale.
struct PurchaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purchase", abstract: "List, show and cancel purchases.",
        subcommands: [List.self, Show.self, Cancel.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List purchases (of one account).")
        @OptionGroup var desk: DeskOptions
        @Option(help: "Only this account's.") var account: String?
        @Flag(help: "Print one JSON array.") var json = false

        func run() throws {
            let account = self.account
            let all = try self.desk.run { try await $0.purchases(account: account) }
            StoreCLI.emit(json: self.json, .array(all.map { StoreCLI.purchaseJSON($0) })) {
                ["id     account  sequence  state      paid             units"] + all.map { p in
                    func pad(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(1, n - s.count)) }
                    return pad("\(p.id!)", 7) + pad("\(p.accountId)", 9) + pad(p.numberedSequence.map { "\($0)" } ?? "-", 10)
                        + pad(p.state.rawValue, 11) + pad(StoreCLI.money(p.paidMinor, p.currency), 17)
                        + "\(p.units) \(p.unitSymbol)"
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a purchase as its receipt.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "Purchase id.") var id: Int64
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let id = self.id
            let (p, receipt) = try self.desk.run { db in
                (try await db.purchase(id), try await db.receipt(purchase: id))
            }
            StoreCLI.emit(json: self.json, StoreCLI.purchaseJSON(p)) { [String(receipt.text.dropLast())] }
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Cancel a purchase whose credit has not left the desk (created or queued); refunds the balance.")
        @OptionGroup var desk: DeskOptions
        @Argument(help: "Purchase id.") var id: Int64
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let (id, actor) = (self.id, self.desk.actor)
            let p = try self.desk.run { try await $0.cancel(purchase: id, by: actor) }
            StoreCLI.emit(json: self.json, StoreCLI.purchaseJSON(p)) {
                ["purchase \(p.id!) cancelled: \(StoreCLI.money(p.chargedMinor, p.currency)) back on the account"]
            }
        }
    }
}
