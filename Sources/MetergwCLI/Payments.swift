import ArgumentParser
import BillingStore
import MeterProtocol

/// `metergw payments import`: payments from a bank's file (docs/STORE.md §5).
struct PaymentsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "payments", abstract: "Import payments from a bank's debit or transfer file.",
        subcommands: [Import.self])

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Import bank.csv (date,reference,account,amount,currency,purpose); each reference once.",
            discussion: """
                purpose topup (or empty) on an account with a meter: a queued purchase; otherwise a credit on the \
                account's balance. Exit status 76 when any row was refused (the others are imported).
                """)
        @OptionGroup var desk: DeskOptions
        @Argument(help: "The bank's CSV file.") var file: String
        @Flag(help: "Print one JSON array, one object per row.") var json = false

        func run() throws {
            let text = String(decoding: try InputFile.read(self.file), as: UTF8.self)
            let rows = try StoreCLI.run { try BankPaymentRow.parse(csv: text) }
            let actor = self.desk.actor
            let results = try self.desk.run { await $0.importPayments(rows, by: actor) }
            var refused = 0
            var items: [JSONValue] = []
            var lines: [String] = []
            for result in results {
                switch result {
                case .purchase(let line, let reference, let id):
                    items.append(.object([("line", .int(Int64(line))), ("reference", .string(reference)),
                                          ("result", .string("purchase")), ("purchase", .int(id))]))
                    lines.append("line \(line) \(reference): purchase \(id) queued")
                case .credit(let line, let reference, let amount):
                    items.append(.object([("line", .int(Int64(line))), ("reference", .string(reference)),
                                          ("result", .string("credit")), ("amountMinor", .int(amount))]))
                    lines.append("line \(line) \(reference): credited \(amount) minor units to the account")
                case .refused(let line, let reference, let error):
                    refused += 1
                    items.append(.object([("line", .int(Int64(line))), ("reference", .string(reference)),
                                          ("result", .string("refused")), ("reason", .string(error.explanation))]))
                    lines.append("line \(line) \(reference): REFUSED, \(error.explanation)")
                }
            }
            StoreCLI.emit(json: self.json, .array(items)) {
                lines + ["\(results.count - refused) imported, \(refused) refused"]
            }
            if refused > 0 { throw ExitCode(ExitStatus.refused.rawValue) }
        }
    }
}
