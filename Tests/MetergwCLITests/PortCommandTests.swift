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
