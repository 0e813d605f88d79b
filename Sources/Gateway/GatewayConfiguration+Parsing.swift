import DLT645Protocol
import Foundation
import Logging
import MeterBus
import MeterProtocol
import ModbusMaps
import ModbusProtocol
import SerialPort
import TOMLKit

extension GatewayConfiguration {
    /// Reads and checks the file at `path`: every problem found, each with its line.
    public static func load(path: String) throws(ConfigurationError) -> GatewayConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            let exists = FileManager.default.fileExists(atPath: path)
            throw ConfigurationError(file: path, issues: [ConfigurationIssue(
                line: nil, key: "",
                message: exists ? "cannot be read: check its permissions (the service user must be able to read it)"
                    : "no such file: give the path of the gateway's TOML configuration (docs/OPERATIONS.md)")])
        }
        return try Self.parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// The folder relative map files are found in: the configuration file's own.
    static func folder(of file: String) -> String {
        let folder = (file as NSString).deletingLastPathComponent
        return folder.isEmpty ? FileManager.default.currentDirectoryPath : folder
    }

    /// Parses and checks a configuration text; `file` names it in messages.
    public static func parse(_ text: String, file: String = "gateway.toml") throws(ConfigurationError)
        -> GatewayConfiguration
    {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigurationError(file: file, issues: [ConfigurationIssue(
                line: error.source.begin.line, key: "", message: "not valid TOML: \(error.description)")])
        } catch {
            throw ConfigurationError(file: file, issues: [ConfigurationIssue(
                line: nil, key: "", message: "not valid TOML: \(error)")])
        }
        var reader = ConfigurationReader(index: TOMLLineIndex(text), folder: Self.folder(of: file))
        let configuration = reader.configuration(root)
        guard reader.issues.isEmpty, let configuration else {
            throw ConfigurationError(file: file, issues: reader.issues.sorted { ($0.line ?? 0) < ($1.line ?? 0) })
        }
        return configuration
    }
}

/// Walks the parsed tables, collecting every problem instead of stopping at the first.
struct ConfigurationReader {
    let index: TOMLLineIndex
    /// Where relative map files are looked up (the configuration file's folder).
    var folder: String = FileManager.default.currentDirectoryPath
    var issues: [ConfigurationIssue] = []
    /// Names and device paths seen so far, so a duplicate is caught even when its bus has other problems.
    var names: Set<String> = []
    var paths: Set<String> = []

    static let topKeys = ["store", "keys", "metrics", "log_level", "clock_drift_limit", "bus", "central"]
    static let centralKeys = ["url", "password_file", "interval", "batch", "rate"]
    static let busKeys = ["name", "device", "udev", "line", "protocol", "poll_interval", "timeout", "retries",
                          "meters", "discover"] + Self.modbusKeys + Self.dlt645Keys
    static let modbusKeys = ["map"]
    static let dlt645Keys = ["dlt645_password", "dlt645_operator", "dlt645_compat", "utc_offset_hours", "preamble"]

    mutating func problem(_ key: String, _ message: String) {
        self.issues.append(ConfigurationIssue(line: self.index.line(of: key), key: key, message: message))
    }

