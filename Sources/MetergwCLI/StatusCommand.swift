import ArgumentParser
import Foundation
import Gateway

/// `metergw status`: a running gateway's buses and meters, from its `/status` endpoint.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a running gateway's buses, meters, last readings, alarms and pending credit.",
        discussion: "Asks the gateway's loopback endpoint (the configuration's metrics address, default "
            + "127.0.0.1:9464).")

    @Option(help: "The gateway's metrics address HOST:PORT (default: from --config, else 127.0.0.1:9464).")
    var address: String?

    @Option(help: "The gateway's TOML configuration, to find its metrics address.")
    var config: String?

    @Flag(help: "Print the status as JSON.")
    var json = false

    func validate() throws {
        if let address, ListenAddress(parsing: address) == nil {
            throw ValidationError("--address must be HOST:PORT, e.g. 127.0.0.1:9464")
        }
    }

    func run() throws {
        var address = ListenAddress.default
        if let text = self.address {
            address = ListenAddress(parsing: text)!
        } else if let config {
            guard let configured = try Serve.load(config).metrics else {
                throw CLIError(.configuration, "\(config) turns the metrics endpoint off (metrics = false): "
                               + "metergw status needs it")
            }
            address = configured
        }
        let status: GatewayStatus
        do {
            status = try StatusClient.fetch(address)
        } catch {
            throw CLIError(.noAnswer, error.description)
        }
        if self.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            Output.line(String(decoding: try encoder.encode(status), as: UTF8.self))
            return
        }
        Output.line(StatusTable.render(status))
    }
}

/// The status as tables for a person.
enum StatusTable {
    static func render(_ s: GatewayStatus) -> String {
        var out = "gateway up \(Self.age(s.now - s.startedAt)), \(s.creditQueueDepth) queued remote purchase(s)\n\n"
        var rows = [["BUS", "STATE", "FOR", "DEVICE", "METERS", "CYCLES", "POLLS", "FAILURES"]]
        for b in s.buses {
            let failures = b.failures.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            rows.append([b.name, b.state.rawValue, Self.age(s.now - b.stateSince), b.device, "\(b.meters.count)",
                         "\(b.cycles)", "\(b.polls)", failures.isEmpty ? "-" : failures])
        }
        out += Self.table(rows)
        for b in s.buses where !b.meters.isEmpty {
            out += "\n\(b.name) (\(b.protocolName), \(b.line))" + (b.lastError.map { ": \($0)" } ?? "") + "\n"
            var meterRows = [["ADDR", "SERIAL", "LAST READING", "REGISTER", "CREDIT", "RELAY", "ALARMS", "PENDING"]]
            for m in b.meters {
                let unit = m.unit ?? ""
                let reading: String
                if let time = m.lastReadingTime {
                    reading = Self.age(s.now - time) + " ago"
                } else {
                    reading = m.lastError == nil ? "none yet" : "failing"
                }
                // DL/T 645 meters have no bus address: their 12-digit address stands in the column.
                let address = m.station ?? m.address.map(String.init) ?? "-"
                var row: [String] = [address, m.serial.map(String.init) ?? "?", reading]
                row.append(m.register.map { Units.text($0, unit) } ?? "-")
                row.append(m.credit.map { Units.text($0, unit) } ?? "-")
                row.append(m.relay ?? "-")
                row.append(m.alarms.isEmpty ? "-" : m.alarms.joined(separator: ","))
                row.append(m.pendingCredit == 0 ? "-" : String(m.pendingCredit))
                if !m.registered { row.append("(not in the store)") }
                meterRows.append(row)
            }
            out += Self.table(meterRows)
            for m in b.meters {
                guard let reason = m.creditBlocked else { continue }
                let name = m.station ?? m.address.map { "meter \($0)" } ?? "serial \(m.serial ?? 0)"
                out += "  \(name): \(m.pendingCredit) remote purchase(s) stay queued: \(reason)\n"
            }
        }
        return out.hasSuffix("\n") ? String(out.dropLast()) : out
    }

    static func age(_ seconds: Int64) -> String {
        let s = max(0, seconds)
        if s < 120 { return "\(s)s" }
        if s < 7200 { return "\(s / 60)m" }
        if s < 172_800 { return "\(s / 3600)h" }
        return "\(s / 86400)d"
    }

    static func table(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return rows.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i],
                                                                                        withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
