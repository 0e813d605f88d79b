import BillingStore
import Foundation
import Gateway
import MeterBus
import MeterProtocol
import MetergwTestSupport
import SerialPort
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `metergw serve` with Modbus RTU and DL/T 645 buses: meter-emulator processes in those modes on pseudo-terminals,
/// a real SQLite store. The meters' registers stand still (`--speed 0`), so the store must hold exactly the
/// emulator's values.
@Suite(.serialized) struct ProtocolBusTests {
    /// Two meters with known registers, credit and clock error, as `meter-emulator --config` takes them.
    static func emulatorConfig(_ site: Site, _ name: String, serials: [UInt32], clockOffsets: [Int64] = [0, 0])
        throws -> String
    {
        let meters = serials.enumerated().map { i, serial in
            """
            {"address": \(i + 1), "serial": \(serial), "kind": "electricity", "creditUnits": \(50_000 + 7 * i),
             "registerUnits": \(Self.register(i)), "clockOffsetSeconds": \(clockOffsets[i])}
            """
        }
        let path = site.file("\(name)-meters.json")
        try "{\"meters\": [\(meters.joined(separator: ", "))], \"cardWriters\": []}"
            .write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Registers in Wh that a float32 kWh register (SDM630) carries exactly, and that are not multiples of 10
    /// (DL/T 645 keeps 0.01 kWh).
    static func register(_ i: Int) -> Int { [1_234_567, 2_000_005][i] }

    static func configuration(_ site: Site, links: [String: String]) -> String {
        """
        store = "\(site.storePath)"
        keys = "\(site.keys)"
        metrics = "127.0.0.1:\(site.metricsPort)"
        log_level = "debug"
        clock_drift_limit = "60s"

        [[bus]]
        name = "own"
        device = "\(links["own"]!)"
        line = "9600:8N1"
        protocol = "modbus"
        map = "mgwpm1"
        poll_interval = "300ms"
        timeout = "200ms"
        retries = 1
        meters = [1, 2]

        [[bus]]
        name = "din"
        device = "\(links["din"]!)"
        line = "9600:8N1"
        protocol = "modbus"
        map = "sdm630"
        poll_interval = "300ms"
        timeout = "200ms"
        retries = 1
        meters = ["1:720001", "2:720002"]

        [[bus]]
        name = "utility"
        device = "\(links["utility"]!)"
        line = "9600:8N1"
        protocol = "dlt645"
        poll_interval = "300ms"
        timeout = "200ms"
        retries = 1
        meters = ["000000730001", "000000730002"]

        """
    }

    @Test func modbusAndDLT645MetersArePolledIntoTheStoreWithTheEmulatorsValues() throws {
        let site = try Site()
        var links: [String: String] = [:]
        for (name, serials, mode) in [("own", [UInt32(710_001), 710_002], ["--protocol", "modbus", "--map", "mgwpm1"]),
                                      ("din", [720_001, 720_002], ["--protocol", "modbus", "--map", "sdm630"]),
                                      ("utility", [730_001, 730_002], ["--protocol", "dlt645"])] {
            // The first DL/T 645 meter's clock is an hour fast: the gateway sets it with write data (0x14).
            let offsets: [Int64] = name == "utility" ? [3_600, 0] : [0, 0]
            let config = try Self.emulatorConfig(site, name, serials: serials, clockOffsets: offsets)
            let emulator = try site.addBus(name, meters: 2, arguments: ["--config", config, "--speed", "0",
                                                                       "--line", "9600:8N1"] + mode)
            #expect(emulator.serial(ofAddress: 1) == serials[0])
            links[name] = emulator.link
        }
        let path = site.file("gateway.toml")
        try Self.configuration(site, links: links).write(toFile: path, atomically: true, encoding: .utf8)
        // Remote credit for a DL/T 645 meter: its protocol has no credit command.
        let purchase = try site.sellRemote("utility", 2, amount: "10.00", requestID: "dl-1")
        let (checkStatus, checkOut, checkErr) = try metergw(["serve", "--config", path, "--check"])
        #expect(checkStatus == 0, "\(checkErr)")
        #expect(checkOut.contains("utility: \(links["utility"]!), 9600:8N1, dlt645"))
        #expect(checkOut.contains("din: \(links["din"]!), 9600:8N1, modbus (map sdm630)"))
        // The warning names the meter's line in the file (bus 3's meters, line 37).
        #expect(checkOut.contains("\(path):37: warning: bus[3].meters[2]: meter 000000730002 (store serial 730002) "
                                  + "has 1 queued remote purchase(s), but protocol \"dlt645\" has no remote credit "
                                  + "command"), "\(checkOut)")