    mutating func configuration(_ root: TOMLTable) -> GatewayConfiguration? {
        self.rejectUnknown(in: root, allowed: Self.topKeys, prefix: "")
        let store = self.string(root, "store", "", required: true, expected: "the billing store's SQLite file path")
        let keys = self.string(root, "keys", "", required: false, expected: "the key file's path")
        var metrics: ListenAddress? = .default
        if let value = root["metrics"] {
            if value.bool == false {
                metrics = nil
            } else if let text = value.string, let address = ListenAddress(parsing: text) {
                if address.isLoopback {
                    metrics = address
                } else {
                    self.problem("metrics", "\(text) is not a loopback address: the endpoint has no authentication, "
                                 + "so it listens on 127.0.0.1, ::1 or localhost only (e.g. \"127.0.0.1:9464\")")
                }
            } else {
                self.problem("metrics", "expected \"HOST:PORT\" on the loopback interface (e.g. \"127.0.0.1:9464\") "
                             + "or false, found \(Self.describe(value))")
            }
        }
        var level = Logger.Level.info
        if let text = self.string(root, "log_level", "", required: false,
                                  expected: "one of \(Self.levelNames)") {
            if let parsed = Logger.Level(rawValue: text.lowercased()) { level = parsed } else {
                self.problem("log_level", "expected one of \(Self.levelNames), found \"\(text)\"")
            }
        }
        var drift: Duration? = .seconds(60)
        if let value = root["clock_drift_limit"] {
            if value.bool == false {
                drift = nil
            } else {
                drift = self.duration(value, key: "clock_drift_limit", range: .seconds(1)...(.seconds(86_400)),
                                      extra: " or false (never set meter clocks)")
            }
        }
        var buses: [BusConfiguration] = []
        if let value = root["bus"] {
            if let array = value.array, array.allSatisfy({ $0.table != nil }), !array.isEmpty {
                for (i, entry) in array.enumerated() {
                    if let bus = self.bus(entry.table!, key: "bus[\(i + 1)]") { buses.append(bus) }
                }
            } else {
                self.problem("bus", "expected one or more [[bus]] tables, found \(Self.describe(value))")
            }
        } else {
            self.problem("bus", "no [[bus]] table: the gateway needs at least one bus to poll")
        }
        var central: CentralSyncSettings?
        if let value = root["central"] {
            if let table = value.table {
                central = self.central(table)
            } else {
                self.problem("central", "expected a [central] table, found \(Self.describe(value))")
            }
        }
        guard let store else { return nil }
        return GatewayConfiguration(store: store, keys: keys, metrics: metrics, logLevel: level,
                                    clockDriftLimit: drift, buses: buses, central: central)
    }

    /// `[central]`: url (required), password_file, interval, batch, rate.
    mutating func central(_ table: TOMLTable) -> CentralSyncSettings? {
        self.rejectUnknown(in: table, allowed: Self.centralKeys, prefix: "central.")
        let url = self.string(table, "url", "central", required: true,
                              expected: "postgres://LOGIN@HOST:PORT/DATABASE (the gateway's own login)")
        if let url, !(url.hasPrefix("postgres://") || url.hasPrefix("postgresql://")) {
            self.problem("central.url", "expected postgres://LOGIN@HOST:PORT/DATABASE, found \"\(url)\"")
        }
        if let url, url.contains("@"), url.split(separator: "@")[0].dropFirst("postgres://".count).contains(":") {
            self.problem("central.url", "put the password in password_file (or PGPASSWORD), not in the URL: "
                         + "the configuration file is readable by more people than the secret should be")
        }
        let passwordFile = self.string(table, "password_file", "central", required: false,
                                       expected: "the path of a file holding the login's password")
        var settings = CentralSyncSettings(url: url ?? "", passwordFile: passwordFile)
        if let value = table["interval"] {
            settings.interval = self.duration(value, key: "central.interval",
                                              range: .seconds(1)...(.seconds(86_400))) ?? settings.interval
        }
        for (key, range) in [("batch", 1...50_000), ("rate", 1...1_000)] {
            guard let value = table[key] else { continue }
            guard let n = value.int, range.contains(n) else {
                self.problem("central.\(key)", "expected a whole number from \(range.lowerBound) to "
                             + "\(range.upperBound), found \(Self.describe(value))")
                continue
            }
            if key == "batch" { settings.batch = n } else { settings.rate = n }
        }
        return url == nil ? nil : settings
    }

    static let levelNames = Logger.Level.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")

