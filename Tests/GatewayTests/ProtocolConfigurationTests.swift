import Foundation
import Gateway
import MeterBus
import MetergwTestSupport
import SerialPort
import Testing

/// Modbus and DL/T 645 buses in the configuration: maps, meter names, settings, and every mistake with its line.
@Suite struct ProtocolConfigurationTests {
    static let good = """
        store = "/tmp/b.sqlite"

        [[bus]]
        name = "din"
        device = "/dev/ttyUSB0"
        line = "9600:8N1"
        protocol = "modbus"
        map = "sdm630"
        meters = ["1:40001", "7:40007"]

        [[bus]]
        name = "own"
        device = "/dev/ttyUSB1"
        protocol = "modbus"
        map = "mgwpm1"
        meters = [3, "4:40004"]

        [[bus]]
        name = "utility"
        device = "/dev/ttyUSB2"
        line = "2400:8E1"
        protocol = "dlt645"
        dlt645_password = "04123456"
        dlt645_operator = "01020304"
        dlt645_compat = ["reversed-address"]
        utc_offset_hours = 7
        preamble = 0
        meters = ["000020251125", "990000000001:7", { address = "000012345678", dlt645_compat = [] },
                  { address = "000012345679", serial = 99 }]
        """

    @Test func modbusAndDLT645BusesGiveTheirMapsMetersAndSettings() throws {
        let c = try GatewayConfiguration.parse(Self.good)
        #expect(c.buses.map(\.protocolName) == [.modbus, .modbus, .dlt645])
        #expect(c.buses[0].modbusMap?.name == "sdm630")
        #expect(c.buses[0].meters == .list([.bus(1, serial: 40_001), .bus(7, serial: 40_007)]))
        // mgwpm1 has a serial register: an address alone is enough, the serial is read from the meter.
        #expect(c.buses[1].modbusMap?.name == "mgwpm1")
        #expect(c.buses[1].meters == .list([.bus(3), .bus(4, serial: 40_004)]))
        let utility = c.buses[2]
        #expect(utility.modbusMap == nil)
        // The address is the meter number, and the store serial where it fits.
        #expect(utility.meters == .list([MeterAddress(serial: 20_251_125, station: "000020251125"),
                                         MeterAddress(serial: 7, station: "990000000001"),
                                         MeterAddress(serial: 12_345_678, station: "000012345678"),
                                         MeterAddress(serial: 99, station: "000012345679")]))
        let options = try #require(utility.dlt645)
        #expect(options.password == [0x04, 0x12, 0x34, 0x56] && options.operatorCode == [1, 2, 3, 4])
        #expect(options.compatibility == .reversedAddress)
        // One meter on this bus follows the standard: its own setting overrides the bus's.
        #expect(options.meterCompatibility == ["000012345678": []])
        #expect(options.utcOffsetSeconds == 7 * 3600 && options.preamble == 0)
        #expect(StoreSerial.of(station: "004294967294") == 4_294_967_294)
        #expect(StoreSerial.of(station: "004294967295") == nil && StoreSerial.of(station: "000000000000") == nil)
    }

    @Test func aMapFileIsFoundBesideTheConfiguration() throws {
        let dir = try EmulatorProcess.makeDirectory()
        let map = """
            {"name": "mine", "description": "a test meter", "source": "this test",
             "registers": [{"name": "total", "reading": "register", "table": "holding", "address": 0, "type": "u32",
                            "wordOrder": "big", "unit": "Wh"}]}
            """
        try map.write(to: dir.appendingPathComponent("mine.json"), atomically: true, encoding: .utf8)
        let path = dir.appendingPathComponent("gateway.toml").path
        try """
            store = "/tmp/b.sqlite"
            [[bus]]
            name = "a"
            device = "/dev/ttyUSB0"
            protocol = "modbus"
            map = "mine.json"
            meters = ["2:12"]
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let c = try GatewayConfiguration.load(path: path)
        #expect(c.buses[0].modbusMap?.name == "mine")
    }

    @Test func everyProtocolMistakeIsReportedWithItsLine() {
        let text = """
            store = "/tmp/b.sqlite"

            [[bus]]
            name = "a"
            device = "/dev/ttyUSB0"
            protocol = "modbus"
            map = "sdm631"
            meters = ["1:5"]

            [[bus]]
            name = "b"
            device = "/dev/ttyUSB1"
            protocol = "modbus"
            map = "sdm630"
            meters = [1, "2:0", "3:9", "4:9"]
            dlt645_password = "02000000"

            [[bus]]
            name = "c"
            device = "/dev/ttyUSB2"
            protocol = "dlt645"
            dlt645_password = "0200"
            dlt645_compat = ["backwards"]
            utc_offset_hours = 20
            meters = [123456, "12345", "999999999999", "999999999998", "000000000001", "000000000001"]

            [[bus]]
            name = "d"
            device = "/dev/ttyUSB3"
            map = "sdm630"
            mapp = "x"
            meters = [1]

            [[bus]]
            name = "e"
            device = "/dev/ttyUSB4"
            protocol = "modbus"
            map = "dds238"
            discover = true
            """
        let issues = ConfigurationTests.issues(text)
        func find(_ key: String) -> ConfigurationIssue? { issues.first { $0.key == key } }
        #expect(find("bus[1].map")?.line == 7)
        #expect(find("bus[1].map")?.message.contains("no register map \"sdm631\": expected one of \"dds238\", "
                                                     + "\"mgwpm1\", \"sdm630\"") == true)
        // sdm630 has no serial register: the store's name for the meter must be given.
        #expect(find("bus[2].meters[1]")?.line == 15)
        #expect(find("bus[2].meters[1]")?.message.contains("write \"1:SERIAL\"") == true)
        #expect(find("bus[2].meters[2]")?.message.contains("expected \"ADDRESS:SERIAL\"") == true)
        #expect(find("bus[2].meters[4]")?.message.contains("store serial 9 is listed twice") == true)
        #expect(find("bus[2].dlt645_password")?.line == 16)
        #expect(find("bus[2].dlt645_password")?.message.contains("setting of protocol = \"dlt645\" buses") == true)
        #expect(find("bus[3].dlt645_password")?.line == 22)
        #expect(find("bus[3].dlt645_compat")?.line == 23)
        #expect(find("bus[3].dlt645_compat")?.message.contains("\"reversed-address\"") == true)
        #expect(find("bus[3].utc_offset_hours")?.line == 24)
        #expect(find("bus[3].meters[1]")?.line == 25)
        #expect(find("bus[3].meters[1]")?.message.contains("in quotes") == true)
        #expect(find("bus[3].meters[2]")?.message.contains("found \"12345\"") == true)
        #expect(find("bus[3].meters[3]")?.message.contains("broadcast address") == true)
        #expect(find("bus[3].meters[4]")?.message.contains("too large for a store serial") == true)
        #expect(find("bus[3].meters[6]")?.message.contains("listed twice") == true)
        #expect(find("bus[4].map")?.line == 30)
        #expect(find("bus[4].map")?.message.contains("is protocol = \"native\"") == true)
        #expect(find("bus[4].mapp")?.line == 31)
        #expect(find("bus[4].mapp")?.message.contains("unknown key (did you mean map?)") == true)
        #expect(find("bus[5].discover")?.line == 39)
        #expect(find("bus[5].discover")?.message.contains("no serial register") == true)
        #expect(issues.count == 16, "\(issues.map { "\($0.line ?? 0) \($0.key): \($0.message)" })")
        #expect(issues.allSatisfy { $0.line != nil })
    }

    @Test func aDLT645MeterTableIsCheckedLikeTheRest() {
        let issues = ConfigurationTests.issues("""
            store = "/tmp/b.sqlite"
            [[bus]]
            name = "c"
            device = "/dev/ttyUSB2"
            protocol = "dlt645"
            meters = [{ adress = "000000000001" }, { address = "000000000002", serial = 0 },
                      { address = "000000000003", dlt645_compat = ["sideways"] },
                      { address = "000000000004:5", serial = 6 }]
            """)
        let keys = issues.map(\.key)
        #expect(keys.contains("bus[1].meters[1].adress") && keys.contains("bus[1].meters[1]"))
        #expect(keys.contains("bus[1].meters[2].serial") && keys.contains("bus[1].meters[3].dlt645_compat"))
        #expect(keys.contains("bus[1].meters[4].serial"))
        #expect(issues.count == 5, "\(issues)")
        #expect(issues.allSatisfy { $0.line == 6 })
    }
}
