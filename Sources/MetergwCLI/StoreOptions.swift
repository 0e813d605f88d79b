import ArgumentParser
import BillingStore
import Foundation
import MeterProtocol
import Prepaid

/// Options every billing-store command shares: which database, and who is acting (the audit log's "who").
struct StoreOptions: ParsableArguments {
    @Option(help: "The billing database (default: $METERGW_DB, else $XDG_DATA_HOME/metergw/billing.sqlite).")
    var db: String?

    @Option(name: .customLong("operator"), help: "Who is acting, for the audit log (default: $USER).")
    var operatorName: String?

    var path: String {
        get throws {
            if let db { return db }
            guard let path = BillingDatabase.defaultPath() else {
                throw CLIError(.usage, "no --db given and none of METERGW_DB, XDG_DATA_HOME or HOME is set")
            }
            return path
        }
    }

    func open(migrate: Bool = true) throws -> BillingDatabase {
        let path = try self.path
        return try StoreCLI.run {
            try BillingDatabase.open(path: path, migrate: migrate, crashHook: CrashHook.fromEnvironment())
        }
    }

    /// The acting operator at this moment.
    var actor: Actor {
        let env = ProcessInfo.processInfo.environment
        return Actor(self.operatorName ?? env["USER"] ?? env["LOGNAME"] ?? "unknown", now: StoreCLI.now)
    }
}

/// Test hook (docs/STORE.md "Test hooks"): `METERGW_CRASH_AT=NAME` kills the process with SIGKILL when a store
/// operation reaches the named point, as a power cut or `kill -9` would; unset in production.
enum CrashHook {
    static func fromEnvironment() -> (@Sendable (String) -> Void)? {
        guard let point = ProcessInfo.processInfo.environment["METERGW_CRASH_AT"], !point.isEmpty else { return nil }
        return { reached in
            if reached == point { kill(getpid(), SIGKILL) }
        }
    }

    /// The CLI's own points between the store's transactions and the card writer's or meter's exchanges
    /// (`card-sold`, `card-written`, `card-verified`, `card-marked`, `upload-read`, `topup-sent`, ...).
    static func reach(_ point: String) {
        Self.fromEnvironment()?(point)
    }
}

/// Mapping store errors to exit statuses and words, and shared formatting.
enum StoreCLI {
    /// Now, in Unix seconds; `METERGW_NOW` (a test hook) fixes it for repeatable output.
    static var now: Int64 {
        if let text = ProcessInfo.processInfo.environment["METERGW_NOW"], let t = Int64(text) { return t }
        return Int64(Date().timeIntervalSince1970)
    }

    static func error(_ error: StoreError) -> CLIError {
        let status: ExitStatus
        switch error {
        case .invalidAmount, .amountNotPositive, .currencyMismatch, .buysNoUnits, .sale, .invalidTariff,
             .invalidArgument:
            status = .usage
        case .accountNotFound, .meterNotFound, .tariffNotFound, .purchaseNotFound, .cardNotFound:
            status = .notFound
        case .accountClosed, .accountHasBalance, .accountHasPendingPurchases, .accountHasNoMeter, .meterExists,
             .meterAssigned, .meterHasPendingPurchases, .noTariffInForce, .unitKindMismatch, .meterServedByGateway,
             .deliveredByGateway, .cardForAnotherMeter, .requestUsedByOrder,
             .invalidTransition, .requestConflict, .duplicatePayment:
            status = .refused
        case .forgedWriteBack, .notACardImage, .corrupt:
            status = .dataError
        case .databaseLocked: status = .busy
        case .diskFull, .io, .cannotOpen: status = .ioError
        case .readOnly, .permissionDenied: status = .noPermission
        case .unreachable: status = .noAnswer
        case .constraint, .database, .schema: status = .failure
        }
        return CLIError(status, error.explanation)
    }

    /// Runs a store call, mapping its typed error.
    static func run<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StoreError {
            throw Self.error(error)
        }
    }

    static func money(_ minor: Int64, _ currency: String) -> String { Amount.text(minor, currency) }

    static func moneyJSON(_ minor: Int64, _ currency: String) -> JSONValue {
        .object([("minor", .int(minor)), ("currency", .string(currency)),
                 ("text", .string(Money(minor: minor, StoreCurrency.named(currency)).majorText))])
    }

    static func optional(_ value: Int64?) -> JSONValue { value.map { .int($0) } ?? .null }

    static func accountJSON(_ d: BillingDatabase.AccountDetail) -> JSONValue {
        .object([
            ("id", .int(d.account.id!)), ("number", .int(d.account.number)), ("name", .string(d.customer.name)),
            ("state", .string(d.account.state.rawValue)),
            ("balance", Self.moneyJSON(d.account.balanceMinor, d.account.currency)),
            ("meter", Self.optional(d.meter?.serial)), ("pendingPurchases", .int(Int64(d.pendingPurchases))),
            ("openedAt", .int(d.account.openedAt)), ("closedAt", Self.optional(d.account.closedAt)),
        ])
    }

    static func meterJSON(_ m: Meter) -> JSONValue {
        .object([
            ("serial", .int(m.serial)), ("kind", .string(m.kind)),
            ("unit", .string(UnitKind(rawValue: UInt8(m.unitKind))?.symbol ?? "?")),
            ("bus", m.bus.map { .string($0) } ?? .null), ("address", Self.optional(m.address)),
            ("tariffId", .int(m.tariffId)), ("keyRevision", .int(m.keyRevision)),
            ("account", Self.optional(m.accountId)), ("lastAppliedSequence", .int(m.lastAppliedSequence)),
        ])
    }

    static func purchaseJSON(_ p: Purchase, repeated: Bool? = nil) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("id", .int(p.id!)), ("requestId", .string(p.requestId)), ("account", .int(p.accountId)),
            ("meterId", .int(p.meterId)),
            ("sequence", p.numberedSequence.map { .int($0) } ?? .null), ("mode", .string(p.mode.rawValue)),
            ("state", .string(p.state.rawValue)), ("paid", Self.moneyJSON(p.paidMinor, p.currency)),
            ("balanceUsed", Self.moneyJSON(p.balanceUsedMinor, p.currency)),
            ("fixedCharges", Self.moneyJSON(p.fixedChargesMinor, p.currency)),
            ("value", Self.moneyJSON(p.valueMinor, p.currency)),
            ("remainder", Self.moneyJSON(p.remainderMinor, p.currency)),
            ("units", .object([("count", .int(p.units)), ("unit", .string(p.unitSymbol))])),
            ("tierPosition", .int(p.tierPosition)), ("createdAt", .int(p.createdAt)),
            ("operator", .string(p.operator)),
        ]
        if let repeated { members.append(("repeated", .bool(repeated))) }
        return .object(members)
    }

    /// Prints `json` as one line, or the human lines.
    static func emit(json: Bool, _ value: JSONValue, _ human: () -> [String]) {
        if json {
            Output.line(value.rendered())
        } else {
            for line in human() { Output.line(line) }
        }
    }

    /// "label         value" lines.
    static func table(_ rows: [(String, String)]) -> [String] {
        let width = (rows.map { $0.0.count }.max() ?? 0) + 2
        return rows.map { "  " + $0.0 + String(repeating: " ", count: width - $0.0.count) + $0.1 }
    }
}
