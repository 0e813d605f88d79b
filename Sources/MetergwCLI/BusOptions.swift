import ArgumentParser
import Gateway
import KeyStore
import MeterBus
import MeterProtocol
import Prepaid
import SerialPort
#if canImport(Glibc)
import Glibc
#endif

/// Options of every command that talks to meters on a bus: the port and line, and the bus session's timing.
struct BusOptions: ParsableArguments {
    @OptionGroup var port: PortOptions

    @Option(help: "Longest wait for an answer, in ms (default: measured per meter, 50 ms + frame time to start).")
    var timeout: Int?

    @Option(help: "Retries after a lost or damaged answer (the same sequence number and bytes).")
    var retries: Int = 2

    @Flag(name: .shortAndLong, help: "Print every frame sent and received, in hex with its timing.")
    var verbose = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if let timeout, timeout <= 0 || timeout > 60_000 { throw ValidationError("--timeout must be 1...60000 ms") }
        guard (0...10).contains(self.retries) else { throw ValidationError("--retries must be 0...10") }
    }

    /// Opens the port and a bus session on it.
    func session() throws -> BusSession {
        let serial = try self.port.open()
        var options = BusSession.Options()
        options.retries = self.retries
        if let timeout { options.maximumTimeout = .milliseconds(timeout) }
        if self.verbose { options.trace = { event in Output.error("  \(event)") } }
        return BusSession(transport: serial, line: serial.settings, options: options)
    }

    var timeoutDuration: Duration? { self.timeout.map { .milliseconds($0) } }
}

/// `--meter 7` (bus address 1...247) or `--meter 20251125` (a serial), or `--meter 7:20251125` (both must match);
/// with `--protocol dlt645`, the meter's 12-digit address (`--meter 000000123456`).
struct MeterSelector: ExpressibleByArgument, CustomStringConvertible {
    /// The native reading of the argument; a DL/T 645 station for 12 digits beyond a serial's range.
    var address: MeterAddress
    var text: String

    init?(argument: String) {
        self.text = argument
        let parts = argument.split(separator: ":")
        if parts.count == 2, let a = UInt8(parts[0]), (1...247).contains(a), let s = UInt32(parts[1]) {
            self.address = .bus(a, serial: s)
        } else if parts.count == 1, let n = UInt32(argument), n > 0 {
            self.address = n <= 247 ? .bus(UInt8(n)) : .serial(n)
        } else if argument.count == 12, argument.allSatisfy(\.isNumber) {
            self.address = .station(argument)
        } else {
            return nil
        }
    }

    var description: String { self.address.description }

    static var defaultValueDescription: String { "ADDRESS (1-247) | SERIAL | ADDRESS:SERIAL | 12-digit DL/T 645 address" }
}

extension KeyFileSigner {
    /// Reads what the meter accepted last and signs the next command after it: a tool keeps no counter of its
    /// own, so two technicians' tools never collide.
    static func next(for meter: MeterAddress, driver: some MeterDriver, keys: IssuerKeys) throws -> KeyFileSigner {
        let state = try BusFailure.map { () throws(BusError) in try driver.readSequence(meter) }
        return KeyFileSigner(keys: keys, after: state)
    }
}

/// Bus errors in a person's words, with the exit status scripts can tell apart.
enum BusFailure {
    static func map<T>(_ body: () throws(BusError) -> T) throws -> T {
        do { return try body() } catch { throw CLIError(bus: error) }
    }
}

extension CLIError {
    init(bus error: BusError) {
        switch error {
        case .noAnswer: self.init(.noAnswer, error.description)
        case .corrupt, .unexpectedPayload: self.init(.dataError, error.description)
        case .refused, .rejected: self.init(.refused, error.description)
        case .unsupported: self.init(.usage, error.description)
        case .adapterGone: self.init(.ioError, error.description)
        case .serial(let serial): self.init(serial: serial)
        case .cancelled: self.init(.failure, error.description)
        }
    }
}

/// The key file for signed commands, with the default path when none is given.
enum KeyFileOption {
    static func load(_ path: String?) throws -> IssuerKeys {
        guard let path = path ?? KeyFile.defaultPath() else {
            throw CLIError(.notFound, "no key file: pass --keys PATH (create one with metergw keys init)")
        }
        return try Keys.load(path)
    }
}

/// Values with their units for people: 1234567 Wh (1234.567 kWh).
enum Units {
    static func text(_ value: Int64, _ unit: String) -> String { FrameFormatter.text(.quantity(value, unit: unit)) }
}

/// Whether standard error is a terminal (progress bars there; plain lines otherwise).
var standardErrorIsTerminal: Bool { isatty(2) == 1 }
