// metergw-bench modbus: metergw's Modbus RTU master against mbpoll (libmodbus) and a pymodbus client loop, all
// reading the same 14 holding registers from the same meter-emulator (--protocol modbus) on a pseudo-terminal,
// unpaced and paced at 9600 baud (docs/BENCHMARKS.md, "Modbus RTU master").
//
//   metergw-bench modbus [--seconds 10] [--python .venv/bin/python] [--clients metergw,mbpoll,pymodbus] [--json]
//                        [--link PATH]
//
// --clients may also name "floor": the same system calls as a client with no work around them (the kernel's
// share of a transaction on this machine).
//
// --link runs the clients against an emulator already serving PATH (e.g. one started beside a profiler, which
// cannot always spawn it), in one mode labelled "external".
//
// tx/s counts answered transactions over the measured wall time. CPU per tx is the whole client process's CPU
// (getrusage for metergw: its caller and bus threads; /proc/PID/schedstat for mbpoll, single-threaded; the script's
// own getrusage for pymodbus). The emulator is a separate process and is not counted.
import Foundation
import MeterBus
import ModbusProtocol
import SerialPort

#if canImport(Glibc)
import Glibc
#endif

enum ModbusBenchmark {
    struct Result {
        var client: String
        var mode: String
        var transactions: Int
        var errors: Int
        var seconds: Double
        var cpuSeconds: Double

        var rate: Double { Double(self.transactions) / self.seconds }
        var cpuMicrosPerTransaction: Double { self.cpuSeconds * 1e6 / Double(max(1, self.transactions)) }

        var text: String {
            "\(self.mode.padding(toLength: 16, withPad: " ", startingAt: 0)) "
                + "\(self.client.padding(toLength: 9, withPad: " ", startingAt: 0)) "
                + String(format: "%9.1f tx/s  %8.0f µs CPU/tx  (%d tx, %d errors, %.1f s)", self.rate,
                         self.cpuMicrosPerTransaction, self.transactions, self.errors, self.seconds)
        }

        var json: String {
            String(format: #"{"client":"%@","mode":"%@","transactions":%d,"errors":%d,"seconds":%.3f,"#
                   + #""txPerSecond":%.2f,"cpuMicrosPerTx":%.1f}"#, self.client, self.mode, self.transactions,
                   self.errors, self.seconds, self.rate, self.cpuMicrosPerTransaction)
        }
    }

    static func main(_ arguments: ArraySlice<String>) -> Never {
        var seconds = 10.0
        var python = ".venv/bin/python"
        var json = false
        var clients = ["metergw", "mbpoll", "pymodbus"]
        var external: String?
        var args = arguments
        while let arg = args.popFirst() {
            switch arg {
            case "--seconds": seconds = Double(args.popFirst() ?? "") ?? seconds
            case "--python": python = args.popFirst() ?? python
            case "--json": json = true
            case "--clients": clients = (args.popFirst() ?? "").split(separator: ",").map(String.init)
            case "--link": external = args.popFirst()
            default:
                print("usage: metergw-bench modbus [--seconds N] [--python PATH] [--clients metergw,mbpoll,pymodbus] "
                      + "[--json] [--link PATH]")
                exit(64)
            }
        }
        var results: [Result] = []
        do {
            func run(link: String, mode: String) throws {
                for client in clients {
                    let result: Result
                    switch client {
                    case "metergw": result = try self.metergw(link: link, seconds: seconds, mode: mode)
                    case "mbpoll": result = try self.mbpoll(link: link, seconds: seconds, mode: mode)
                    case "floor": result = try self.floor(link: link, seconds: seconds, mode: mode)
                    default: result = try self.pymodbus(python, link: link, seconds: seconds, mode: mode)
                    }
                    results.append(result)
                    if !json { print(result.text) }
                }
            }
            if let external {
                try run(link: external, mode: "external")
            } else {
                for paced in [false, true] {
                    let emulator = try Emulator(paced: paced)
                    defer { emulator.stop() }
                    try run(link: emulator.link, mode: paced ? "paced 9600 8N1" : "unpaced")
                }
            }
        } catch {
            print("metergw-bench modbus: \(error)")
            exit(1)
        }
        if json { print("[" + results.map(\.json).joined(separator: ",") + "]") }
        exit(0)
    }

    static let registers: UInt16 = 14

    // MARK: Clients

    static func metergw(link: String, seconds: Double, mode: String) throws -> Result {
        let line = LineSettings(baudRate: 9600)
        let port = try SerialPort.open(link)
        defer { try? port.close() }
        _ = try port.configure(line)
        let session = BusSession(transport: port, line: line)
        defer { session.close() }
        let driver = ModbusDriver(session: session, map: RegisterMap(name: "bench", description: "", source: "",
                                                                     defaultLine: nil, registers: []))
        let request = ModbusRequest.readHoldingRegisters(address: 0, count: Self.registers)
        for _ in 0..<20 { _ = try driver.request(request, to: 1) }  // calibration warm-up
        let cpu0 = processCPUSeconds()
        let start = ContinuousClock.now
        var done = 0
        var errors = 0
        while (ContinuousClock.now - start) < .milliseconds(Int(seconds * 1000)) {
            do throws(BusError) {
                guard case .registers(let words) = try driver.request(request, to: 1), words.count == 14 else {
                    errors += 1
                    continue
                }
                done += 1
            } catch {
                errors += 1
            }
        }
        let wall = ContinuousClock.now - start
        return Result(client: "metergw", mode: mode, transactions: done, errors: errors,
                      seconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18,
                      cpuSeconds: processCPUSeconds() - cpu0)
    }

