import ArgumentParser
import BillingStore
import CentralStore
import Foundation
import MeterProtocol
import StoreSync

/// `metergw sync`: store-and-forward from this gateway's store to the central store (docs/CENTRAL.md "Sync").
struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync", abstract: "Send the gateway's readings and alarms to the central store; show the backlog.",
        subcommands: [Run.self, Status.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send everything waiting in the outbox, in bounded batches, each applied once by the centre.",
            discussion: """
                --url names the central store with this gateway's own login (metergw central gateway add). A run \
                that fails keeps the backlog and says why; the next run resumes where the centre says it stands.
                """)
        @OptionGroup var store: StoreOptions
        @OptionGroup var central: CentralOptions
        @Option(help: "Outbox entries per batch.") var batch = 5_000
        @Option(help: "At most this many batches a second (so a long backlog does not flood the centre).")
        var rate = 20
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let url = try self.central.url()
            let db = try self.store.open()
            var options = OutboxSync.Options()
            options.batchSize = max(1, self.batch)
            options.maxBatchesPerSecond = max(1, self.rate)
            let sync = OutboxSync(store: db, central: url, options: options)
            let result = Blocking.wait { () async -> Result<OutboxSync.Run, OutboxSync.Failure> in
                do throws(OutboxSync.Failure) {
                    return .success(try await sync.drain())
                } catch {
                    return .failure(error)
                }
            }
            switch result {
            case .failure(.central(let error)): throw CentralCLI.cliError(error)
            case .failure(.local(let error)): throw CLIError(.ioError, error.explanation)
            case .failure(let failure): throw CLIError(.dataError, failure.description)
            case .success(let run):
                StoreCLI.emit(json: self.json, .object([
                    ("batches", .int(Int64(run.batches))), ("readings", .int(Int64(run.readings))),
                    ("alarms", .int(Int64(run.alarms))), ("conflicts", .int(Int64(run.conflicts))),
                    ("ackedSequence", .int(run.ackedSequence)),
                ])) {
                    ["sent \(run.readings) readings and \(run.alarms) alarms in \(run.batches) batches; the centre "
                        + "has everything up to \(run.ackedSequence)"
                        + (run.conflicts > 0 ? "; \(run.conflicts) conflict(s) for a person at the centre" : "")]
                }
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The local outbox: acknowledged sequence, backlog, lag and the last error.")
        @OptionGroup var store: StoreOptions
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let db = try self.store.open()
            let state = try StoreCLI.run { try db.syncState() }
            let now = Int64(Date().timeIntervalSince1970)
            let lag = state.oldestPendingTime.map { max(0, now - $0) }
            StoreCLI.emit(json: self.json, .object([
                ("ackedSequence", .int(state.ackedSequence)), ("backlog", .int(state.backlog)),
                ("lagSeconds", lag.map { .int($0) } ?? .null),
                ("lastSentAt", state.lastSentAt.map { .int($0) } ?? .null),
                ("lastError", state.lastError.map { .string($0) } ?? .null),
            ])) {
                StoreCLI.table([
                    ("acknowledged up to", "\(state.ackedSequence)"),
                    ("backlog", "\(state.backlog) entries"),
                    ("lag", lag.map { "\($0) s behind the oldest waiting entry" } ?? "none"),
                    ("last error", state.lastError ?? "none"),
                ])
            }
        }
    }
}
