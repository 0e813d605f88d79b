import Foundation
import MeterProtocol
import SerialPort
import Testing

@Suite struct PortsCommandTests {
    /// `ports --json` parses, and the pseudo-terminal this test made is not mistaken for hardware.
    @Test func jsonParsesAndPseudoTerminalsAreNotListed() throws {
        let link = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-ports-\(getpid())").path
        let pair = try PseudoTerminalPair(linkPath: link)
        defer { try? pair.close() }
        let r = try CLI.run(["ports", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let ports = try #require(object?["ports"] as? [[String: Any]])
        #expect(object?["udevDatabase"] is Bool)
        let paths = ports.compactMap { $0["path"] as? String }
        #expect(paths.count == ports.count)
        #expect(!paths.contains(pair.subordinatePath))
        #expect(!paths.contains(link))
        #expect(!paths.contains { $0.hasPrefix("/dev/pts/") || $0 == "/dev/ptmx" || $0.hasPrefix("/dev/tty0") })
        for port in ports {
            #expect(port["sysfsPath"] is String)
            #expect(port.keys.contains("usbId") && port.keys.contains("byId") && port.keys.contains("driver"))
        }
    }

    @Test func humanOutputListsPortsOrSaysNone() throws {
        let r = try CLI.run(["ports"])
        #expect(r.status == 0)
        let enumeration = try SerialPortEnumerator().enumerate()
        if enumeration.ports.isEmpty {
            #expect(r.stdout.contains("no serial ports found"))
        } else {
            for port in enumeration.ports { #expect(r.stdout.contains(port.path)) }
        }
        if !enumeration.udevDatabaseAvailable { #expect(r.stderr.contains("udev database absent")) }
    }
}

@Suite struct SniffCommandTests {
    func frames(_ names: [String]) throws -> [UInt8] {
        try names.flatMap { name in
            parseHex(try String(contentsOf: CLI.fixtures.appendingPathComponent("\(name).hex"), encoding: .utf8))!
        }
    }

    /// A real pseudo-terminal: frames written by the "meter" end are printed live by sniff on the other end, with
    /// the noise between them reported as garbage, and parity dropped with a warning rather than a failure.
    @Test func sniffDecodesFramesFromAPseudoTerminal() throws {
        let link = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-sniff-\(getpid())").path
        let pair = try PseudoTerminalPair(linkPath: link)
        defer { try? pair.close() }
        let stream = [0x00, 0x13] + (try frames(["read-status-request", "read-status-response"]))
        // Write once sniff has the port open: poll for its flock rather than sleeping a fixed time.
        let writer = Thread {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if case .failure(SerialError.busy) = Result(catching: { try SerialPort.open(link).close() }) { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            try? pair.write(stream, deadline: .now + .seconds(5))
        }
        writer.start()
        let r = try CLI.run(["sniff", "--port", link, "--line", "9600:8E1", "--json", "--count", "2",
                             "--duration", "30"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("carries no parity"))
        let objects = try r.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        #expect(objects.map { $0["type"] as? String } == ["garbage", "frame", "frame"])
        #expect(objects.map { $0["command"] as? String } == [nil, "READ_STATUS", "READ_STATUS"])
        #expect(objects.map { $0["direction"] as? String } == [nil, "request", "response"])
        #expect(objects.allSatisfy { $0["time"] is String })
    }

    /// What sniff records, decode --trace and sniff --file replay: the same frames, with their times.
    @Test func recordAndReplayATrace() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-trace-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let link = dir.appendingPathComponent("bus").path
        let trace = dir.appendingPathComponent("bus.trace").path
        let pair = try PseudoTerminalPair(linkPath: link)
        defer { try? pair.close() }
        let stream = try frames(["identify-request", "identify-response"]) + [0x55, 0x7E, 0x01]
        let writer = Thread {
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                if case .failure(SerialError.busy) = Result(catching: { try SerialPort.open(link).close() }) { break }
                Thread.sleep(forTimeInterval: 0.05)
            }
            try? pair.write(stream, deadline: .now + .seconds(5))
        }
        writer.start()
        let live = try CLI.run(["sniff", "--port", link, "--json", "--record", trace, "--duration", "3"])
        #expect(live.status == 0, "\(live.stderr)")
        let recorded = try String(contentsOfFile: trace, encoding: .utf8)
        #expect(recorded.hasPrefix("metergw-trace v1 9600:8N1\n"))

        let decoded = try CLI.run(["decode", "--trace", trace, "--json"])
        #expect(decoded.status == 65)  // the trailing noise and the cut-off frame
        func kinds(_ text: String) -> [String] {
            text.split(separator: "\n").compactMap { line in
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                return (object?["command"] as? String) ?? (object?["type"] as? String)
            }
        }
        // The same frames in the same order; the noise after them is garbage in both (how the run of noise and
        // the cut-off frame split into runs depends on when bytes arrived).
        #expect(kinds(decoded.stdout).filter { $0 != "garbage" } == ["IDENTIFY", "IDENTIFY"])
        #expect(kinds(live.stdout).filter { $0 != "garbage" } == ["IDENTIFY", "IDENTIFY"])
        #expect(kinds(decoded.stdout).last == "garbage" && kinds(live.stdout).last == "garbage")
        let replayed = try CLI.run(["sniff", "--file", trace])
        #expect(replayed.status == 0)
        #expect(replayed.stdout.contains("request   IDENTIFY") && replayed.stdout.contains("response  IDENTIFY"))

        try Data("metergw-trace v1 9600:8N1\n0 7E01\nbanana\n".utf8).write(to: URL(fileURLWithPath: trace))
        let bad = try CLI.run(["decode", "--trace", trace])
        #expect(bad.status == 65 && bad.stderr.contains("line 3: expected MICROSECONDS HEX"))
    }

    @Test func missingPortIsNotFound() throws {
        let r = try CLI.run(["sniff", "--port", "/dev/ttyUSB-metergw-missing", "--duration", "1"])
        #expect(r.status == 66)
        #expect(r.stderr.contains("no such device /dev/ttyUSB-metergw-missing"))
        #expect(r.stderr.contains("metergw ports"))
    }

    @Test func busyPortNamesTheHolder() throws {
        let pair = try PseudoTerminalPair()
        defer { try? pair.close() }
        let held = try SerialPort.open(pair.subordinatePath)
        defer { try? held.close() }
        let r = try CLI.run(["sniff", "--port", pair.subordinatePath, "--duration", "1"])
        #expect(r.status == 75)
        #expect(r.stderr.contains("is busy: held by"))
        #expect(r.stderr.contains("pid \(getpid())"))
    }

    @Test func badLineIsAUsageError() throws {
        let r = try CLI.run(["sniff", "--port", "/dev/null", "--line", "9600:9Q1"])
        #expect(r.status == 64)
    }
}
