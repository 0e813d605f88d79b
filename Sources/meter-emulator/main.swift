import ArgumentParser
import Foundation
import KeyStore
import MeterEmulator
import MeterProtocol
import ModbusMaps
import Prepaid
import SerialPort

/// `meter-emulator`: prepaid meters and card writers on a pseudo-terminal (docs/EMULATOR.md).
struct MeterEmulatorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "meter-emulator",
        abstract: "Emulate prepaid meters and card writers on a pseudo-terminal bus.",
        subcommands: [Run.self, Card.self, Status.self, Consume.self],
        defaultSubcommand: Run.self)
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a bus of meters at --link until SIGINT or SIGTERM.",
        discussion: """
            Makes LINK a symbolic link to a new pseudo-terminal (as socat pty,link= does) and serves the native \
            protocol there; a control socket LINK.ctl takes cards and status requests (meter-emulator card/status). \
            A stale link left by a crashed run is replaced; anything else at LINK is refused.
            """)

    @Option(help: "Path of the symbolic link to the bus's pseudo-terminal.")
    var link: String

    @Option(help: "Number of electricity meters at addresses 1...N (ignored with --config).")
    var meters: Int = 1

    @Flag(help: "Add a card writer at address 100 (ignored with --config).")
    var cardWriter = false

    @Option(help: "Devices as JSON (docs/EMULATOR.md).")
    var config: String?

    @Option(help: "metergw key file; without it the meters use a random key and refuse everything signed.")
    var keys: String?

    @Option(help: "Keep every device's state in this file, saved atomically; a restart continues from it.")
    var state: String?

    @Option(help: "Consumption runs this many times faster than real time (86400: a day per second; 0: none, registers stand still).")
    var speed: Int = 1

    @Flag(help: "Send replies at line speed, one character time per byte.")
    var pace = false

    @Option(help: "Line settings for pacing and turnaround, e.g. 9600:8E1.")
    var line = "9600:8E1"

    @Option(help: "Answer this many ms after a request (default: 3.5 character times, at least 1 ms).")
    var responseDelayMs: Int?

    @Option(help: "Faults, e.g. corrupt=0.05,drop=0.02,meter3:mute=0.01@2s (docs/EMULATOR.md).")
    var faults: String?

    @Option(help: "Seed for serial numbers, load and faults: the same seed gives the same run.")
    var seed: UInt64 = 1

    @Flag(help: "Print the bus and its devices as one JSON object on start.")
    var json = false

    @Option(help: "The meters' protocol: native, modbus (RTU) or dlt645 (DL/T 645-2007); card writers are native only.")
    var `protocol`: WireProtocol = .native

    @Option(help: "Modbus register map: a shipped name (mgwpm1, sdm630, dds238) or a JSON map file.")
    var map: String = "mgwpm1"

    @Option(help: "DL/T 645 meters' local time, hours east of UTC.")
    var utcOffsetHours: Int = 8

    @Option(help: "DL/T 645: the most value bytes one answer carries; longer values continue in read follow-up (0x12) answers.")
    var dlt645FrameBytes: Int = 200

    enum WireProtocol: String, ExpressibleByArgument, CaseIterable { case native, modbus, dlt645 }

    func validate() throws {
        guard (1...247).contains(self.meters) else { throw ValidationError("--meters must be 1...247") }
        guard self.speed >= 0 else { throw ValidationError("--speed must be 0 (no consumption) or more") }
        guard (-12...14).contains(self.utcOffsetHours) else { throw ValidationError("--utc-offset-hours is -12...14") }
        guard (1...200).contains(self.dlt645FrameBytes) else { throw ValidationError("--dlt645-frame-bytes is 1...200") }
        if let faults { do { _ = try FaultPlan(parsing: faults) } catch { throw ValidationError("\(error)") } }
        do { _ = try LineSettings(parsing: self.line) } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        let config = try self.config.map { try EmulatorConfig.load(path: $0) }
            ?? EmulatorConfig.generated(meters: self.meters, seed: self.seed, cardWriter: self.cardWriter)
        let issuerKeys: IssuerKeys
        if let keys {
            do { issuerKeys = try KeyFile.load(from: keys) } catch {
                throw EmulatorError("\(error.explanation)")
            }
        } else {
            issuerKeys = IssuerKeys(systemKey: SystemKey.generate(), issuerID: 1)
            FileHandle.standardError.write(Data(
                "meter-emulator: no --keys: meters use a random key, so credit and control signed by metergw are refused\n".utf8))
        }
        var options = BusEmulator.Options(
            linkPath: self.link, line: try LineSettings(parsing: self.line), pace: self.pace,
            responseDelay: self.responseDelayMs.map { .milliseconds($0) }, speed: self.speed,
            faults: try self.faults.map { try FaultPlan(parsing: $0) } ?? FaultPlan(), seed: self.seed)
        switch self.protocol {
        case .native: break
        case .modbus:
            do { options.wire = .modbus(ModbusFrontEnd(map: try RegisterMaps.load(self.map))) } catch {
                throw EmulatorError("\(error)")
            }
        case .dlt645:
            var frontEnd = DLT645FrontEnd()
            frontEnd.utcOffsetSeconds = self.utcOffsetHours * 3600
            frontEnd.maxValueBytes = self.dlt645FrameBytes
            options.wire = .dlt645(frontEnd)
        }
        let emulator: Emulator
        do {
            emulator = try Emulator(config: config, keys: issuerKeys, statePath: self.state, options: options)
        } catch let error as SerialError {
            throw EmulatorError("cannot create the bus at \(self.link): \(error)")
        }
        Signals.onTerminate { emulator.stop() }
        if self.json {
            print(emulator.status.rendered())
        } else {
            print("meter-emulator: bus at \(self.link) -> \(emulator.bus.subordinatePath ?? "?"), \(options.line), "
                  + "control socket \(self.link).ctl")
            for device in emulator.bus.withDevices({ $0 }) { print("  \(device.summary.rendered())") }
        }
        fflush(nil)  // a test or script waits for this first output before it talks to the bus
        try emulator.run()
    }
}

