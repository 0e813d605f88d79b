import Foundation
import GRDB

/// The billing store (docs/STORE.md): the one type that owns the SQLite database, its connection settings and its
/// migrator. Every operation is one transaction and writes the audit log; every invariant is also a constraint.
///
/// Files open as a `DatabasePool` in WAL mode (readers never block the writer, so `db backup` and reports run
/// while the gateway writes); tests may pass any `DatabaseWriter`, an in-memory `DatabaseQueue` included.
public final class BillingDatabase: Sendable {
    public let writer: any DatabaseWriter

    /// A named point in an operation where a test may kill the process (`METERGW_CRASH_AT`, docs/STORE.md
    /// "Test hooks"). Nil in production: the store never reads the environment itself.
    public let crashHook: (@Sendable (String) -> Void)?

    /// Opens (and migrates) the store over an existing connection.
    /// Opens the store over an existing connection, migrating it unless `migrate` is false (`db migrate` does
    /// that step itself to say what it applied).
    public init(
        _ writer: any DatabaseWriter, migrate: Bool = true, crashHook: (@Sendable (String) -> Void)? = nil
    ) throws(StoreError) {
        self.writer = writer
        self.crashHook = crashHook
        guard migrate else { return }
        do {
            try Self.migrator.migrate(writer)
        } catch {
            throw StoreError(error)
        }
    }

    /// Opens the store file at `path` (created with its folders if missing) in WAL mode and migrates it.
    public static func open(
        path: String, migrate: Bool = true, crashHook: (@Sendable (String) -> Void)? = nil
    ) throws(StoreError) -> BillingDatabase {
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty {
            try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true,
                                                     attributes: [.posixPermissions: 0o700])
        }
        do {
            let pool = try DatabasePool(path: path, configuration: Self.configuration())
            return try BillingDatabase(pool, migrate: migrate, crashHook: crashHook)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(error)
        }
    }

    /// An empty in-memory store (tests, demos).
    public static func inMemory() throws(StoreError) -> BillingDatabase {
        do {
            return try BillingDatabase(DatabaseQueue(configuration: Self.configuration()))
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(error)
        }
    }

    /// Foreign keys on, a busy timeout instead of an immediate "database is locked", WAL for pools.
    public static func configuration(busyTimeout: TimeInterval = 5) -> Configuration {
        var config = Configuration()
        config.foreignKeysEnabled = true
        config.busyMode = .timeout(busyTimeout)
        config.label = "metergw.billing"
        config.prepareDatabase { db in
            // Durable commits in WAL mode: a committed sale survives power loss, not only a process crash.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        return config
    }

    /// `$METERGW_DB`, else `$XDG_DATA_HOME/metergw/billing.sqlite`, else `~/.local/share/metergw/billing.sqlite`.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let path = environment["METERGW_DB"], !path.isEmpty { return path }
        if let data = environment["XDG_DATA_HOME"], !data.isEmpty { return data + "/metergw/billing.sqlite" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.local/share/metergw/billing.sqlite" }
        return nil
    }

    // MARK: Transactions

    /// Runs `body` in one IMMEDIATE transaction (the write lock is taken up front, so two processes selling at once
    /// queue instead of failing half-way), mapping SQLite's errors to `StoreError`.
    func write<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try self.writer.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    self.crash("before-commit")
                    return .commit
                }
                self.crash("after-commit")
                return result!
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(error)
        }
    }

    func read<T>(_ body: (Database) throws -> T) throws(StoreError) -> T {
        do {
            return try self.writer.read(body)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(error)
        }
    }

    /// Calls the crash hook at a named point (a test hook; a no-op in production).
    func crash(_ point: String) { self.crashHook?(point) }

    /// Applies pending migrations and names those applied, for `metergw db migrate`.
    public func migrate() throws(StoreError) -> (applied: [String], all: [String]) {
        do {
            let before = try self.writer.read { try Self.migrator.appliedIdentifiers($0) }
            try Self.migrator.migrate(self.writer)
            return (Self.migrator.migrations.filter { !before.contains($0) }, Self.migrator.migrations)
        } catch {
            throw StoreError(error)
        }
    }

    /// The schema's applied migrations, oldest first.
    public func appliedMigrations() throws(StoreError) -> [String] {
        try self.read { db in try Self.migrator.appliedIdentifiers(db).sorted() }
    }

    /// Copies the live database to `path` with SQLite's online backup API; the gateway may keep writing meanwhile
    /// (the copy is a consistent snapshot of one moment).
    public func backup(to path: String) throws(StoreError) {
        do {
            let destination = try DatabaseQueue(path: path)
            try self.writer.backup(to: destination)
            try destination.close()
        } catch {
            throw StoreError(error)
        }
    }
}