    mutating func bus(_ table: TOMLTable, key k: String) -> BusConfiguration? {
        self.rejectUnknown(in: table, allowed: Self.busKeys, prefix: k + ".")
        let name = self.string(table, "name", k, required: true, expected: "a short name for logs and metrics")
        if let name, name.isEmpty || !name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) {
            self.problem("\(k).name", "expected letters, digits, - and _ only (it labels metrics), found \"\(name)\"")
        }
        let path = self.string(table, "device", k, required: false, expected: "a device path such as /dev/ttyUSB0")
        let udev = self.string(table, "udev", k, required: false,
                               expected: "the adapter's name under /dev/metergw (udev/README.md)")
        var device: DeviceReference?
        switch (path, udev) {
        case (let p?, nil):
            if p.hasPrefix("/") { device = .path(p) } else {
                self.problem("\(k).device", "expected an absolute path such as /dev/ttyUSB0, found \"\(p)\"")
            }
        case (nil, let u?):
            if u.isEmpty || u.contains("/") {
                self.problem("\(k).udev", "expected a name under /dev/metergw without slashes, found \"\(u)\"")
            } else {
                device = .udev(u)
            }
        case (_?, _?):
            self.problem("\(k).udev", "give device or udev, not both")
        case (nil, nil):
            if table["device"] == nil && table["udev"] == nil {
                self.problem(k, "missing device: give device = \"/dev/ttyUSB0\" (or a /dev/serial/by-id path) or "
                             + "udev = \"NAME\" for /dev/metergw/NAME")
            }
        }
        var line = LineSettings(baudRate: 9600, parity: .even)
        if let text = self.string(table, "line", k, required: false, expected: "line settings such as \"9600:8E1\"") {
            do { line = try LineSettings(parsing: text) } catch {
                self.problem("\(k).line", "expected BAUD:DATA PARITY STOP such as \"9600:8E1\": \(error)")
            }
        }
        var proto = BusProtocol.native
        if let text = self.string(table, "protocol", k, required: false,
                                  expected: "\"native\", \"modbus\" or \"dlt645\"") {
            if let parsed = BusProtocol(rawValue: text) {
                if DriverFactory.supported.contains(parsed) { proto = parsed } else {
                    self.problem("\(k).protocol", "\"\(text)\" is not supported by this build of metergw (supported: "
                                 + DriverFactory.supported.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                                 + "): upgrade metergw or choose a supported protocol")
                }
            } else {
                self.problem("\(k).protocol", "expected one of "
                             + BusProtocol.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
                             + ", found \"\(text)\"")
            }
        }
        var interval = Duration.seconds(60)
        if let value = table["poll_interval"] {
            interval = self.duration(value, key: "\(k).poll_interval", range: .milliseconds(100)...(.seconds(86_400)))
                ?? interval
        }
        var timeout: Duration?
        if let value = table["timeout"] {
            timeout = self.duration(value, key: "\(k).timeout", range: .milliseconds(1)...(.seconds(60)))
        }
        var retries = 2
        if let value = table["retries"] {
            if let n = value.int, (0...10).contains(n) { retries = n } else {
                self.problem("\(k).retries", "expected an integer 0...10, found \(Self.describe(value))")
            }
        }
        for key in Self.modbusKeys + Self.dlt645Keys where table[key] != nil {
            let owner: BusProtocol = Self.modbusKeys.contains(key) ? .modbus : .dlt645
            if owner != proto {
                self.problem("\(k).\(key)", "\(key) is a setting of protocol = \"\(owner.rawValue)\" buses; this bus "
                             + "is protocol = \"\(proto.rawValue)\": remove it or set the protocol")
            }
        }
        var modbusMap: RegisterMap?
        if proto == .modbus {
            modbusMap = self.registerMap(table, key: k)
        }
        var dlt645: DLT645Driver.Options?
        if proto == .dlt645 {
            dlt645 = self.dlt645Options(table, key: k)
        }
        var meters: MeterSelection?
        let discover = table["discover"]
        if let discover, discover.bool == nil {
            self.problem("\(k).discover", "expected true or false, found \(Self.describe(discover))")
        }
        switch (table["meters"], discover?.bool) {
        case (let list?, let d) where d != true:
            switch proto {
            case .native: meters = self.meterList(list, key: "\(k).meters")
            case .modbus:
                // A map that failed to load was reported already; the list is still checked.
                let serialRegister = modbusMap.map { map in map.registers.contains { $0.reading == "serial" } } ?? true
                meters = self.meterList(list, key: "\(k).meters", bareAddressProblem: serialRegister ? nil : { n in
                    "Modbus meter \(n) needs the serial that names it in the store: the register map has no serial "
                        + "register, so write \"\(n):SERIAL\" (the serial you gave metergw meter add)"
                })
            case .dlt645:
                if let (list, compatibility) = self.dlt645MeterList(list, key: "\(k).meters") {
                    meters = list
                    dlt645?.meterCompatibility = compatibility
                }
            }
        case (nil, true?):
            meters = .discover
            if proto == .modbus, let map = modbusMap, !map.registers.contains(where: { $0.reading == "serial" }) {
                self.problem("\(k).discover", "register map \(map.name) has no serial register, so meters found by "
                             + "an address sweep have no name in the store: list them as meters = [\"1:SERIAL\", ...]")
            }
        case (_?, true?):
            self.problem("\(k).discover", "give meters = [...] or discover = true, not both")
        default:
            if discover == nil || discover?.bool == false {
                let example = switch proto {
                case .native: "meters = [1, 2, \"3:20251125\"] (bus addresses, or ADDRESS:SERIAL)"
                case .modbus: "meters = [\"1:40001\", 2] (bus address:store serial; an address alone where the map "
                    + "has a serial register)"
                case .dlt645: "meters = [\"000020251125\"] (12-digit meter addresses)"
                }
                self.problem(k, "no meters: give \(example) or discover = true")
            }
        }
        if let name, !self.names.insert(name).inserted {
            self.problem("\(k).name", "the name \"\(name)\" is used by another bus")
        }
        if let device, !self.paths.insert(device.path).inserted {
            self.problem(k, "\(device.path) is used by another bus: one bus per adapter")
        }
        guard let name, let device, let meters else { return nil }
        let driver: BusDriverSettings
        switch proto {
        case .native: driver = .native
        case .modbus:
            // A map that failed to load was reported already.
            guard let modbusMap else { return nil }
            driver = .modbus(modbusMap)
        case .dlt645: driver = .dlt645(dlt645 ?? DLT645Driver.Options())
        }
        return BusConfiguration(name: name, device: device, line: line, driver: driver, pollInterval: interval,
                                timeout: timeout, retries: retries, meters: meters)
    }

    // MARK: Modbus and DL/T 645

    /// `map`: a shipped map's name or a JSON map file (relative to the configuration's folder).
    mutating func registerMap(_ table: TOMLTable, key k: String) -> RegisterMap? {
        let names = RegisterMaps.builtInNames.map { "\"\($0)\"" }.joined(separator: ", ")
        guard let text = self.string(table, "map", k, required: true,
                                     expected: "a register map: one of \(names), or a JSON map file (docs/INTEROP.md)")
        else { return nil }
        let isName = RegisterMaps.builtInNames.contains(text)
        let path = isName || text.hasPrefix("/") ? text : (self.folder as NSString).appendingPathComponent(text)
        do {
            return try RegisterMaps.load(path)
        } catch {
            if !isName && !FileManager.default.fileExists(atPath: path) {
                self.problem("\(k).map", "no register map \"\(text)\": expected one of \(names) or the path of a JSON "
                             + "map file (relative paths are from the configuration's folder; docs/INTEROP.md)")
            } else {
                self.problem("\(k).map", "\(error)")
            }
            return nil
        }
    }

    /// `dlt645_password`, `dlt645_operator` (8 hex digits each), `dlt645_compat`, `utc_offset_hours`, `preamble`.
    mutating func dlt645Options(_ table: TOMLTable, key k: String) -> DLT645Driver.Options {
        var options = DLT645Driver.Options()
        for (key, what) in [("dlt645_password", "password level then P0 P1 P2"), ("dlt645_operator", "C0 C1 C2 C3")] {
            guard let text = self.string(table, key, k, required: false, expected: "8 hex digits (\(what))") else {
                continue
            }
            guard let bytes = Self.hexBytes(text, count: 4) else {
                self.problem("\(k).\(key)", "expected 8 hex digits (\(what)) such as \"02000000\", found \"\(text)\"")
                continue
            }
            if key == "dlt645_password" { options.password = bytes } else { options.operatorCode = bytes }
        }
        if let value = table["dlt645_compat"] {
            options.compatibility = self.compatibility(value, key: "\(k).dlt645_compat")
        }
        if let value = table["utc_offset_hours"] {
            if let n = value.int, (-12...14).contains(n) { options.utcOffsetSeconds = n * 3600 } else {
                self.problem("\(k).utc_offset_hours", "expected the meters' local time zone in whole hours east of "
                             + "UTC, -12...14 (China: 8), found \(Self.describe(value))")
            }
        }
        if let value = table["preamble"] {
            if let n = value.int, (0...8).contains(n) { options.preamble = n } else {
                self.problem("\(k).preamble", "expected the number of FE wake-up bytes before each request, 0...8 "
                             + "(default 4), found \(Self.describe(value))")
            }
        }
        return options
    }

    static func hexBytes(_ text: String, count: Int) -> [UInt8]? {
        let chars = Array(text)
        guard chars.count == 2 * count, chars.allSatisfy(\.isHexDigit) else { return nil }
        return stride(from: 0, to: chars.count, by: 2).map { UInt8(String(chars[$0...($0 + 1)]), radix: 16)! }
    }

    /// A native or Modbus bus's meters: `"ADDRESS:SERIAL"` (the serial is the store's name for the meter), or a
    /// bus address alone where the meter reports its serial (native; a Modbus map with a `serial` register).
    /// `bareAddressProblem`: why a bare address is not enough on this bus; nil where it is.
    mutating func meterList(_ value: any TOMLValueConvertible, key: String,
                            bareAddressProblem: ((Int) -> String)? = nil) -> MeterSelection?
    {
        let bareAllowed = bareAddressProblem == nil
        guard let array = value.array, !array.isEmpty else {
            self.problem(key, bareAllowed
                ? "expected a non-empty list of bus addresses 1...247 or \"ADDRESS:SERIAL\" strings, found "
                    + Self.describe(value)
                : "expected a non-empty list of \"ADDRESS:SERIAL\" strings (bus address 1...247, store serial), "
                    + "found \(Self.describe(value))")
            return nil
        }
        var meters: [MeterAddress] = []
        var ok = true
        for (i, item) in array.enumerated() {
            var address: MeterAddress?
            if let n = item.int, (1...247).contains(n) {
                if let problem = bareAddressProblem {
                    self.problem("\(key)[\(i + 1)]", problem(n))
                    ok = false
                    continue
                }
                address = .bus(UInt8(n))
            } else if let text = item.string, let parsed = Self.addressAndSerial(text) {
                address = .bus(parsed.0, serial: parsed.1)
            }
            guard let address else {
                self.problem("\(key)[\(i + 1)]", "expected \"ADDRESS:SERIAL\" (bus address 1...247, store serial "
                             + "1...4294967294)\(bareAllowed ? " or a bus address" : ""), found "
                             + Self.describe(item))
                ok = false
                continue
            }
            ok = self.checkUnique(address, in: meters, key: "\(key)[\(i + 1)]") && ok
            meters.append(address)
        }
        return ok ? .list(meters) : nil
    }

    /// A DL/T 645 bus's meters: 12-digit addresses (the meter number, which is the store serial where it fits),
    /// `"ADDRESS:SERIAL"`, or `{ address = "...", serial = 7, dlt645_compat = [...] }` for a meter whose
    /// deviations differ from the bus's. Also the per-meter deviations, by address.
    mutating func dlt645MeterList(_ value: any TOMLValueConvertible, key: String)
        -> (MeterSelection, [String: DLT645Driver.Compatibility])?
    {
        guard let array = value.array, !array.isEmpty else {
            self.problem(key, "expected a non-empty list of 12-digit meter addresses such as \"000020251125\", "
                         + "found \(Self.describe(value))")
            return nil
        }
        var meters: [MeterAddress] = []
        var compatibility: [String: DLT645Driver.Compatibility] = [:]
        var ok = true
        for (i, item) in array.enumerated() {
            let here = "\(key)[\(i + 1)]"
            var text = item.string
            var givenSerial: (any TOMLValueConvertible)?
            if let table = item.table {
                self.rejectUnknown(in: table, allowed: Self.dlt645MeterKeys, prefix: here + ".")
                text = table["address"]?.string
                givenSerial = table["serial"]
                if let list = table["dlt645_compat"], let address = text {
                    compatibility[address] = self.compatibility(list, key: here + ".dlt645_compat")
                }
                if text == nil {
                    self.problem(here, "expected address = \"000020251125\" (a 12-digit meter address) in the table")
                    ok = false
                    continue
                }
            }
            guard let text else {
                self.problem(here, "expected a 12-digit meter address in quotes such as \"000020251125\" (leading "
                             + "zeros count), found \(Self.describe(item))")
                ok = false
                continue
            }
            guard let meter = self.dlt645Meter(text, serial: givenSerial, key: here) else {
                ok = false
                continue
            }
            ok = self.checkUnique(meter, in: meters, key: here) && ok
            meters.append(meter)
        }
        return ok ? (.list(meters), compatibility) : nil
    }

    static let dlt645MeterKeys = ["address", "serial", "dlt645_compat"]

    /// One DL/T 645 meter: `ADDRESS` or `ADDRESS:SERIAL`, or an address with `serial` given apart.
    mutating func dlt645Meter(_ text: String, serial given: (any TOMLValueConvertible)?, key here: String)
        -> MeterAddress?
    {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let station = parts[0]
        guard parts.count <= 2, let address = DLT645Address(station), station.allSatisfy(\.isNumber) else {
            self.problem(here, "expected a 12-digit meter address such as \"000020251125\" (or "
                         + "\"ADDRESS:SERIAL\"), found \"\(text)\"")
            return nil
        }
        if address.isBroadcast {
            self.problem(here, "\(station) is the broadcast address: list each meter's own address")
            return nil
        }
        var serial = StoreSerial.of(station: station)
        if parts.count == 2 {
            guard let s = UInt32(parts[1]), s >= 1, s < UInt32.max else {
                self.problem(here, "expected a store serial 1...4294967294 after the colon, found \"\(parts[1])\"")
                return nil
            }
            serial = s
        }
        if let given {
            guard parts.count == 1, let n = given.int, (1...4_294_967_294).contains(n) else {
                self.problem(here + ".serial", "expected a store serial 1...4294967294 (and no :SERIAL in the "
                             + "address), found \(Self.describe(given))")
                return nil
            }
            serial = UInt32(n)
        }
        guard let serial else {
            self.problem(here, "meter \(station) is too large for a store serial (1...4294967294): write "
                         + "\"\(station):SERIAL\" with the serial you gave metergw meter add")
            return nil
        }
        return MeterAddress(serial: serial, station: station)
    }

    /// A list of deviation names (`dlt645_compat`); `[]` is a standard meter.
    mutating func compatibility(_ value: any TOMLValueConvertible, key: String) -> DLT645Driver.Compatibility {
        let known = DLT645Driver.Compatibility.names.map { "\"\($0.0)\"" }.joined(separator: ", ")
        var result: DLT645Driver.Compatibility = []
        let items: [any TOMLValueConvertible] = value.array.map { Array($0) } ?? [value]
        for item in items {
            if let text = item.string, !text.contains(","), let flag = DLT645Driver.Compatibility(names: text) {
                result.insert(flag)
            } else {
                self.problem(key, "expected a list of \(known), found \(Self.describe(item))")
            }
        }
        return result
    }

    /// "ADDRESS:SERIAL" with a bus address 1...247 and a store serial.
    static func addressAndSerial(_ text: String) -> (UInt8, UInt32)? {
        let parts = text.split(separator: ":")
        guard parts.count == 2, let a = UInt8(parts[0]), (1...247).contains(a), let s = UInt32(parts[1]), s > 0,
              s < UInt32.max
        else { return nil }
        return (a, s)
    }

    /// No address and no serial twice on one bus.
    mutating func checkUnique(_ meter: MeterAddress, in meters: [MeterAddress], key: String) -> Bool {
        if let station = meter.station, meters.contains(where: { $0.station == station }) {
            self.problem(key, "meter \(station) is listed twice")
            return false
        }
        if let a = meter.busAddress, meters.contains(where: { $0.busAddress == a }) {
            self.problem(key, "bus address \(a) is listed twice")
            return false
        }
        if let s = meter.serial, meters.contains(where: { $0.serial == s }) {
            self.problem(key, "store serial \(s) is listed twice: each meter needs its own")
            return false
        }
        return true
    }

    mutating func rejectUnknown(in table: TOMLTable, allowed: [String], prefix: String) {
        for key in table.keys where !allowed.contains(key) {
            let near = allowed.first { Self.isNear($0, key) }
            self.problem(prefix + key, "unknown key" + (near.map { " (did you mean \($0)?)" } ?? "")
                         + ": expected one of " + allowed.joined(separator: ", "))
        }
    }

    mutating func string(_ table: TOMLTable, _ key: String, _ prefix: String, required: Bool, expected: String)
        -> String?
    {
        let full = prefix.isEmpty ? key : "\(prefix).\(key)"
        guard let value = table[key] else {
            if required { self.problem(prefix.isEmpty ? key : prefix, "missing \(key): expected \(expected)") }
            return nil
        }
        guard let text = value.string else {
            self.problem(full, "expected a string (\(expected)), found \(Self.describe(value))")
            return nil
        }
        return text
    }

    /// "30s", "500ms", "2m", "1h".
    mutating func duration(_ value: any TOMLValueConvertible, key: String, range: ClosedRange<Duration>,
                           extra: String = "") -> Duration? {
        let expected = "a duration such as \"30s\" or \"500ms\" within \(Self.text(range.lowerBound))..."
            + "\(Self.text(range.upperBound))" + extra
        guard let text = value.string, let parsed = Self.parseDuration(text) else {
            self.problem(key, "expected \(expected), found \(Self.describe(value))")
            return nil
        }
        guard range.contains(parsed) else {
            self.problem(key, "expected \(expected), found \"\(text)\"")
            return nil
        }
        return parsed
    }

    static func parseDuration(_ text: String) -> Duration? {
        let digits = text.prefix { $0.isNumber }
        guard let n = Int64(digits), n >= 0 else { return nil }
        switch text.dropFirst(digits.count) {
        case "ms": return .milliseconds(n)
        case "s": return .seconds(n)
        case "m", "min": return .seconds(n * 60)
        case "h": return .seconds(n * 3600)
        default: return nil
        }
    }

    static func text(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms"
    }

    static func describe(_ value: any TOMLValueConvertible) -> String {
        switch value.type {
        case .string: "the string \"\(value.string ?? "")\""
        case .int: "the integer \(value.int ?? 0)"
        case .bool: "\(value.bool ?? false)"
        case .double: "a floating-point number"
        case .array: "an array"
        case .table: "a table"
        default: "a date or time"
        }
    }

    /// A misspelling: one edit apart, or the same letters without _ and -.
    static func isNear(_ a: String, _ b: String) -> Bool {
        let strip = { (s: String) in s.lowercased().filter { $0 != "_" && $0 != "-" } }
        if strip(a) == strip(b) { return true }
        let x = Array(a), y = Array(b)
        guard abs(x.count - y.count) <= 1 else { return false }
        var previous = Array(0...y.count)
        for i in 1...max(1, x.count) where !x.isEmpty {
            var current = [i] + Array(repeating: 0, count: y.count)
            for j in 1...max(1, y.count) where !y.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[y.count] <= 1
    }
}
