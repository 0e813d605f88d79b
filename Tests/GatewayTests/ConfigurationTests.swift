import Foundation
import Gateway
import MeterBus
import MetergwTestSupport
import SerialPort
import Testing

@Suite struct ConfigurationTests {
    static let good = """
        store = "/var/lib/metergw/billing.sqlite"
        keys = "/etc/metergw/keys"
        metrics = "127.0.0.1:9500"
        log_level = "notice"
        clock_drift_limit = "2m"

        [[bus]]
        name = "north"
        device = "/dev/serial/by-id/usb-FTDI-if00-port0"
        line = "2400:8E1"
        poll_interval = "15s"
        timeout = "300ms"
        retries = 3
        meters = [1, 2, "7:20251125"]

        [[bus]]
        name = "south"
        udev = "A1B2C3"
        discover = true
        """

    @Test func aGoodFileGivesEveryValue() throws {
        let c = try GatewayConfiguration.parse(Self.good)
        #expect(c.store == "/var/lib/metergw/billing.sqlite")
        #expect(c.keys == "/etc/metergw/keys")
        #expect(c.metrics == ListenAddress(host: "127.0.0.1", port: 9500))
        #expect(c.logLevel == .notice)
        #expect(c.clockDriftLimit == .seconds(120))
        #expect(c.buses.count == 2)
        let north = c.buses[0]
        #expect(north.name == "north")
        #expect(north.device == .path("/dev/serial/by-id/usb-FTDI-if00-port0"))
        #expect(north.line == LineSettings(baudRate: 2400, parity: .even))
        #expect(north.protocolName == .native)
        #expect(north.pollInterval == .seconds(15))
        #expect(north.timeout == .milliseconds(300))
        #expect(north.retries == 3)
        #expect(north.meters == .list([.bus(1), .bus(2), .bus(7, serial: 20_251_125)]))
        let south = c.buses[1]
        #expect(south.device.path == "/dev/metergw/A1B2C3")
        #expect(south.meters == .discover)
        #expect(south.pollInterval == .seconds(60))
        #expect(south.line == LineSettings(baudRate: 9600, parity: .even))
    }

    /// The issues of `text`, as (line, key) pairs and messages.
    static func issues(_ text: String) -> [ConfigurationIssue] {
        do {
            _ = try GatewayConfiguration.parse(text)
            return []
        } catch {
            return error.issues
        }
    }

    @Test func everyProblemIsReportedWithItsLineAndWhatIsExpected() {
        let text = """
            store = "/tmp/b.sqlite"
            metrcs = "127.0.0.1:9000"

            [[bus]]
            name = "north"
            device = "/dev/ttyUSB0"
            poll_interval = 30
            retries = "2"
            meters = [1, 300]

            [[bus]]
            name = "north"
            protocol = "modbus"
            line = "9600:8X1"
            meters = [4]
            """
        let issues = Self.issues(text)
        func find(_ key: String) -> ConfigurationIssue? { issues.first { $0.key == key } }
        #expect(find("metrcs")?.line == 2)
        #expect(find("metrcs")?.message.contains("unknown key (did you mean metrics?)") == true)
        #expect(find("bus[1].poll_interval")?.line == 7)
        #expect(find("bus[1].poll_interval")?.message.contains("expected a duration such as \"30s\"") == true)
        #expect(find("bus[1].poll_interval")?.message.contains("found the integer 30") == true)
        #expect(find("bus[1].retries")?.line == 8)
        #expect(find("bus[1].retries")?.message.contains("expected an integer 0...10, found the string \"2\"") == true)
        #expect(find("bus[1].meters[2]")?.line == 9)
        #expect(find("bus[2].name")?.line == 12)
        #expect(find("bus[2].protocol") == nil)
        #expect(find("bus[2].line")?.line == 14)
        // The second bus has no device, and as a Modbus bus no register map: reported at its table's header.
        let header = issues.filter { $0.key == "bus[2]" }
        #expect(header.allSatisfy { $0.line == 11 } && header.count == 2)
        #expect(header.contains { $0.message.contains("missing device") })
        #expect(header.contains { $0.message.contains("missing map: expected a register map: one of \"dds238\"") })
        #expect(issues.count == 8, "\(issues)")
        // Sorted by line, as --check prints them.
        #expect(issues.map { $0.line ?? 0 } == issues.map { $0.line ?? 0 }.sorted())
    }