    /// The system calls alone, as a floor for the others: the gap's sleep, write, poll and read of the 33-byte
    /// answer, with no framing, checks, retries, calibration or statistics (not a usable client).
    static func floor(link: String, seconds: Double, mode: String) throws -> Result {
        let fd = open(link, O_RDWR | O_NOCTTY)
        guard fd >= 0 else { throw Failure("cannot open \(link)") }
        defer { close(fd) }
        var t = termios()
        tcgetattr(fd, &t)
        cfmakeraw(&t)
        cfsetspeed(&t, speed_t(B9600))
        tcsetattr(fd, TCSANOW, &t)
        // What an earlier client left unread (mbpoll is stopped mid-poll) would shift every answer after it.
        tcflush(fd, TCIFLUSH)
        let request = ModbusRequest.readHoldingRegisters(address: 0, count: Self.registers).encodedADU(address: 1)
        let answerLength = 5 + 2 * Int(Self.registers)
        var buffer = [UInt8](repeating: 0, count: 256)
        let cpu0 = processCPUSeconds()
        let start = ContinuousClock.now
        var done = 0
        var errors = 0
        while (ContinuousClock.now - start) < .milliseconds(Int(seconds * 1000)) {
            var gap = timespec(tv_sec: 0, tv_nsec: 3_646_000)  // 3.5 characters of 10 bits at 9600 baud
            nanosleep(&gap, nil)
            _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            var got = 0
            while got < answerLength {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 1000) == 1 else { break }
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, 256 - got) }
                guard n > 0 else { break }
                got += n
            }
            if got == answerLength { done += 1 } else { errors += 1 }
        }
        let wall = ContinuousClock.now - start
        return Result(client: "floor", mode: mode, transactions: done, errors: errors,
                      seconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18,
                      cpuSeconds: processCPUSeconds() - cpu0)
    }

    /// mbpoll polls at its shortest rate (-l 10, the least it accepts) until SIGINT; each poll prints a header line
    /// (to a file: its output is buffered until it exits). Its start-up is inside the window (a few ms of tens of
    /// seconds); the poll in flight at the end is not counted.
    static func mbpoll(link: String, seconds: Double, mode: String) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mbpoll")
        process.arguments = ["-m", "rtu", "-a", "1", "-b", "9600", "-P", "none", "-t", "4", "-0", "-r", "0", "-c",
                             "\(Self.registers)", "-l", "10", "-o", "1", link]
        let file = NSTemporaryDirectory() + "mbpoll-\(getpid()).txt"
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: file) }
        process.standardOutput = FileHandle(forWritingAtPath: file)
        process.standardError = FileHandle.nullDevice
        let start = ContinuousClock.now
        try process.run()
        Thread.sleep(forTimeInterval: seconds)
        let cpu = try childCPUSeconds(process.processIdentifier)
        let wall = ContinuousClock.now - start
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let polls = max(0, text.components(separatedBy: "-- Polling slave").count - 2)
        let errors = text.components(separatedBy: "failed").count - 1
        return Result(client: "mbpoll", mode: mode, transactions: polls - errors, errors: errors,
                      seconds: Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18,
                      cpuSeconds: cpu)
    }

    static func pymodbus(_ python: String, link: String, seconds: Double, mode: String) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["tools/peers/modbus_loop.py", "--port", link, "--count", "\(Self.registers)",
                             "--seconds", "\(seconds)"]
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let done = object["transactions"] as? Int, let wall = object["seconds"] as? Double,
            let cpu = object["cpuSeconds"] as? Double
        else { throw Failure("pymodbus loop printed \(String(decoding: data, as: UTF8.self))") }
        return Result(client: "pymodbus", mode: mode, transactions: done, errors: object["errors"] as? Int ?? 0,
                      seconds: wall, cpuSeconds: cpu)
    }

    // MARK: The emulator

    final class Emulator {
        let process = Process()
        let link: String
        let directory: String

        init(paced: Bool) throws {
            self.directory = NSTemporaryDirectory() + "modbus-bench-\(getpid())-\(paced ? "paced" : "unpaced")"
            try? FileManager.default.removeItem(atPath: self.directory)
            try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
            self.link = self.directory + "/bus"
            let config = self.directory + "/config.json"
            try #"{"meters":[{"address":1,"serial":11,"kind":"electricity","registerUnits":1234560,"peakDemand":0}],"#
                .appending(#""cardWriters":[]}"#).write(toFile: config, atomically: true, encoding: .utf8)
            let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("meter-emulator")
            self.process.executableURL = binary
            self.process.arguments = ["--link", self.link, "--protocol", "modbus", "--map", "mgwpm1", "--config",
                                      config, "--line", "9600:8N1", "--json"] + (paced ? ["--pace"] : [])
            let output = Pipe()
            self.process.standardOutput = output
            self.process.standardError = FileHandle.nullDevice
            try self.process.run()
            // Its first line says the bus is up.
            var byte: UInt8 = 0
            while read(output.fileHandleForReading.fileDescriptor, &byte, 1) == 1 && byte != 0x0A {}
        }

        func stop() {
            self.process.terminate()
            self.process.waitUntilExit()
            try? FileManager.default.removeItem(atPath: self.directory)
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}

/// This process's user + system CPU seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// A running single-threaded child's CPU seconds, from /proc/PID/schedstat (time on the CPU in nanoseconds:
/// /proc/PID/stat counts in clock ticks, too coarse for a process that uses 30 µs a poll).
func childCPUSeconds(_ pid: Int32) throws -> Double {
    let text = try String(contentsOfFile: "/proc/\(pid)/schedstat", encoding: .utf8)
    guard let nanos = text.split(separator: " ").first.flatMap({ Double($0) }) else {
        throw ModbusBenchmark.Failure("unreadable /proc/\(pid)/schedstat")
    }
    return nanos / 1e9
}
