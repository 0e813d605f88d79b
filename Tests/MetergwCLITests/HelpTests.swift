import Foundation
import Testing

/// `metergw --help` and every subcommand's help, as reviewed golden text: a changed option shows up as a diff.
/// Regenerate with METERGW_REGENERATE_FIXTURES=1 and review the diff.
@Suite struct HelpTests {
    static let directory = CLI.packageRoot.appendingPathComponent("Tests/MetergwCLITests/Fixtures/help")

    static let commands: [[String]] = [
        [], ["ports"], ["scan"], ["read"], ["relay"], ["thresholds"], ["clock", "sync"], ["alarms", "ack"],
        ["topup"], ["card"], ["card", "read"], ["card", "write"], ["sniff"], ["doctor"], ["decode"], ["keys"],
        ["account"], ["meter"], ["tariff"], ["sell"], ["report"], ["report", "meters"], ["report", "alarms"],
        ["db"], ["central"], ["central", "migrate"], ["central", "gateway", "add"], ["serve"], ["status"],
        ["demo"], ["modbus"], ["modbus", "read-holding"], ["modbus", "write-registers"], ["sync", "run"],
        ["sync", "status"], ["central", "sell"], ["central", "orders"], ["central", "conflicts"], ["central", "conflicts", "resolve"],
        ["meter", "set-tariff"], ["card", "upload"], ["card", "replace"],
    ]

    @Test(arguments: commands)
    func helpMatchesGolden(_ command: [String]) throws {
        let r = try CLI.run(command + ["--help"], environment: ["COLUMNS": "100"])
        #expect(r.status == 0, "\(r.stderr)")
        let name = (["metergw"] + command).joined(separator: "-") + ".txt"
        let file = Self.directory.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["METERGW_REGENERATE_FIXTURES"] == "1" {
            try FileManager.default.createDirectory(at: Self.directory, withIntermediateDirectories: true)
            try r.stdout.write(to: file, atomically: true, encoding: .utf8)
        }
        let golden = try String(contentsOf: file, encoding: .utf8)
        #expect(r.stdout == golden, "help of `metergw \(command.joined(separator: " "))` changed: review and regenerate")
    }
}
