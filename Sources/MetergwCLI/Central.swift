import ArgumentParser
import CentralStore
import Foundation
import BillingStore
import MeterProtocol
import Prepaid

/// `metergw central`: the central PostgreSQL store of a billing centre (docs/CENTRAL.md).
struct CentralCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "central", abstract: "Set up the central PostgreSQL store and the gateways that report to it.",
        subcommands: [Migrate.self, GatewayCommand.self, SellRemote.self, Orders.self, Conflicts.self])

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
            commandName: "gateway",
            abstract: "Register gateways and their logins, say which meters each serves; list their sync positions.",
            subcommands: [Add.self, List.self, Assign.self])

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

extension CentralCommand.GatewayCommand {
    /// `metergw central gateway assign`: which gateway serves a meter, so that its readings are accepted from that
    /// gateway only and credit sold at the centre goes there.
    struct Assign: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Say which gateway serves the given meters (or --none), in one transaction; audited.",
            discussion: """
                A gateway's readings of a meter it does not serve become conflicts, and credit sold at the centre \
                for a meter goes to the gateway that serves it at the sale. Orders still open for a meter's old \
                gateway become conflicts when that gateway asks for them (metergw central conflicts).
                """)
        @OptionGroup var central: CentralOptions
        @Argument(help: "Meter serial numbers.") var meters: [UInt32]
        @Option(help: "The gateway that serves them now.") var gateway: String?
        @Flag(help: "No gateway serves them any more.") var none = false
        @Option(name: .customLong("operator"), help: "Who is acting, for the audit log (default: $USER).")
        var operatorName: String?
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard (self.gateway != nil) != self.none else {
                throw ValidationError("give --gateway NAME or --none")
            }
            guard !self.meters.isEmpty else { throw ValidationError("name at least one meter serial") }
        }

        func run() throws {
            let url = try self.central.url()
            let env = ProcessInfo.processInfo.environment
            let actor = Actor(self.operatorName ?? env["USER"] ?? env["LOGNAME"] ?? "unknown", now: StoreCLI.now)
            let (meters, gateway) = (self.meters, self.gateway)
            let changes = try CentralCLI.run(url) { db in
                try await db.assign(meterSerials: meters, toGateway: gateway, by: actor)
            }
            StoreCLI.emit(json: self.json, .object([("meters", .array(changes.map { c in
                .object([("serial", .int(Int64(c.meterSerial))),
                         ("previous", c.previous.map { .string($0) } ?? .null),
                         ("gateway", c.gateway.map { .string($0) } ?? .null)])
            }))])) {
                changes.map { c in
                    "meter \(c.meterSerial): " + (c.gateway.map { "served by \($0)" } ?? "served by no gateway")
                        + (c.previous == c.gateway ? " (unchanged)" : " (was \(c.previous ?? "none"))")
                }
            }
        }
    }
}