/// SIGINT and SIGTERM stop the emulator cleanly: state saved, link and socket removed.
enum Signals {
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []

    static func onTerminate(_ handler: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
    }
}

struct ControlOptions: ParsableArguments {
    @Option(help: "The bus link the emulator was started with (its control socket is LINK.ctl).")
    var link: String

    func send(_ line: String) throws -> String {
        let answer: String
        do { answer = try ControlSocket.request(line, path: self.link + ".ctl") } catch {
            throw EmulatorError("\(error): is meter-emulator running with --link \(self.link)?")
        }
        if answer.contains("\"ok\":false") {
            print(answer)
            throw ExitCode(1)
        }
        return answer
    }
}

struct Card: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Insert, remove or show a card in an emulated card writer, or hold a card to a meter.",
        discussion: """
            insert: into the card writer at --device (default 100), or, when --device is a meter, the meter \
            reads the card, loads its credit and writes its data back; --out saves the card as the meter left it.
            """)

    enum Action: String, ExpressibleByArgument { case insert, remove, show }

    @Argument(help: "insert, remove or show.")
    var action: Action

    @OptionGroup var control: ControlOptions

    @Option(help: "Bus address of the card writer or meter.")
    var device: UInt8 = 100

    @Option(help: "Card image file (binary, 256 bytes) for insert.")
    var file: String?

    @Option(help: "Write the card image that comes back (remove, show, insert into a meter) to this file.")
    var out: String?

    func run() throws {
        var line = "card \(self.action.rawValue) \(self.device)"
        if self.action == .insert {
            guard let file else { throw ValidationError("insert needs --file card.bin") }
            let image = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
            line += " " + hexString(image, separator: "")
        }
        let answer = try self.control.send(line)
        print(answer)
        if let out, let range = answer.range(of: #""card":"([0-9A-F]+)""#, options: .regularExpression) {
            let hex = answer[range].dropFirst(8).dropLast()
            try Data(parseHex(String(hex)) ?? []).write(to: URL(fileURLWithPath: out))
        }
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the emulator's devices and statistics as JSON.")

    @OptionGroup var control: ControlOptions

    func run() throws { print(try self.control.send("status")) }
}

struct Consume: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a meter consume units now (for rehearsals).")

    @OptionGroup var control: ControlOptions

    @Option(help: "Bus address of the meter.")
    var device: UInt8

    @Argument(help: "Units (Wh or L) to consume.")
    var units: UInt64

    func run() throws { print(try self.control.send("consume \(self.device) \(self.units)")) }
}

MeterEmulatorCommand.main()
