import ArgumentParser
import SerialPort

/// The options every command that opens a port shares: `--port` and the line, as `--line 9600:8E1` or piecewise.
struct PortOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Serial device, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    var port: String?

    @Option(help: "Line settings BAUD:DATA PARITY STOP[:FLOW], e.g. 9600:8E1 or 115200:8N1:rtscts.")
    var line: String?

    @Option(help: "Baud rate (overrides --line).")
    var baud: Int?

    @Option(help: "Data bits 5-8 (overrides --line).")
    var dataBits: Int?

    @Option(help: "Parity: none, even, odd, mark or space (overrides --line).")
    var parity: String?

    @Option(help: "Stop bits 1 or 2 (overrides --line).")
    var stopBits: Int?

    @Option(help: "Flow control: none, rtscts or xonxoff (overrides --line).")
    var flow: String?

    /// The default for meters on RS-485: 9600 baud, 8 data bits, even parity, 1 stop bit.
    static let defaultLine = "9600:8E1"

    func lineSettings() throws -> LineSettings {
        do {
            var settings = try LineSettings(parsing: self.line ?? Self.defaultLine)
            if let baud = self.baud {
                guard baud > 0 else { throw ValidationError("--baud must be a positive rate, not \(baud)") }
                settings.baudRate = baud
            }
            if let bits = self.dataBits {
                guard let value = LineSettings.DataBits(rawValue: bits) else {
                    throw ValidationError("--data-bits must be 5, 6, 7 or 8, not \(bits)")
                }
                settings.dataBits = value
            }
            if let parity = self.parity {
                guard let value = LineSettings.Parity.allCases.first(where: { "\($0)" == parity.lowercased() })
                else { throw ValidationError("--parity must be none, even, odd, mark or space, not \(parity)") }
                settings.parity = value
            }
            if let stop = self.stopBits {
                guard let value = LineSettings.StopBits(rawValue: stop) else {
                    throw ValidationError("--stop-bits must be 1 or 2, not \(stop)")
                }
                settings.stopBits = value
            }
            if let flow = self.flow {
                guard let value = LineSettings.FlowControl(rawValue: flow.lowercased()) else {
                    throw ValidationError("--flow must be none, rtscts or xonxoff, not \(flow)")
                }
                settings.flowControl = value
            }
            return settings
        } catch let error as LineSettings.ParseError {
            throw ValidationError("\(error)")
        }
    }

    /// Opens and configures the port; configuration warnings (parity on a pty) go to standard error.
    func open() throws -> SerialPort {
        guard let path = self.port else { throw ValidationError("--port is required, e.g. --port /dev/ttyUSB0") }
        let settings = try self.lineSettings()
        do throws(SerialError) {
            let port = try SerialPort.open(path)
            for warning in try port.configure(settings) { Output.error("metergw: warning: \(warning)") }
            return port
        } catch {
            throw CLIError(serial: error)
        }
    }
}

extension CLIError {
    /// A serial error in a person's words, with the exit status scripts can tell apart.
    init(serial error: SerialError) {
        let status: ExitStatus
        switch error {
        case .notFound: status = .notFound
        case .permissionDenied: status = .noPermission
        case .busy: status = .busy
        case .removed, .system: status = .ioError
        case .timeout: status = .noAnswer
        case .unsupportedSetting, .unsupported, .pathOccupied: status = .failure
        }
        self.init(status, error.description)
    }
}