extension CentralCommand {
    /// `metergw central sell`: remote credit sold at the centre, delivered by the meter's gateway.
    struct SellRemote: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sell",
            abstract: "Sell units for a meter at the centre, for its gateway to deliver remotely (exactly once).",
            discussion: """
                The order waits for the gateway that serves the meter now: its next sync fetches it, queues it as a \
                remote purchase with the meter's next purchase sequence, delivers it over the bus and reports the \
                meter's confirmation; the order is then "applied". Give --request-id so a repeated request returns \
                the first order instead of selling twice. An order whose meter moved to another gateway, or whose \
                account closed before delivery, becomes a conflict (metergw central conflicts), never lost. \
                The units and money are taken as given; to price an account's sale with the centre's tariff, \
                as a desk does, use metergw sell --url ... --remote.
                """)
        @OptionGroup var central: CentralOptions
        @Option(help: "The meter's serial number.") var meter: UInt32
        @Option(help: "Units to credit, in the meter's unit (Wh or litres).") var units: UInt64
        @Option(help: "Money paid at the centre, in major units (e.g. 25.00).") var amount: String
        @Option(help: "The money's currency (ISO code).") var currency = "CNY"
        @Option(help: "Idempotency key: the same id never sells twice.") var requestId: String?
        @Option(name: .customLong("operator"), help: "Who is selling, for the audit log (default: $USER).")
        var operatorName: String?
        @Flag(help: "Print the order as one JSON object.") var json = false

        func run() throws {
            let url = try self.central.url()
            let money = try StoreCLI.run { try Amount.parse(self.amount, currency: StoreCurrency.named(self.currency)) }
            let requestID = self.requestId ?? UUID().uuidString.lowercased()
            let env = ProcessInfo.processInfo.environment
            let who = self.operatorName ?? env["USER"] ?? env["LOGNAME"] ?? "unknown"
            let now = StoreCLI.now
            let (meter, units) = (self.meter, self.units)
            let (order, repeated) = try CentralCLI.run(url) { db in
                try await db.sellRemote(meterSerial: meter, units: units, amount: money, requestID: requestID,
                                        operator: who, now: now)
            }
            StoreCLI.emit(json: self.json, .object(CentralCLI.fields(order) + [("repeated", .bool(repeated))])) {
                [(repeated ? "already sold: " : "sold: ")
                    + "order \(order.id) (request \(order.requestID)): \(Amount.units(order.units, order.unitKind)) "
                    + "for meter \(order.meterSerial), paid \(Amount.text(order.amountMinor, order.currency)); "
                    + "gateway \(order.gateway) delivers it (state \(order.state))"]
            }
        }
    }

    /// `metergw central orders`: the remote orders and where each stands.
    struct Orders: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remote credit sold at the centre: pending, accepted by the gateway, applied, refused.")
        @OptionGroup var central: CentralOptions
        @Flag(help: "Only orders not yet confirmed by their meter.") var open = false
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let url = try self.central.url()
            let openOnly = self.open
            let orders = try CentralCLI.run(url) { try await $0.remoteOrders(openOnly: openOnly) }
            StoreCLI.emit(json: self.json, .object([("orders", .array(orders.map { .object(CentralCLI.fields($0)) }))])) {
                orders.isEmpty ? ["no orders"] : orders.map {
                    "order \($0.id)  \($0.state)  meter \($0.meterSerial)  \(Amount.units($0.units, $0.unitKind))  "
                        + "gateway \($0.gateway)" + ($0.sequence.map { "  sequence \($0)" } ?? "")
                        + ($0.refusal.map { "  refused: \($0)" } ?? "") + "  request \($0.requestID)"
                }
            }
        }
    }

    /// `metergw central conflicts`: what a person must settle, and settling it.
    struct Conflicts: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Conflicts for a person: meters moved, accounts closed with credit pending, refused orders.",
            subcommands: [List.self, Resolve.self], defaultSubcommand: List.self)

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "The open conflicts (--all: resolved too).")
            @OptionGroup var central: CentralOptions
            @Flag(help: "Also the resolved ones.") var all = false
            @Flag(help: "Print one JSON object.") var json = false

            func run() throws {
                let url = try self.central.url()
                let all = self.all
                let conflicts = try CentralCLI.run(url) { try await $0.conflicts(all: all) }
                StoreCLI.emit(json: self.json, .object([("conflicts", .array(conflicts.map(CentralCLI.json)))])) {
                    conflicts.isEmpty ? [all ? "no conflicts" : "no open conflicts"] : conflicts.map {
                        "conflict \($0.id)  \($0.kind)  gateway \($0.gateway ?? "-")  meter "
                            + "\($0.meterSerial.map(String.init) ?? "-")  \($0.detail)"
                            + ($0.resolution.map { "  resolved: \($0)" } ?? "")
                    }
                }
            }
        }

        struct Resolve: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Record how a person settled a conflict (once; written to the audit log).",
                discussion: """
                    Settle the cause first (sell again for the gateway that serves the meter now, refund the \
                    customer, correct the meter's gateway), then record what was done here.
                    """)
            @OptionGroup var central: CentralOptions
            @Argument(help: "The conflict's id.") var id: Int64
            @Option(help: "What was done, in words.") var resolution: String
            @Option(name: .customLong("operator"), help: "Who settled it, for the audit log (default: $USER).")
            var operatorName: String?
            @Flag(help: "Print one JSON object.") var json = false

            func run() throws {
                let url = try self.central.url()
                let env = ProcessInfo.processInfo.environment
                let who = self.operatorName ?? env["USER"] ?? env["LOGNAME"] ?? "unknown"
                let (id, resolution, now) = (self.id, self.resolution, StoreCLI.now)
                let conflict = try CentralCLI.run(url) { db in
                    try await db.resolveConflict(id: id, resolution: resolution, operator: who, now: now)
                }
                StoreCLI.emit(json: self.json, CentralCLI.json(conflict)) {
                    ["conflict \(conflict.id) (\(conflict.kind)) resolved: \(resolution)"]
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

    func url() throws -> CentralURL { try Self.url(self.urlText) }

    static func url(_ given: String?) throws -> CentralURL {
        let environment = ProcessInfo.processInfo.environment
        guard let text = given ?? environment["METERGW_CENTRAL_URL"], !text.isEmpty else {
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
        try Blocking.run { try await CentralDatabase.with(url) { try await body($0) } }
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
            ("reportedBacklog", g.reportedBacklog.map { .int($0) } ?? .null), ("openOrders", .int(g.openOrders)),
        ])
    }

    static func json(_ c: CentralConflict) -> JSONValue {
        .object([
            ("id", .int(c.id)), ("gateway", c.gateway.map { .string($0) } ?? .null), ("kind", .string(c.kind)),
            ("meterSerial", c.meterSerial.map { .int($0) } ?? .null), ("detail", .string(c.detail)),
            ("raisedAt", .int(c.raisedAt)), ("resolvedAt", c.resolvedAt.map { .int($0) } ?? .null),
            ("resolution", c.resolution.map { .string($0) } ?? .null),
        ])
    }

    static func fields(_ o: RemoteOrder) -> [(String, JSONValue)] {
        [
            ("id", .int(o.id)), ("requestId", .string(o.requestID)), ("meterSerial", .int(Int64(o.meterSerial))),
            ("gateway", .string(o.gateway)), ("units", .int(o.units)), ("unitKind", .int(o.unitKind)),
            ("amountMinor", .int(o.amountMinor)), ("currency", .string(o.currency)), ("state", .string(o.state)),
            ("sequence", o.sequence.map { .int($0) } ?? .null), ("refusal", o.refusal.map { .string($0) } ?? .null),
            ("createdAt", .int(o.createdAt)), ("deliveredAt", o.deliveredAt.map { .int($0) } ?? .null),
        ]
    }
}
