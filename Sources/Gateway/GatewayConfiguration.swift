import Foundation
import Logging
import MeterBus
import ModbusProtocol
import SerialPort
import TOMLKit

/// The gateway's configuration: one TOML file (docs/OPERATIONS.md "Configuring").
///
/// ```toml
/// store = "/var/lib/metergw/billing.sqlite"
/// keys = "/etc/metergw/keys"
/// metrics = "127.0.0.1:9464"
/// log_level = "info"
///
/// [[bus]]
/// name = "north"
/// device = "/dev/serial/by-id/usb-FTDI_FT232R_A1B2C3-if00-port0"   # or udev = "A1B2C3" (/dev/metergw/A1B2C3)
/// line = "9600:8E1"
/// protocol = "native"
/// poll_interval = "60s"
/// meters = [1, 2, "3:20251125"]                                    # or discover = true
///
/// [[bus]]
/// name = "din-rail"
/// device = "/dev/metergw/B7C8D9"
/// protocol = "modbus"
/// map = "sdm630"                                                   # or a JSON map file
/// meters = ["1:40001", "2:40002"]                                  # ADDRESS:SERIAL (the map has no serial register)
///
/// [[bus]]
/// name = "utility"
/// udev = "E1F2A3"
/// line = "2400:8E1"
/// protocol = "dlt645"
/// meters = ["000020251125", "990000000001:7"]                      # the address is the serial where it fits
/// ```
public struct GatewayConfiguration: Sendable, Equatable {
    /// The billing store's SQLite file.
    public var store: String
    /// The key file for signed commands (credit, clock); nil: `$XDG_CONFIG_HOME/metergw/keys`.
    public var keys: String?
    /// The loopback address of the metrics and status endpoint; nil: none.
    public var metrics: ListenAddress?
    public var logLevel: Logger.Level
    /// A meter clock further off than this is set to the gateway's time; nil: never set.
    public var clockDriftLimit: Duration?
    public var buses: [BusConfiguration]
    /// Store-and-forward to a central PostgreSQL store; nil: none.
    public var central: CentralSyncSettings?

    public init(store: String, keys: String? = nil, metrics: ListenAddress? = ListenAddress.default,
                logLevel: Logger.Level = .info, clockDriftLimit: Duration? = .seconds(60),
                buses: [BusConfiguration], central: CentralSyncSettings? = nil) {
        self.store = store
        self.keys = keys
        self.metrics = metrics
        self.logLevel = logLevel
        self.clockDriftLimit = clockDriftLimit
        self.buses = buses
        self.central = central
    }
}

/// `[central]`: where the gateway sends its outbox (docs/CENTRAL.md), as this gateway's own login.
public struct CentralSyncSettings: Sendable, Equatable {
    /// `postgres://LOGIN@HOST:PORT/DATABASE`, without the password.
    public var url: String
    /// A file holding the login's password; nil: the PGPASSWORD environment variable.
    public var passwordFile: String?
    public var interval: Duration
    public var batch: Int
    /// Batches per second at most.
    public var rate: Int

    public init(url: String, passwordFile: String? = nil, interval: Duration = .seconds(60), batch: Int = 5_000,
                rate: Int = 20) {
        self.url = url
        self.passwordFile = passwordFile
        self.interval = interval
        self.batch = batch
        self.rate = rate
    }
}

/// One bus: the adapter it is on, its line and protocol, how often and how patiently it is polled, its meters.
public struct BusConfiguration: Sendable, Equatable {
    public var name: String
    public var device: DeviceReference
    public var line: LineSettings
    /// The protocol with what driving it needs: a Modbus bus cannot exist without its register map.
    public var driver: BusDriverSettings
    public var pollInterval: Duration
    /// The longest wait for an answer; nil: the session's calibrated default.
    public var timeout: Duration?
    public var retries: Int
    /// Each meter's bus address or station address, with the serial that names it in the store (native: learned
    /// from IDENTIFY when not given; Modbus: given, or read from the map's `serial` register; DL/T 645: the
    /// address's number, or given).
    public var meters: MeterSelection

