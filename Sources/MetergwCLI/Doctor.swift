import ArgumentParser
import Foundation
import MeterProtocol
import SerialPort

/// `metergw doctor`: checks a port before a technician blames the meter.
struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a serial port and the bus behind it, and say what to fix.",
        discussion: """
            Checks that the port exists and this user may open it (and which group to join if not), who else \
            holds it, that line settings are taken as set, RS-485 support, the USB adapter and its latency timer, \
            whether the adapter echoes what we send, and whether anything answers at the usual line settings. \
            Exit status 0 when nothing failed; 1 when a check failed (each says what to do).
            """)

    @Option(name: .shortAndLong, help: "Serial device, e.g. /dev/ttyUSB0.")
    var port: String

    @Option(help: "The line settings the meters should use.")
    var line = "9600:8E1"

    @Flag(help: "Print the findings as JSON.")
    var json = false

    struct Finding {
        enum Status: String { case ok, info, warning, failed }
        var check: String
        var status: Status
        var detail: String
        var fix: String?
    }

    /// Line settings meters commonly use, tried when looking for anything that answers.
    static let usualLines = ["9600:8E1", "9600:8N1", "2400:8E1", "4800:8E1", "19200:8E1", "115200:8N1"]

    func run() throws {
        var findings: [Finding] = []
        defer { self.report(findings) }
        guard let line = try? LineSettings(parsing: self.line) else {
            throw ValidationError("--line \(self.line) is not BAUD:DPS, e.g. 9600:8E1")
        }

        // Exists, and what it is.
        var info = stat()
        guard stat(self.port, &info) == 0 else {
            findings.append(Finding(check: "exists", status: .failed, detail: "\(self.port) does not exist",
                                    fix: "plug in the adapter, check `dmesg | tail`, list ports with metergw ports"))
            throw ExitCode(1)
        }
        guard info.st_mode & S_IFMT == S_IFCHR else {
            findings.append(Finding(check: "exists", status: .failed, detail: "\(self.port) is not a device",
                                    fix: "name the tty device, e.g. /dev/ttyUSB0"))
            throw ExitCode(1)
        }
        findings.append(Finding(check: "exists", status: .ok, detail: "\(self.port) is a character device"))

        // Permission.
        if access(self.port, R_OK | W_OK) != 0 {
            let group = getgrgid(info.st_gid).map { String(cString: $0.pointee.gr_name) } ?? "gid \(info.st_gid)"
            findings.append(Finding(check: "permission", status: .failed, detail: "this user may not open it (group \(group))",
                                    fix: "sudo usermod -aG \(group) $USER, then log in again; or install udev/ rules"))
            throw ExitCode(1)
        }
        findings.append(Finding(check: "permission", status: .ok, detail: "this user may read and write it"))

        // Who else has it.
        let others = DeviceHolder.holders(of: self.port).filter { $0.pid != getpid() }
        findings.append(others.isEmpty
            ? Finding(check: "holders", status: .ok, detail: "no other program has it open")
            : Finding(check: "holders", status: .warning,
                      detail: "held by \(others.map(\.description).joined(separator: ", "))",
                      fix: "stop that program (a gateway service, a terminal program) before testing"))

        // Open, configure, read back.
        let serial: SerialPort
        do {
            serial = try SerialPort.open(self.port)
            let warnings = try serial.configure(line)
            let back = try serial.readSettings()
            findings.append(Finding(check: "line settings", status: warnings.isEmpty ? .ok : .warning,
                                    detail: "asked \(line), device has \(back)"
                                        + warnings.map { ": \($0)" }.joined(),
                                    fix: warnings.isEmpty ? nil : "use a real adapter for parity checks in the field"))
        } catch {
            findings.append(Finding(check: "open", status: .failed, detail: "\(error)", fix: nil))
            throw ExitCode(1)
        }
        defer { try? serial.close() }

        // RS-485 mode.
        do {
            let rs485 = try serial.rs485Settings()
            findings.append(Finding(check: "RS-485", status: .info,
                                    detail: rs485.isEnabled ? "kernel RS-485 mode is on" : "kernel RS-485 mode is off "
                                        + "(fine for adapters that switch direction themselves)"))
        } catch .unsupported {
            findings.append(Finding(check: "RS-485", status: .info,
                                    detail: "no kernel RS-485 mode (USB adapters switch direction themselves; a "
                                        + "pseudo-terminal has none)"))
        } catch {
            findings.append(Finding(check: "RS-485", status: .warning, detail: "\(error)"))
        }

        // The adapter and its latency timer.
        findings.append(self.adapterFinding())

        // Echo: a DISCOVER no meter matches (serial 0 is never assigned); does our own frame come back?
        let probe = Frame(request: DiscoverRequest(prefixBits: 32, prefix: 0), address: 0, sequence: 0xD0).encoded()
        let heard = (try? self.exchange(serial, probe, window: .milliseconds(150))) ?? []
        if heard.starts(with: probe) {
            findings.append(Finding(check: "echo", status: .info,
                                    detail: "the adapter echoes what we send (half-duplex without echo suppression); "
                                        + "metergw skips the echo by itself"))
        } else {
            findings.append(Finding(check: "echo", status: .ok, detail: "the adapter does not echo what we send"))
        }

        // Anything answering at the usual settings: DISCOVER with an empty prefix asks every meter.
        var answering: [String] = []
        let everyone = Frame(request: DiscoverRequest(prefixBits: 0, prefix: 0), address: 0, sequence: 0xD1).encoded()
        for text in Self.usualLines {
            guard let settings = try? LineSettings(parsing: text), (try? serial.configure(settings)) != nil else { continue }
            let bytes = (try? self.exchange(serial, everyone, window: .milliseconds(250))) ?? []
            let answer = heard.starts(with: probe) ? Array(bytes.dropFirst(everyone.count)) : bytes
            if answer.isEmpty { continue }
            let frames = FrameDecoder.decodeAll(answer).compactMap { item -> Frame? in
                if case .frame(let f, _) = item, f.isResponse { f } else { nil }
            }
            answering.append(frames.count == 1 ? "\(text) (meter serial \(frames[0].serial))"
                             : "\(text) (\(answer.count) B: several meters at once, or another protocol)")
        }
        _ = try? serial.configure(line)
        findings.append(answering.isEmpty
            ? Finding(check: "answers", status: .warning,
                      detail: "nothing answered a DISCOVER at \(Self.usualLines.joined(separator: ", "))",
                      fix: "check power, the A/B wires (swap them if unsure), termination, and the meters' protocol "
                        + "(Modbus or DL/T 645 meters do not answer DISCOVER)")
            : Finding(check: "answers", status: .ok, detail: "answers at " + answering.joined(separator: "; ")))
        if findings.contains(where: { $0.status == .failed }) { throw ExitCode(1) }
    }

    /// Sends `bytes` and collects whatever arrives within `window`.
    private func exchange(_ serial: SerialPort, _ bytes: [UInt8], window: Duration) throws(SerialError) -> [UInt8] {
        try serial.flush(.input)
        try serial.write(bytes, deadline: .now + .seconds(2))
        var received: [UInt8] = []
        let end = ContinuousClock.now + window
        var open = true
        while open {
            switch Result(catching: { () throws(SerialError) in try serial.read(upTo: 4096, deadline: end) }) {
            case .success(let chunk): received += chunk
            case .failure(.timeout): open = false
            case .failure(let error): throw error
            }
        }
        return received
    }

    private func adapterFinding() -> Finding {
        let resolved = (try? FileManager.default.destinationOfSymbolicLink(atPath: self.port))
            .map { $0.hasPrefix("/") ? $0 : ((self.port as NSString).deletingLastPathComponent as NSString)
                .appendingPathComponent($0) } ?? self.port
        guard let enumeration = try? SerialPortEnumerator().enumerate(),
            let info = enumeration.ports.first(where: { $0.path == resolved || $0.byIDPath == self.port })
        else {
            return Finding(check: "adapter", status: .info, detail: "not a known serial adapter (a pseudo-terminal or "
                           + "a device metergw ports does not list)")
        }
        var detail = [info.driver, info.usbID, info.manufacturer, info.product].compactMap { $0 }.joined(separator: ", ")
        let timer = "/sys/bus/usb-serial/devices/\(info.name)/latency_timer"
        if let text = try? String(contentsOfFile: timer, encoding: .utf8), let ms = Int(text.trimmingCharacters()) {
            detail += "; latency timer \(ms) ms"
            if ms > 2 {
                return Finding(check: "adapter", status: .warning, detail: detail,
                               fix: "answers arrive up to \(ms) ms late: echo 1 | sudo tee \(timer) (or install the "
                                + "udev rules in udev/ that do it on every plug-in)")
            }
        }
        return Finding(check: "adapter", status: .ok, detail: detail)
    }

    private func report(_ findings: [Finding]) {
        if self.json {
            Output.line(JSONValue.object([
                ("port", .string(self.port)),
                ("findings", .array(findings.map { f in
                    .object([("check", .string(f.check)), ("status", .string(f.status.rawValue)),
                             ("detail", .string(f.detail)), ("fix", f.fix.map { .string($0) } ?? .null)])
                })),
            ]).rendered())
            return
        }
        for f in findings {
            Output.line("\(f.status.rawValue.uppercased().padding(8)) \(f.check.padding(14)) \(f.detail)")
            if let fix = f.fix { Output.line("         \("".padding(14)) fix: \(fix)") }
        }
    }
}
