import Foundation
import Testing

/// The independent peers (pymodbus, minimalmodbus, dlt645 from PyPI) in the project's .venv, made by tools/setup.
///
/// Missing peers skip these tests with a message saying so (never a silent pass); with CI=true they fail instead,
/// since CI installs them.
enum Peers {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let python = root.appendingPathComponent(".venv/bin/python").path
    static let scripts = root.appendingPathComponent("tools/peers")

    static let isCI = ProcessInfo.processInfo.environment["CI"] == "true"

    /// Why the peers cannot run, or nil when they can.
    static let missing: String? = {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            return "no \(python): run tools/setup to install the interop peers (pymodbus, minimalmodbus, dlt645)"
        }
        let check = Process()
        check.executableURL = URL(fileURLWithPath: python)
        check.arguments = ["-c", "import pymodbus, minimalmodbus, dlt645, serial"]
        check.standardOutput = FileHandle.nullDevice
        check.standardError = FileHandle.nullDevice
        do { try check.run() } catch { return "cannot run \(python): \(error)" }
        check.waitUntilExit()
        return check.terminationStatus == 0 ? nil
            : "the .venv lacks pymodbus, minimalmodbus or dlt645: run tools/setup (tools/peers-requirements.txt)"
    }()

    /// Runs the tests when the peers are there, or under CI (where their absence fails the test).
    static var enabled: Bool { missing == nil || isCI }

    /// Fails the test under CI when the peers are missing.
    static func require() throws {
        if let missing { throw Failure("interop peers missing under CI=true: \(missing)") }
    }

    /// Where golden captures of the peers' frames live, per codec.
    static func fixture(_ codec: String, _ name: String) -> URL {
        root.appendingPathComponent("Tests/\(codec)Tests/Fixtures/peers/\(name).json")
    }

    static var regenerating: Bool { ProcessInfo.processInfo.environment["METERGW_REGENERATE_FIXTURES"] == "1" }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

/// One peer script as a separate process: servers print "ready" and serve until their stdin closes; clients print
/// one JSON object and exit.
final class PeerProcess {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    let capture: URL

    init(_ script: String, _ arguments: [String]) throws {
        self.capture = FileManager.default.temporaryDirectory
            .appendingPathComponent("peer-\(UUID().uuidString.prefix(8)).json")
        self.process.executableURL = URL(fileURLWithPath: Peers.python)
        self.process.arguments = [Peers.scripts.appendingPathComponent(script).path] + arguments
            + ["--capture", self.capture.path]
        self.process.standardInput = self.input
        self.process.standardOutput = self.output
        self.process.standardError = self.errors
        var environment = ProcessInfo.processInfo.environment
        environment["PYTHONUNBUFFERED"] = "1"
        self.process.environment = environment
        try self.process.run()
    }

    deinit {
        if self.process.isRunning { self.process.terminate() }
    }

    /// The next line of standard output (a generous guard: the peers start in well under a second).
    func line(timeout: TimeInterval = 60) throws -> String {
        var bytes: [UInt8] = []
        let fd = self.output.fileHandleForReading.fileDescriptor
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            var byte: UInt8 = 0
            guard read(fd, &byte, 1) == 1 else { break }
            if byte == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        self.process.terminate()
        let stderr = String(decoding: self.errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        throw Peers.Failure("\(self.process.arguments?.first ?? "peer") printed no line: \(stderr.suffix(2000))")
    }

    func waitUntilReady() throws {
        let line = try self.line()
        guard line == "ready" else { throw Peers.Failure("peer said \(line) instead of ready") }
    }

    /// A client's one JSON object.
    func result() throws -> [String: Any] {
        let line = try self.line()
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw Peers.Failure("peer printed no JSON object: \(line)")
        }
        self.process.waitUntilExit()
        return object
    }

    /// Stops a server (closes its stdin) and waits for it to write its capture.
    func stop() {
        try? self.input.fileHandleForWriting.close()
        self.process.waitUntilExit()
    }

    /// The frames the peer wrote and read, in order: [("tx", bytes), ("rx", bytes)].
    func frames() throws -> [(String, [UInt8])] {
        let data = try Data(contentsOf: self.capture)
        try? FileManager.default.removeItem(at: self.capture)
        guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: String]] else { return [] }
        return list.compactMap { entry in
            guard let (direction, hex) = entry.first else { return nil }
            return (direction, hex.split(separator: " ").compactMap { UInt8($0, radix: 16) })
        }
    }

    /// Saves the capture as a codec fixture when regenerating (METERGW_REGENERATE_FIXTURES=1).
    static func saveFixture(_ frames: [(String, [UInt8])], codec: String, name: String, note: String) throws {
        guard Peers.regenerating else { return }
        let entries = frames.map { direction, bytes in
            "  {\"\(direction)\": \"\(bytes.map { String(format: "%02X", $0) }.joined(separator: " "))\"}"
        }
        let text = "{\n \"source\": \"\(note)\",\n \"frames\": [\n" + entries.joined(separator: ",\n") + "\n ]\n}\n"
        try text.write(to: Peers.fixture(codec, name), atomically: true, encoding: .utf8)
    }
}
