import ArgumentParser
import CentralStore
import Foundation
import MeterProtocol

/// `metergw central`: the central PostgreSQL store of a billing centre (docs/CENTRAL.md).
struct CentralCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "central", abstract: "Set up the central PostgreSQL store and the gateways that report to it.",
        subcommands: [Migrate.self, GatewayCommand.self])

    struct Migrate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create or upgrade the central schema (named, append-only migrations; safe to run twice).")
        @OptionGroup var central: CentralOptions
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let url = try self.central.url()
            let (applied, all) = try CentralCLI.run(url) { db in
                (try await db.migrate(), try await db.appliedMigrations())
            }
            StoreCLI.emit(json: self.json, .object([
                ("applied", .array(applied.map { .string($0) })), ("schema", .array(all.map { .string($0) })),
            ])) {
                applied.isEmpty
                    ? ["\(url): schema up to date (\(all.joined(separator: ", ")))"]
                    : ["\(url): applied \(applied.joined(separator: ", "))"]
            }
        }
    }

    struct GatewayCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gateway", abstract: "Register gateways and their logins; list their sync positions.",
            subcommands: [Add.self, List.self])

        struct Add: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Register a gateway and create its PostgreSQL login (needs a user with CREATEROLE).",
                discussion: """
                    The login may only send readings of the gateway's own meters and fetch their remote credit. \
                    Its password comes from --password-file or METERGW_GATEWAY_PASSWORD (never the command line, \
                    which other users see in ps).
                    """)
            @OptionGroup var central: CentralOptions
            @Argument(help: "Gateway name: lower-case letters, digits, '-' and '_', up to 40.") var name: String
            @Option(help: "File holding the gateway login's password (at least 12 characters).")
            var passwordFile: String?
            @Flag(help: "Print one JSON object.") var json = false

            func run() throws {
                let url = try self.central.url()
                let password = try self.password()
                let now = Int64(Date().timeIntervalSince1970)
                let gateway = try CentralCLI.run(url) { db in
                    try await db.addGateway(name: self.name, password: password, now: now)
                }
                StoreCLI.emit(json: self.json, CentralCLI.json(gateway)) {
                    ["gateway \(gateway.name) added (id \(gateway.id)); it logs in as \(gateway.login)"]
                }
            }

            private func password() throws -> String {
                if let path = self.passwordFile {
                    guard let text = FileManager.default.contents(atPath: path) else {
                        throw CLIError(.notFound, "cannot read the password file \(path)")
                    }
                    return String(decoding: text, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                }
                if let password = ProcessInfo.processInfo.environment["METERGW_GATEWAY_PASSWORD"] { return password }
                throw CLIError(.usage, "give the gateway's password with --password-file or METERGW_GATEWAY_PASSWORD")
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Every gateway with the last outbox sequence the centre acknowledged.")
            @OptionGroup var central: CentralOptions
            @Flag(help: "Print one JSON object.") var json = false

            func run() throws {
                let url = try self.central.url()
                let gateways = try CentralCLI.run(url) { try await $0.gateways() }
                StoreCLI.emit(json: self.json, .object([("gateways", .array(gateways.map(CentralCLI.json)))])) {
                    gateways.isEmpty ? ["no gateways"] : gateways.map {
                        "\($0.name)  login \($0.login)  acknowledged up to \($0.ackedSequence)"
                            + ($0.lastError.map { "  last error: \($0)" } ?? "")
                    }
                }
            }
        }
    }
}

/// `--url` for the central store, or METERGW_CENTRAL_URL.
struct CentralOptions: ParsableArguments {
    @Option(name: .customLong("url"),
            help: "postgres://USER@HOST:PORT/DATABASE; password in it or PGPASSWORD (default: $METERGW_CENTRAL_URL).")
    var urlText: String?

    func url() throws -> CentralURL {
        let environment = ProcessInfo.processInfo.environment
        guard let text = self.urlText ?? environment["METERGW_CENTRAL_URL"], !text.isEmpty else {
            throw CLIError(.usage, "name the central store with --url postgres://USER@HOST:PORT/DATABASE or "
                           + "METERGW_CENTRAL_URL")
        }
        do {
            return try CentralURL(parsing: text, environment: environment)
        } catch {
            throw CentralCLI.cliError(error)
        }
    }
}

enum CentralCLI {
    /// Runs async store work from a synchronous command: the work runs as a task while this thread waits.
    static func run<T: Sendable>(
        _ url: CentralURL, _ body: @escaping @Sendable (CentralDatabase) async throws -> T
    ) throws -> T {
        let result: Result<T, any Error> = Blocking.wait {
            do {
                return .success(try await CentralDatabase.with(url) { try await body($0) })
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let value): return value
        case .failure(let error as CentralError): throw Self.cliError(error)
        case .failure(let error): throw error
        }
    }

    static func cliError(_ error: CentralError) -> CLIError {
        let status: ExitStatus
        switch error {
        case .badURL: status = .usage
        case .unreachable: status = .noAnswer
        case .authenticationFailed, .permissionDenied: status = .noPermission
        case .noDatabase: status = .notFound
        case .constraint, .outOfOrder: status = .refused
        case .schema, .server: status = .failure
        }
        return CLIError(status, error.description)
    }

    static func json(_ g: CentralGateway) -> JSONValue {
        .object([
            ("id", .int(g.id)), ("name", .string(g.name)), ("login", .string(g.login)),
            ("createdAt", .int(g.createdAt)), ("ackedSequence", .int(g.ackedSequence)),
            ("lastBatchAt", g.lastBatchAt.map { .int($0) } ?? .null),
            ("lastError", g.lastError.map { .string($0) } ?? .null),
        ])
    }
}