    public init(name: String, device: DeviceReference, line: LineSettings = LineSettings(baudRate: 9600,
                parity: .even), driver: BusDriverSettings = .native, pollInterval: Duration = .seconds(60),
                timeout: Duration? = nil, retries: Int = 2, meters: MeterSelection) {
        self.name = name
        self.device = device
        self.line = line
        self.driver = driver
        self.pollInterval = pollInterval
        self.timeout = timeout
        self.retries = retries
        self.meters = meters
    }

    public var protocolName: BusProtocol { self.driver.protocolName }

    /// A Modbus bus's register map (`map`); nil on other buses.
    public var modbusMap: RegisterMap? {
        if case .modbus(let map) = self.driver { map } else { nil }
    }

    /// A DL/T 645 bus's settings; nil on other buses.
    public var dlt645: DLT645Driver.Options? {
        if case .dlt645(let options) = self.driver { options } else { nil }
    }
}

/// A bus's protocol and its settings (`map` for Modbus; `dlt645_password`, `dlt645_compat`, ... for DL/T 645).
public enum BusDriverSettings: Sendable, Equatable {
    case native
    case modbus(RegisterMap)
    case dlt645(DLT645Driver.Options)

    public var protocolName: BusProtocol {
        switch self {
        case .native: .native
        case .modbus: .modbus
        case .dlt645: .dlt645
        }
    }
}

/// How a meter of another protocol is named in the store, which keys meters by a 32-bit serial
/// (docs/OPERATIONS.md "Modbus and DL/T 645 buses").
public enum StoreSerial {
    /// A DL/T 645 meter's address is its meter number: as a number, its serial, where it fits the store's
    /// 1...4294967294 (`000020251125` is serial 20251125); nil for larger addresses, which need `ADDRESS:SERIAL`.
    public static func of(station: String) -> UInt32? {
        guard station.count == 12, station.allSatisfy(\.isNumber), let n = UInt64(station), n >= 1,
              n <= 4_294_967_294
        else { return nil }
        return UInt32(n)
    }
}

/// Where a bus's adapter appears: a device path, or the stable name our udev rules give it
/// (`SYMLINK+="metergw/<serial>"`, udev/README.md).
public enum DeviceReference: Sendable, Hashable, CustomStringConvertible {
    case path(String)
    case udev(String)

    /// The path to open.
    public var path: String {
        switch self {
        case .path(let path): path
        case .udev(let name): "/dev/metergw/" + name
        }
    }

    public var description: String {
        switch self {
        case .path(let path): path
        case .udev(let name): "udev name \(name) (/dev/metergw/\(name))"
        }
    }
}

/// The meters a bus polls: a list, or whatever discovery finds at start (and again when the adapter returns).
public enum MeterSelection: Sendable, Equatable {
    case list([MeterAddress])
    case discover
}

/// The protocol a bus speaks. Every value the configuration accepts is named here; ``DriverFactory`` says which
/// this build can drive.
public enum BusProtocol: String, Sendable, CaseIterable {
    case native
    case modbus
    case dlt645
}

/// `host:port` on the loopback interface.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public static let `default` = ListenAddress(host: "127.0.0.1", port: 9464)

    public var description: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }

    /// "127.0.0.1:9464", "[::1]:9464", "localhost:9464"; nil if it is not that form.
    public init?(parsing text: String) {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                return nil
            }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2 else { return nil }
            (host, port) = (parts[0], parts[1])
        }
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else { return nil }
        self.init(host: String(host), port: number)
    }

    /// Only the loopback interface: the endpoint has no authentication.
    public var isLoopback: Bool {
        self.host == "localhost" || self.host == "::1" || self.host.hasPrefix("127.")
    }
}
