import ArgumentParser
import BillingStore
import CentralStore
import Foundation
import MeterProtocol
import StoreSync

/// `metergw sync`: store-and-forward from this gateway's store to the central store (docs/CENTRAL.md "Sync").
struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sync",
        abstract: "Exchange with the central store: send the outbox, fetch remote credit; show the backlog.",
        subcommands: [Run.self, Status.self])

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send the outbox in bounded batches (each applied once by the centre), then fetch remote credit.",
            discussion: """
                --url names the central store with this gateway's own login (metergw central gateway add). The \
                outbox carries readings, alarms, events, relay changes, card uploads and purchase state changes. \
                Then the remote credit sold centrally for this gateway's meters is fetched and queued (once per \
                order) for `metergw serve` to deliver. A run that fails keeps the backlog and says why; the next \
                run resumes where the centre says it stands.
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
            let sync = OutboxSync(store: db, central: url, options: options,
                                  crashHook: CrashHook.fromEnvironment())
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
                    ("alarms", .int(Int64(run.alarms))), ("others", .int(Int64(run.others))),
                    ("conflicts", .int(Int64(run.conflicts))), ("ackedSequence", .int(run.ackedSequence)),
                    ("ordersQueued", .int(Int64(run.ordersQueued))), ("ordersRefused", .int(Int64(run.ordersRefused))),
                ])) {
                    ["sent \(run.readings) readings, \(run.alarms) alarms and \(run.others) other rows in "
                        + "\(run.batches) batches; the centre has everything up to \(run.ackedSequence)"
                        + (run.conflicts > 0 ? "; \(run.conflicts) conflict(s) for a person at the centre" : ""),
                     "remote credit from the centre: \(run.ordersQueued) order(s) queued"
                        + (run.ordersRefused > 0 ? ", \(run.ordersRefused) refused (a conflict at the centre)" : "")]
                }
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Where sync stands: this gateway's outbox (--db), or every gateway as the centre sees it (--url).",
            discussion: """
                With --db (the default): the acknowledged sequence, the backlog, its lag and the last error of this \
                gateway. With --url and the centre's own user: per gateway, the last acknowledged sequence, the \
                backlog it reported at the end of its last round, the time since it was last heard from (its \
                last successful round or batch), remote orders not yet confirmed, and the last error of a round \
                that failed while connected (cleared by the next successful round, even an empty one).
                """)
        @OptionGroup var store: StoreOptions
        @Option(name: .customLong("url"),
                help: "The central store (postgres://USER@HOST:PORT/DATABASE): show every gateway from there.")
        var urlText: String?
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            if let urlText {
                return try self.central(CentralOptions.url(urlText))
            }
            let db = try self.store.open()
            let state = try StoreCLI.run { try db.syncState() }
            let now = StoreCLI.now
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

        private func central(_ url: CentralURL) throws {
            let gateways = try CentralCLI.run(url) { try await $0.gateways() }
            let now = StoreCLI.now
            // Since the gateway was last heard from: a gateway with nothing to send still completes rounds.
            func lag(_ g: CentralGateway) -> Int64? { g.lastContactAt.map { max(0, now - $0) } }
            StoreCLI.emit(json: self.json, .object([("gateways", .array(gateways.map {
                .object([
                    ("name", .string($0.name)), ("ackedSequence", .int($0.ackedSequence)),
                    ("backlog", $0.reportedBacklog.map { .int($0) } ?? .null),
                    ("lagSeconds", lag($0).map { .int($0) } ?? .null),
                    ("lastBatchAt", $0.lastBatchAt.map { .int($0) } ?? .null),
                    ("lastRoundAt", $0.lastRoundAt.map { .int($0) } ?? .null),
                    ("openOrders", .int($0.openOrders)),
                    ("lastError", $0.lastError.map { .string($0) } ?? .null),
                ])
            }))])) {
                gateways.isEmpty ? ["no gateways"] : [StatusTable.table(
                    [["gateway", "acknowledged", "backlog", "lag", "open orders", "last error"]] + gateways.map {
                        [$0.name, "\($0.ackedSequence)", $0.reportedBacklog.map(String.init) ?? "unknown",
                         lag($0).map { "\($0) s" } ?? "never synced", "\($0.openOrders)", $0.lastError ?? "none"]
                    })]
            }
        }
    }
}