        let gateway = try GatewayProcess(config: path, logPath: site.file("gateway.log"))
        for bus in ["own", "din", "utility"] {
            for address in 1...2 {
                try eventually("3 readings of \(bus) meter \(address)\n\(gateway.log)") {
                    try site.readingCount(bus, address) >= 3
                }
            }
        }
        try eventually("the queued credit is reported as blocked\n\(gateway.log)") {
            site.bus("utility")?.meters.first { $0.station == "000000730002" }?.creditBlocked != nil
        }
        try eventually("the DL/T 645 meter's clock is set\n\(gateway.log)") {
            gateway.log.contains("meter clock set")
        }
        let status = try StatusClient.fetch(site.metricsAddress)
        #expect(status.buses.allSatisfy { $0.state == .polling }, "\(status.buses.map(\.lastError))")
        let own = try #require(status.buses.first { $0.name == "own" })
        // mgwpm1's serial register named the meters: the store keys them by it.
        #expect(own.meters.map(\.serial) == [710_001, 710_002] && own.meters.allSatisfy(\.registered))
        let utility = try #require(status.buses.first { $0.name == "utility" })
        #expect(utility.meters.map(\.station) == ["000000730001", "000000730002"])
        #expect(utility.meters.map(\.serial) == [730_001, 730_002] && utility.meters.allSatisfy(\.registered))
        #expect(utility.meters[1].pendingCredit == 1)
        #expect(utility.meters[1].creditBlocked?.contains("dlt645-2007, which has no remote credit command") == true)
        let metrics = String(decoding: try StatusClient.get("/metrics", from: site.metricsAddress), as: UTF8.self)
        #expect(metrics.contains("metergw_credit_deliveries_total{bus=\"utility\",outcome=\"unsupported\"} 1"))
        let (_, table, _) = try metergw(["status", "--config", path])
        #expect(table.contains("000000730002") && table.contains("no remote credit command"), "\(table)")
        #expect(gateway.terminate() == 0)