    @Test func syntaxErrorsCarryTheirLine() {
        let issues = Self.issues("store = \"/tmp/x\"\n\n[[bus]\nname = \"a\"\n")
        #expect(issues.count == 1)
        #expect(issues.first?.line == 3)
        #expect(issues.first?.message.hasPrefix("not valid TOML") == true)
    }

    @Test func theSmallestMistakesAreCaught() {
        #expect(Self.issues("").map(\.key).sorted() == ["bus", "store"])
        let both = Self.issues("store = \"/x\"\n[[bus]]\nname = \"a\"\ndevice = \"/dev/x\"\nmeters = [1]\ndiscover = true\n")
        #expect(both.map(\.key) == ["bus[1].discover"])
        let open = Self.issues("store = \"/x\"\nmetrics = \"0.0.0.0:9464\"\n[[bus]]\nname = \"a\"\ndevice = \"/dev/x\"\n"
                               + "discover = true\n")
        #expect(open.first?.message.contains("not a loopback address") == true)
        let twice = Self.issues("store = \"/x\"\n[[bus]]\nname = \"a\"\ndevice = \"/dev/x\"\ndiscover = true\n"
                                + "[[bus]]\nname = \"b\"\ndevice = \"/dev/x\"\ndiscover = true\n")
        #expect(twice.map(\.key) == ["bus[2]"])
        #expect(twice.first?.line == 6)
        let badMeter = Self.issues("store = \"/x\"\n[[bus]]\nname = \"a b\"\ndevice = \"dev/x\"\nmeters = [1, 1]\n")
        #expect(badMeter.map(\.key) == ["bus[1].name", "bus[1].device", "bus[1].meters[2]"])
        // Two addresses naming one store meter would merge two meters' readings.
        let sameSerial = Self.issues("store = \"/x\"\n[[bus]]\nname = \"a\"\ndevice = \"/dev/x\"\n"
                                     + "meters = [\"1:5\", \"2:5\"]\n")
        #expect(sameSerial.map(\.key) == ["bus[1].meters[2]"])
        #expect(sameSerial.first?.message.contains("store serial 5 is listed twice") == true)
    }

    @Test func serveCheckPrintsEveryProblemAndExits78() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let path = dir.appendingPathComponent("gateway.toml").path
        let bad = "store = \"/tmp/x.sqlite\"\nlog_level = \"loud\"\n[[bus]]\nname = \"a\"\ndevice = \"/dev/ttyUSB0\"\n"
            + "protocol = \"dlt645\"\nmeters = [1]\ncolour = \"red\"\n"
        try bad.write(toFile: path, atomically: true, encoding: .utf8)
        let (status, out, err) = try metergw(["serve", "--config", path, "--check"])
        #expect(status == 78, "\(out) \(err)")
        #expect(err.contains("\(path):2: log_level: expected one of"))
        #expect(err.contains("\(path):7: bus[1].meters[1]: expected a 12-digit meter address in quotes"))
        #expect(err.contains("\(path):8: bus[1].colour: unknown key"))
        #expect(err.contains("3 problem(s) in \(path)"))

        try Self.good.write(toFile: path, atomically: true, encoding: .utf8)
        let (okStatus, okOut, okErr) = try metergw(["serve", "--config", path, "--check"])
        #expect(okStatus == 0, "\(okErr)")
        #expect(okOut.contains("ok: 2 bus(es)"))
        #expect(okOut.contains("south: udev name A1B2C3 (/dev/metergw/A1B2C3)"))
    }
}
