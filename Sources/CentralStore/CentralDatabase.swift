import Logging
import NIOCore
import PostgresNIO

/// One connection to the central PostgreSQL store, as the billing centre (the tables' owner) or as a gateway's
/// login. Not for concurrent use: one caller at a time, like a database handle.
public final class CentralDatabase: Sendable {
    public let url: CentralURL
    let connection: PostgresConnection
    let logger: Logger

    private init(url: CentralURL, connection: PostgresConnection, logger: Logger) {
        self.url = url
        self.connection = connection
        self.logger = logger
    }

    /// Connects; errors say whether the server is unreachable, the login refused or the database missing.
    public static func connect(
        _ url: CentralURL, logger: Logger = Logger(label: "metergw.central")
    ) async throws(CentralError) -> CentralDatabase {
        let configuration = PostgresConnection.Configuration(
            host: url.host, port: url.port, username: url.username, password: url.password,
            database: url.database, tls: .disable)
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            return CentralDatabase(url: url, connection: connection, logger: logger)
        } catch {
            throw CentralError.from(error, url: url)
        }
    }

    /// Closes the connection; idempotent. Every connection must be closed before it is released: prefer
    /// ``with(_:logger:_:)``.
    public func close() async {
        try? await self.connection.close()
    }

    /// Connects, runs `body`, and closes the connection whatever `body` did.
    public static func with<T>(
        _ url: CentralURL, logger: Logger = Logger(label: "metergw.central"),
        _ body: (CentralDatabase) async throws -> T
    ) async throws -> T {
        let db = try await Self.connect(url, logger: logger)
        do {
            let value = try await body(db)
            await db.close()
            return value
        } catch {
            await db.close()
            throw error
        }
    }

    /// Runs `body`, mapping every error onto ``CentralError``.
    func run<T>(_ body: () async throws -> T) async throws(CentralError) -> T {
        // A request written to a closed channel would never be answered (see isUsable(after:)).
        guard !self.connection.isClosed else {
            throw .unreachable(url: self.url.description, detail: "the connection was closed")
        }
        do {
            return try await body()
        } catch {
            throw CentralError.from(error, url: self.url)
        }
    }

    /// Whether the connection may take another request after `error`: not when it is closed or the server ended
    /// the session (SQLSTATE class 08 connection exception, 57 operator intervention: a shutdown or a crash).
    /// postgres-nio does not fail a request written to a closed channel; it waits for ever.
    public func isUsable(after error: (any Error)? = nil) -> Bool {
        guard !self.connection.isClosed else { return false }
        switch error {
        case let error as PSQLError:
            switch error.code {
            case .connectionError, .serverClosedConnection, .uncleanShutdown: return false
            case .server:
                let state = error.serverInfo?[.sqlState] ?? ""
                return !(state.hasPrefix("08") || state.hasPrefix("57"))
            default: return true
            }
        case let error as CentralError:
            switch error {
            case .unreachable: return false
            case .server(let state, _): return !(state.hasPrefix("08") || state.hasPrefix("57") || state == "client")
            default: return true
            }
        default: return true
        }
    }

    /// Runs `body`, but gives up on it as soon as the connection closes: a request that raced the server's close
    /// (written after the server dropped the connection, before the client noticed) is never answered by
    /// postgres-nio 1.33, and without this the caller would wait for ever. The abandoned body stays suspended on
    /// that lost request; it never resumes, so it cannot act late. A body that ends first wins.
    public func abandoningOnClose<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let loop = self.connection.eventLoop
        let first = FirstOnLoop()
        let url = self.url
        return try await withCheckedThrowingContinuation { continuation in
            let task = Task {
                let result: Result<T, any Error>
                do { result = .success(try await body()) } catch { result = .failure(error) }
                loop.execute {
                    guard !first.taken else { return }
                    first.taken = true
                    continuation.resume(with: result)
                }
            }
            // Completed on the loop, like the body's hop above: the two never race.
            self.connection.closeFuture.whenComplete { _ in
                guard !first.taken else { return }
                first.taken = true
                task.cancel()
                continuation.resume(throwing: CentralError.unreachable(
                    url: url.description, detail: "the server closed the connection during the request"))
            }
        }
    }

    /// Runs `body` in one transaction: all of it commits, or none of it.
    func transaction<T>(_ body: (PostgresConnection) async throws -> T) async throws(CentralError) -> T {
        try await self.run { try await self.inTransaction("BEGIN", body) }
    }

    /// `begin`, `body`, COMMIT; on any error ROLLBACK, and the error is thrown as it came.
    func inTransaction<T>(_ begin: PostgresQuery, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await self.connection.execute(begin, logger: self.logger)
        do {
            let value = try await body(self.connection)
            try await self.connection.execute("COMMIT", logger: self.logger)
            return value
        } catch {
            // Never on a connection the server dropped: postgres-nio (1.33) loses a request written to a closed
            // channel and never answers it, so the ROLLBACK would wait for ever (the server rolled back anyway).
            if self.isUsable(after: error) {
                try? await self.connection.execute("ROLLBACK", logger: self.logger)
            }
            throw error
        }
    }

    // MARK: Schema

    /// The migrations this build knows, in order.
    public static var knownMigrations: [String] { CentralSchema.migrations.map(\.name) }

    /// Names of the migrations applied to this database, in order.
    public func appliedMigrations() async throws(CentralError) -> [String] {
        try await self.run {
            let present = try await Self.scalar(
                self.connection.query("SELECT to_regclass('public.schema_migration') IS NOT NULL",
                                      logger: self.logger), as: Bool.self)
            guard present == true else { return [] }
            let rows = try await self.connection.query(
                "SELECT name FROM schema_migration ORDER BY applied_order", logger: self.logger)
            var names: [String] = []
            for try await name in rows.decode(String.self) { names.append(name) }
            return names
        }
    }

    /// Applies the migrations not yet applied, each in its own transaction, under an advisory lock so that two
    /// migrators never interleave. Returns the names applied now (empty when up to date).
    @discardableResult
    public func migrate() async throws(CentralError) -> [String] {
        try await self.transaction { connection in
            // One lock for all metergw migrators of this database (the number is "metergw" in ASCII).
            try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: self.logger)
            try await connection.execute("""
                CREATE TABLE IF NOT EXISTS schema_migration (
                    name text PRIMARY KEY,
                    applied_order integer NOT NULL UNIQUE,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: self.logger)
        }
        let applied = try await self.appliedMigrations()
        let known = Self.knownMigrations
        if let unknown = applied.first(where: { !known.contains($0) }) {
            throw .schema("the central store has migration \(unknown), which this build of metergw does not know: "
                          + "upgrade metergw before using this database")
        }
        var now: [String] = []
        for (order, migration) in CentralSchema.migrations.enumerated() where !applied.contains(migration.name) {
            let appliedHere = try await self.transaction { connection -> Bool in
                try await connection.execute("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: self.logger)
                // Another migrator may have applied it while we waited for the lock.
                let done = try await Self.scalar(
                    connection.query("SELECT count(*) FROM schema_migration WHERE name = \(migration.name)",
                                     logger: self.logger), as: Int64.self)
                if (done ?? 0) > 0 { return false }
                for statement in SQLScript.statements(migration.sql) {
                    try await connection.execute(PostgresQuery(unsafeSQL: statement), logger: self.logger)
                }
                try await connection.execute(
                    "INSERT INTO schema_migration (name, applied_order) VALUES (\(migration.name), \(order + 1))",
                    logger: self.logger)
                return true
            }
            if appliedHere { now.append(migration.name) }
        }
        return now
    }

    /// Refuses to work on a database whose schema this build does not match.
    public func requireCurrentSchema() async throws(CentralError) {
        let applied = try await self.appliedMigrations()
        let known = Self.knownMigrations
        if applied.isEmpty {
            throw .schema("the central store at \(self.url) has no metergw schema: run metergw central migrate "
                          + "--url \(self.url)")
        }
        if let unknown = applied.first(where: { !known.contains($0) }) {
            throw .schema("the central store has migration \(unknown), unknown to this build: upgrade metergw")
        }
        if applied.count < known.count {
            throw .schema("the central store's schema is behind this build (\(applied.last ?? "none")): run "
                          + "metergw central migrate --url \(self.url)")
        }
    }

    /// The first column of the first row (every row is read, so the connection is ready for the next query).
    static func scalar<T: PostgresDecodable & Sendable>(_ rows: PostgresRowSequence, as type: T.Type) async throws -> T? {
        var first: T?
        for try await value in rows.decode(T.self) where first == nil { first = value }
        return first
    }

    static let migrationLock: Int64 = 0x6D65_7465_7267_77
}

extension PostgresConnection {
    /// Runs a statement to its end: postgres-nio reports a statement's error only as its rows are read, so a
    /// statement whose rows nobody reads would let the error surface at the next statement instead.
    func execute(_ query: PostgresQuery, logger: Logger) async throws {
        for try await _ in try await self.query(query, logger: logger) {}
    }
}

/// Whether the body or the connection's close came first in ``CentralDatabase/abandoningOnClose(_:)``; read and
/// written on the connection's event loop only.
private final class FirstOnLoop: @unchecked Sendable {
    var taken = false
}
