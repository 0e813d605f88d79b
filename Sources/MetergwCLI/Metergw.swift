import ArgumentParser

/// The technician's and the service's command: one root with a subcommand per job.
public struct Metergw: ParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "metergw",
        abstract: "Gateway and field tool for prepaid utility meters on RS-485 and USB-serial.",
        discussion: """
            Exit statuses: \(ExitStatus.allCases.map { "\($0.rawValue) \($0.meaning)" }.joined(separator: "; ")).
            """,
        version: Metergw.version,
        subcommands: [
            Ports.self, Scan.self, Read.self, Relay.self, ThresholdsCommand.self, Clock.self, AlarmsCommand.self,
            ModbusCommand.self,
            Topup.self, CardCommand.self, Sniff.self, Doctor.self, Decode.self, Keys.self,
            AccountCommand.self, MeterCommand.self, TariffCommand.self, Sell.self, PurchaseCommand.self,
            PaymentsCommand.self, ReportCommand.self, DatabaseCommand.self, CentralCommand.self, SyncCommand.self,
            Serve.self, StatusCommand.self, Demo.self,
        ]
    )

    public init() {}

    /// Runs the command line, mapping typed errors to their exit statuses and words for a person.
    public static func runMain(_ arguments: [String]? = nil) -> Never {
        do {
            var command = try Self.parseAsRoot(arguments)
            try command.run()
            Self.exit()
        } catch let error as CLIError {
            Output.error("metergw: \(error.message)")
            Self.exit(withError: ExitCode(error.status.rawValue))
        } catch {
            Self.exit(withError: error)
        }
    }
}
