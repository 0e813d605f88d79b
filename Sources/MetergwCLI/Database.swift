import ArgumentParser
import BillingStore
import MeterProtocol

/// `metergw db`: the billing database's upkeep (docs/STORE.md).
struct DatabaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "db", abstract: "Check, back up and migrate the billing database.",
        subcommands: [Check.self, Backup.self, Migrate.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "SQLite's integrity check plus the business invariants; exit status 65 if any fails.")
        @OptionGroup var store: StoreOptions
        @Flag(help: "Also recompute the daily consumption summary from every reading (slow on big stores).")
        var full = false
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let db = try self.store.open()
            let violations = try StoreCLI.run { try db.check(full: self.full) }
            StoreCLI.emit(json: self.json, .object([
                ("ok", .bool(violations.isEmpty)),
                ("violations", .array(violations.map {
                    .object([("invariant", .string($0.invariant)), ("detail", .string($0.detail))])
                })),
            ])) {
                violations.isEmpty ? ["ok: integrity and every invariant hold"] : violations.map { "FAILED \($0)" }
            }
            if !violations.isEmpty { throw ExitCode(ExitStatus.dataError.rawValue) }
        }
    }

    struct Backup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy the database with SQLite's online backup API (safe while the gateway writes).")
        @OptionGroup var store: StoreOptions
        @Argument(help: "Where to write the copy (a new file).") var path: String

        func run() throws {
            let db = try self.store.open()
            try StoreCLI.run { try db.backup(to: self.path) }
            let copy = try StoreCLI.run { try BillingDatabase.open(path: self.path, migrate: false) }
            let violations = try StoreCLI.run { try copy.check() }
            guard violations.isEmpty else {
                throw CLIError(.dataError, "the copy at \(self.path) fails db check: \(violations[0])")
            }
            Output.line("backed up to \(self.path) (checked)")
        }
    }

    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Apply the schema's pending migrations.")
        @OptionGroup var store: StoreOptions
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let db = try self.store.open(migrate: false)
            let result = try StoreCLI.run { try db.migrate() }
            StoreCLI.emit(json: self.json, .object([
                ("applied", .array(result.applied.map { .string($0) })),
                ("all", .array(result.all.map { .string($0) })),
            ])) {
                result.applied.isEmpty ? ["up to date: \(result.all.joined(separator: ", "))"]
                    : ["applied \(result.applied.joined(separator: ", "))"]
            }
        }
    }
}
