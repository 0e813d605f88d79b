import ArgumentParser
import BillingStore
import CentralStore
import Foundation

/// Where the desk commands work (docs/STORE.md "One desk, two stores"): the SQLite file of a single-site
/// installation (`--db`) or the central PostgreSQL store of a billing centre (`--url`). The commands are written
/// once against `BillingDesk`; only this type knows which store it is.
struct DeskOptions: ParsableArguments {
    @OptionGroup var store: StoreOptions

    @Option(name: .customLong("url"),
            help: """
                The central store instead of --db: postgres://USER@HOST:PORT/DATABASE (default without --db and \
                METERGW_DB: $METERGW_CENTRAL_URL).
                """)
    var urlText: String?

    func validate() throws {
        if self.store.db != nil && self.urlText != nil {
            throw ValidationError("give --db (a SQLite store) or --url (the central store), not both")
        }
    }

    /// The store chosen: --db, else --url, else $METERGW_DB, else $METERGW_CENTRAL_URL, else the default file.
    enum Choice {
        case sqlite
        case central(CentralURL)
    }

    func choice() throws -> Choice {
        if self.store.db != nil { return .sqlite }
        if let text = self.urlText { return .central(try CentralOptions.url(text)) }
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["METERGW_DB"], !path.isEmpty { return .sqlite }
        if let text = environment["METERGW_CENTRAL_URL"], !text.isEmpty {
            return .central(try CentralOptions.url(text))
        }
        return .sqlite
    }

    /// The acting operator at this moment.
    var actor: Actor { self.store.actor }

    /// Runs `body` against the chosen store: one connection (or one open file) for the whole command. The central
    /// store must have this build's schema (`metergw central migrate`).
    func run<T: Sendable>(_ body: @escaping @Sendable (any BillingDesk) async throws -> T) throws -> T {
        switch try self.choice() {
        case .sqlite:
            let db = try self.store.open()
            return try Blocking.run { try await body(db) }
        case .central(let url):
            return try Blocking.run {
                try await CentralDatabase.with(url) { db in
                    try await db.requireCurrentSchema()
                    return try await body(db)
                }
            }
        }
    }
}
