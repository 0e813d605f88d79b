import ArgumentParser
import BillingStore
import CentralStore
import Foundation
import Gateway
import GatewayHTTP
import KeyStore
import Logging
import Prepaid
import ServiceLifecycle
import StoreSync
import UnixSignals

/// `metergw serve`: the gateway service (docs/OPERATIONS.md).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway: poll every bus into the store, deliver queued remote credit, serve metrics.",
        discussion: """
            Reads the TOML configuration (docs/OPERATIONS.md), polls each bus on its own schedule, writes readings, \
            alarm and relay changes to the store, delivers queued remote purchases exactly once, and serves \
            Prometheus metrics at /metrics and the status at /status on the loopback address. SIGTERM or SIGINT \
            finish the exchanges in flight, commit, and exit; SIGHUP reloads the buses from the file. With \
            --check, prints every problem in the file with its line and exits (status 78 when there are any).
            """)

    @Option(help: "The gateway's TOML configuration file.")
    var config: String

    @Flag(help: "Check the configuration, print every problem with its line, and exit.")
    var check = false

    @Option(help: "trace, debug, info, notice, warning, error or critical (default: the file's log_level).")
    var logLevel: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel.lowercased()) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() throws {
        let configuration = try Self.load(self.config)
        if self.check {
            Output.line("\(self.config): ok: \(configuration.buses.count) bus(es)")
            for bus in configuration.buses {
                let meters: String
                switch bus.meters {
                case .discover: meters = "meters by discovery"
                case .list(let list): meters = "\(list.count) meter(s)"
                }
                var proto = bus.protocolName.rawValue
                if let map = bus.modbusMap { proto += " (map \(map.name))" }
                Output.line("  \(bus.name): \(bus.device), \(bus.line), \(proto), every \(bus.pollInterval), \(meters)")
            }
            Self.warnAboutRemoteCredit(configuration, path: self.config)
            return
        }
        let level = self.logLevel.flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? configuration.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var named = Logger(label: "metergw")
        named.logLevel = level
        let logger = named
        let store = try StoreCLI.run {
            try BillingDatabase.open(path: configuration.store, crashHook: CrashHook.fromEnvironment())
        }
        let keys = try Self.keys(configuration, logger: logger)
        let machine = DeviceEventSources.forMachine(devicePaths: configuration.buses.map(\.device.path))
        if machine.udevAbsent {
            logger.notice("""
                udev is not running here (no /run/udev/control): watching /dev and the configured device folders \
                for adapters instead
                """)
        }
        let crash = CrashHook.fromEnvironment()
        let gateway = GatewayService(configuration: configuration, store: store, keys: keys, logger: logger,
                                     deviceSources: machine.sources, crashHook: crash)
        var services: [any Service] = [gateway]
        if let address = configuration.metrics {
            services.append(GatewayEndpoint(gateway: gateway, address: address, logger: logger))
        }
        if let central = configuration.central {
            let metrics = gateway.metrics
            services.append(try Self.syncService(central, store: store, logger: logger) { round in
                metrics.syncRound(ackedSequence: round.ackedSequence, backlog: round.backlog,
                                  lagSeconds: round.lagSeconds, failed: round.failed,
                                  ordersQueued: round.ordersQueued, ordersRefused: round.ordersRefused)
            })
        }
        var groupConfiguration = ServiceGroupConfiguration(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // Well inside systemd's 10 s: the exchange in flight takes at most the bus's timeout times its tries.
        groupConfiguration.maximumGracefulShutdownDuration = .seconds(8)
        groupConfiguration.maximumCancellationDuration = .seconds(1)
        let group = ServiceGroup(configuration: groupConfiguration)
        let path = self.config
        let failure = Blocking.wait {
            await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask {
                    for await _ in await UnixSignalsSequence(trapping: .sighup) {
                        do {
                            gateway.reload(try GatewayConfiguration.load(path: path))
                            logger.notice("SIGHUP: reloading the buses", metadata: ["config": .string(path)])
                        } catch {
                            logger.error("SIGHUP: configuration not reloaded, the running one stays",
                                         metadata: ["problems": .string("\(error)")])
                        }
                    }
                }
                var failure: (any Error)?
                do { try await group.run() } catch { failure = error }
                tasks.cancelAll()
                return failure
            }
        }
        if let failure { throw CLIError(.failure, "gateway stopped on an error: \(failure)") }
    }

    /// Queued remote purchases for meters on buses without remote credit, where the store already exists (the
    /// check never creates or migrates it).
    static func warnAboutRemoteCredit(_ configuration: GatewayConfiguration, path: String) {
        guard configuration.buses.contains(where: { !$0.protocolName.hasRemoteCredit }),
              FileManager.default.fileExists(atPath: configuration.store)
        else { return }
        let text = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
        do throws(StoreError) {
            let store = try BillingDatabase.open(path: configuration.store, migrate: false)
            let warnings = try configuration.remoteCreditWarnings(store: store, text: text)
            for issue in warnings {
                Output.line("\(path)\(issue.line.map { ":\($0)" } ?? ""): warning: \(issue.key): \(issue.message)")
            }
        } catch {
            Output.line("\(path): warning: queued remote credit not checked: the store \(configuration.store) "
                        + "cannot be read (\(error.explanation))")
        }
    }

    /// `[central]`: the outbox's sync to the central store, as this gateway's login.
    static func syncService(_ settings: CentralSyncSettings, store: BillingDatabase, logger: Logger,
                            report: @escaping @Sendable (SyncRoundReport) -> Void) throws -> OutboxSyncService
    {
        var environment = ProcessInfo.processInfo.environment
        if let file = settings.passwordFile {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CLIError(.configuration, "[central] password_file \(file) cannot be read")
            }
            environment["PGPASSWORD"] = String(decoding: data, as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let url: CentralURL
        do {
            url = try CentralURL(parsing: settings.url, environment: environment)
        } catch {
            throw CLIError(.configuration, "[central] url: \(error)")
        }
        var options = OutboxSync.Options()
        options.batchSize = settings.batch
        options.maxBatchesPerSecond = settings.rate
        var named = logger
        named[metadataKey: "central"] = "\(url)"
        return OutboxSyncService(sync: OutboxSync(store: store, central: url, options: options,
                                                  crashHook: CrashHook.fromEnvironment()),
                                 interval: settings.interval, logger: named, report: report)
    }

    /// The configuration, or every problem in it (on standard error) and status 78.
    static func load(_ path: String) throws -> GatewayConfiguration {
        do {
            return try GatewayConfiguration.load(path: path)
        } catch {
            for line in error.description.split(separator: "\n") { Output.error(String(line)) }
            throw CLIError(.configuration, "\(error.issues.count) problem(s) in \(path): fix them and run "
                           + "metergw serve --check --config \(path) again")
        }
    }

    /// The key file for credit and clock commands; without one (none configured and no default) those are off.
    static func keys(_ configuration: GatewayConfiguration, logger: Logger) throws -> IssuerKeys? {
        if let path = configuration.keys { return try Keys.load(path) }
        guard let path = KeyFile.defaultPath(), FileManager.default.fileExists(atPath: path) else {
            logger.warning(
                "no key file (keys = ... in the configuration): remote credit and clock correction are off")
            return nil
        }
        return try Keys.load(path)
    }
}
