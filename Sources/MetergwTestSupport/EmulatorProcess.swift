import Foundation
import KeyStore
import MeterProtocol
import Prepaid
import SerialPort

/// A `meter-emulator` run as a separate process, as a technician or the gateway would meet it.
public final class EmulatorProcess {
    public static var productsDirectory: URL {
        var url = Bundle.main.bundleURL
        while url.path != "/"
            && !FileManager.default.fileExists(atPath: url.appendingPathComponent("meter-emulator").path)
        {
            url = url.deletingLastPathComponent()
        }
        return url
    }

    /// Runs a `meter-emulator` subcommand (status, card, faults...) to its end: its exit status and what it
    /// printed on standard output (and standard error, with `includeErrors`).
    @discardableResult
    public static func command(_ arguments: [String], includeErrors: Bool = false) throws
        -> (status: Int32, output: String)
    {
        let process = Process()
        process.executableURL = Self.productsDirectory.appendingPathComponent("meter-emulator")
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = includeErrors ? out : FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    public let directory: URL
    public let link: String
    public let process = Process()
    let stdout = Pipe()
    let stderr = Pipe()
    /// What the emulator printed on start (`--json`): devices with their serials.
    public private(set) var started: [String: Any] = [:]

    /// A fresh folder with a key file, for one test's emulators.
    public static func makeDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("emu-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        _ = try KeyFile.create(at: dir.appendingPathComponent("keys").path, issuerID: 7)
        return dir
    }

    public init(directory: URL, arguments: [String]) throws {
        self.directory = directory
        self.link = directory.appendingPathComponent("bus").path
        self.process.executableURL = Self.productsDirectory.appendingPathComponent("meter-emulator")
        self.process.arguments = ["--link", self.link, "--keys", directory.appendingPathComponent("keys").path,
                                  "--json"] + arguments
        self.process.standardOutput = self.stdout
        self.process.standardError = self.stderr
        try self.process.run()
        // The first line says the bus is up (a generous guard: the emulator starts in milliseconds).
        let line = try Self.readLine(self.stdout.fileHandleForReading, timeout: 30)
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw Failure("emulator printed no JSON: \(line)")
        }
        self.started = object
    }

    public var devices: [[String: Any]] { self.started["devices"] as? [[String: Any]] ?? [] }

    public func serial(ofAddress address: Int) -> UInt32 {
        UInt32(self.devices.first { $0["address"] as? Int == address }?["serial"] as? Int ?? 0)
    }

    /// The key file the emulator's meters were given.
    public var keyFile: String { self.directory.appendingPathComponent("keys").path }

    public var keys: IssuerKeys { get throws { try KeyFile.load(from: self.keyFile) } }

    public func signer(address: Int) throws -> CommandSigner {
        CommandSigner(keys: try self.keys.meter(serial: self.serial(ofAddress: address), revision: 1))
    }

    /// SIGTERM, then wait for a clean exit.
    @discardableResult
    public func terminate() -> Int32 {
        if self.process.isRunning { self.process.terminate() }
        self.process.waitUntilExit()
        return self.process.terminationStatus
    }

    /// SIGKILL: a crash, as a power cut would be.
    public func kill() {
        if self.process.isRunning { Foundation.kill(self.process.processIdentifier, SIGKILL) }
        self.process.waitUntilExit()
    }

    deinit { self.kill() }

    public var errorOutput: String { String(decoding: self.stderr.fileHandleForReading.availableData, as: UTF8.self) }

    static func readLine(_ handle: FileHandle, timeout: TimeInterval) throws -> String {
        var bytes: [UInt8] = []
        let deadline = Date().addingTimeInterval(timeout)
        let fd = handle.fileDescriptor
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { throw Failure("emulator exited before it started") }
            if byte == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        throw Failure("emulator did not start within \(timeout) s")
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(_ description: String) { self.description = description }
    }
}

/// A deliberately plain master for testing the emulator from outside: write a frame, collect what comes back.
/// (The real bus master, with retries and timing, is tested on its own.)
public final class PlainMaster {
    public let port: SerialPort
    var sequence: UInt8 = 0

    public init(link: String) throws {
        self.port = try SerialPort.open(link)
        _ = try self.port.configure(LineSettings(baudRate: 9600))
    }

    deinit { try? self.port.close() }

    /// Sends `frame` and returns every decoded item that arrives until `quiet` passes with nothing new
    /// (a generous window; tests never assert on time).
    public func exchange(_ frame: Frame, quiet: Duration = .milliseconds(300)) throws -> [DecodedItem] {
        try self.port.flush(.input)
        try self.port.write(frame.encoded(), deadline: .now + .seconds(5))
        return try self.collect(quiet: quiet)
    }

    public func collect(quiet: Duration) throws -> [DecodedItem] {
        var decoder = FrameDecoder()
        var items: [DecodedItem] = []
        while true {
            do {
                decoder.append(try self.port.read(upTo: 4096, deadline: .now + quiet))
            } catch .timeout {
                break
            }
            while let item = decoder.next() { items.append(item) }
        }
        decoder.finish()
        while let item = decoder.next() { items.append(item) }
        return items
    }

    /// The response frames among `items`.
    public static func frames(_ items: [DecodedItem]) -> [Frame] {
        items.compactMap { if case .frame(let f, _) = $0, f.isResponse { f } else { nil } }
    }

    public func nextSequence() -> UInt8 {
        self.sequence &+= 1
        return self.sequence
    }

    /// One request, its one answer decoded as the expected response (or the NAK it got).
    public func ask<R: NativeRequest>(_ request: R, address: UInt8, serial: UInt32 = Frame.anySerial) throws
        -> Result<R.Response, Nak>
    {
        let frame = Frame(request: request, address: address, serial: serial, sequence: self.nextSequence())
        let responses = Self.frames(try self.exchange(frame)).filter { $0.sequence == frame.sequence }
        guard responses.count == 1, let response = responses.first else {
            throw EmulatorProcess.Failure("expected one answer to \(R.command.name), got \(responses.count)")
        }
        switch response.decodeMessage() {
        case .message(let m as R.Response): return .success(m)
        case .nak(let nak): return .failure(nak)
        default: throw EmulatorProcess.Failure("unexpected answer \(response)")
        }
    }
}