        for bus in ["own", "din", "utility"] {
            let emulated = try site.emulated(bus)
            for address in 1...2 {
                let readings = try site.store.readings(meterID: try site.meterID(bus, address))
                let last = try #require(readings.last)
                let register = emulated[address]!["register"] as! Int64
                #expect(register == Int64(Self.register(address - 1)))
                // DL/T 645 carries energy in 0.01 kWh: the last digit is not on the wire.
                #expect(last.register == (bus == "utility" ? register - register % 10 : register), "\(bus) \(address)")
                #expect(readings.allSatisfy { $0.register == last.register })
                // Only mgwpm1 reports credit; the others store none rather than a made-up zero.
                let credit = emulated[address]!["credit"] as! Int64
                #expect(last.credit == (bus == "own" ? credit : nil), "\(bus) \(address)")
            }
        }
        // Nothing was sent for the purchase: it is still queued, and the meter's credit is untouched.
        #expect(try site.store.purchase(purchase.id!).state == .queued)
        #expect(try site.emulated("utility")[2]!["credit"] as! Int64 == 50_007)
        #expect(gateway.log.contains("credit not delivered: stays queued"))
        #expect(gateway.log.components(separatedBy: "credit not delivered: stays queued").count == 2,
                "logged once, not once per cycle")

        // The meter's clock is now the gateway's time, read independently of the gateway.
        let port = try SerialPort.open(links["utility"]!)
        _ = try port.configure(try LineSettings(parsing: "9600:8N1"))
        let session = BusSession(transport: port, line: port.settings, options: BusSession.Options())
        let reading = try DLT645Driver(session: session).read(.station("000000730001"))
        session.close()
        try port.close()
        let drift = Int64(reading.meterTime) - Int64(Date().timeIntervalSince1970)
        #expect(abs(drift) < 30, "drift \(drift) s")
        #expect(try site.store.check(full: true).isEmpty)
    }

    /// `discover = true` on a Modbus bus: an address sweep (1...247) finds the two meters, and the map's serial
    /// register names them in the store. The short timeout keeps the 245 silent addresses quick on a pty.
    @Test func modbusDiscoverySweepsTheAddressesAndTheSerialRegisterNamesTheMeters() throws {
        let site = try Site()
        let config = try Self.emulatorConfig(site, "swept", serials: [740_001, 740_002])
        let emulator = try site.addBus("swept", meters: 2, arguments: [
            "--config", config, "--speed", "0", "--line", "9600:8N1", "--protocol", "modbus", "--map", "mgwpm1"])
        let path = site.file("gateway.toml")
        try """
            store = "\(site.storePath)"
            keys = "\(site.keys)"
            metrics = "127.0.0.1:\(site.metricsPort)"
            log_level = "debug"

            [[bus]]
            name = "swept"
            device = "\(emulator.link)"
            line = "9600:8N1"
            protocol = "modbus"
            map = "mgwpm1"
            poll_interval = "300ms"
            timeout = "40ms"
            retries = 1
            discover = true
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let gateway = try GatewayProcess(config: path, logPath: site.file("gateway.log"))
        for address in 1...2 {
            try eventually("2 readings of swept meter \(address)\n\(gateway.log)", timeout: 120) {
                try site.readingCount("swept", address) >= 2
            }
        }
        #expect(gateway.log.contains("discovered"), "\(gateway.log)")
        let line = try #require(gateway.log.split(separator: "\n").first { $0.contains("discovered") })
        #expect(line.contains("meters=2"), "\(line)")
        // One IDENTIFY-like read per address, and nothing answered damaged: exactly 247 requests.
        #expect(line.contains("requests=247"), "\(line)")
        let status = try StatusClient.fetch(site.metricsAddress)
        let bus = try #require(status.buses.first { $0.name == "swept" })
        #expect(bus.meters.map(\.address) == [1, 2])
        #expect(bus.meters.map(\.serial) == [740_001, 740_002] && bus.meters.allSatisfy(\.registered))
        #expect(gateway.terminate() == 0)
        let emulated = try site.emulated("swept")
        for address in 1...2 {
            let last = try #require(try site.store.readings(meterID: try site.meterID("swept", address)).last)
            #expect(last.register == emulated[address]!["register"] as! Int64)
            #expect(last.credit == emulated[address]!["credit"] as? Int64)
        }
    }

    /// `discover = true` on a DL/T 645 bus: read address to the wildcard finds the meter, and its address, as a
    /// number, names it in the store.
    @Test func aDiscoveredDLT645MeterIsStoredUnderItsAddressAsItsSerial() throws {
        let site = try Site()
        let emulator = try site.addBus("found", meters: 1, arguments: ["--protocol", "dlt645", "--line", "9600:8N1"])
        let serial = emulator.serial(ofAddress: 1)
        let station = String(format: "%012u", serial)
        let path = site.file("gateway.toml")
        try """
            store = "\(site.storePath)"
            keys = "\(site.keys)"
            metrics = "127.0.0.1:\(site.metricsPort)"
            log_level = "debug"

            [[bus]]
            name = "found"
            device = "\(emulator.link)"
            line = "9600:8N1"
            protocol = "dlt645"
            poll_interval = "300ms"
            timeout = "200ms"
            discover = true
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let gateway = try GatewayProcess(config: path, logPath: site.file("gateway.log"))
        try eventually("2 readings of the discovered meter\n\(gateway.log)") { try site.readingCount("found", 1) >= 2 }
        let meters = try #require(site.bus("found")?.meters)
        #expect(meters.count == 1 && meters[0].station == station && meters[0].serial == Int64(serial))
        #expect(meters[0].registered && meters[0].address == nil)
        #expect(gateway.terminate() == 0)
        let register = try site.emulated("found")[1]!["register"] as! Int64
        let stored = try #require(try site.store.readings(meterID: try site.meterID("found", 1)).last)
        // The emulator's register moves with its load: the store holds one it read, to 0.01 kWh.
        #expect(stored.register <= register && stored.register % 10 == 0)
    }
}
