// metergw-bench gateway: the whole gateway against many paced buses (docs/BENCHMARKS.md, "Gateway").
//
//   metergw-bench gateway [--buses 16] [--meters 32] [--seconds 60] [--warmup 15] [--line 9600:8N1] [--json]
//
// Starts one `meter-emulator --pace` process per bus (32 meters each), a store with every meter registered, and
// `metergw serve` polling all buses back to back (poll_interval 100 ms, shorter than a cycle), all from the same
// build folder as this binary. After the warm-up it samples the gateway's counters (/metrics), its CPU time and
// resident memory (/proc) and reports per-bus polls per second against the wire's limit, CPU per poll and RSS.
import BillingStore
import Foundation
import Gateway
import KeyStore
import MeterProtocol
import Prepaid
import SerialPort

#if canImport(Glibc)
import Glibc
#endif

enum GatewayBenchmark {
    struct Settings {
        var buses = 16
        var meters = 32
        var seconds = 60
        var warmup = 15
        var line = "9600:8N1"
        var json = false
    }

    static func main(_ arguments: ArraySlice<String>) -> Never {
        var s = Settings()
        var args = arguments
        while let arg = args.popFirst() {
            switch arg {
            case "--buses": s.buses = Int(args.popFirst() ?? "") ?? s.buses
            case "--meters": s.meters = Int(args.popFirst() ?? "") ?? s.meters
            case "--seconds": s.seconds = Int(args.popFirst() ?? "") ?? s.seconds
            case "--warmup": s.warmup = Int(args.popFirst() ?? "") ?? s.warmup
            case "--line": s.line = args.popFirst() ?? s.line
            case "--json": s.json = true
            default:
                print("usage: metergw-bench gateway [--buses 16] [--meters 32] [--seconds 60] [--warmup 15] "
                      + "[--line 9600:8N1] [--json]")
                exit(64)
            }
        }
        do {
            print(try self.run(s))
            exit(0)
        } catch {
            print("metergw-bench gateway: \(error)")
            exit(1)
        }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { self.description = d }
    }

    static func run(_ s: Settings) throws -> String {
        let line = try LineSettings(parsing: s.line)
        let bin = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        let dir = NSTemporaryDirectory() + "metergw-bench-gateway-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let keysPath = dir + "/keys"
        _ = try KeyFile.create(at: keysPath, issuerID: 7)
        var children: [Process] = []
        defer {
            for p in children.reversed() where p.isRunning { p.terminate(); p.waitUntilExit() }
        }
        // The buses.
        var serials: [[UInt32]] = []
        for b in 1...s.buses {
            let p = Process()
            p.executableURL = bin.appendingPathComponent("meter-emulator")
            p.arguments = ["--link", "\(dir)/bus\(b)", "--meters", String(s.meters), "--seed", String(b),
                           "--keys", keysPath, "--pace", "--line", s.line, "--json"]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            try p.run()
            children.append(p)
            let first = try Self.firstLine(out.fileHandleForReading)
            let object = try JSONSerialization.jsonObject(with: Data(first.utf8)) as? [String: Any]
            let devices = object?["devices"] as? [[String: Any]] ?? []
            serials.append(devices.compactMap { ($0["serial"] as? Int).map(UInt32.init) })
        }
        // The store, every meter in it.
        let storePath = dir + "/billing.sqlite"
        let store = try BillingDatabase.open(path: storePath)
        let actor = Actor("bench", now: Int64(Date().timeIntervalSince1970))
        _ = try store.addTariff(try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                                price: Price(microMinorPerUnit: 500)), validFrom: 0, by: actor)
        for (b, list) in serials.enumerated() {
            for (i, serial) in list.enumerated() {
                _ = try store.addMeter(serial: serial, kind: .electricity, tariff: "flat", bus: "bus\(b + 1)",
                                       address: UInt8(i + 1), by: actor)
            }
        }
        // The gateway.
        let port = Int.random(in: 20_000...60_000)
        var config = "store = \"\(storePath)\"\nkeys = \"\(keysPath)\"\nmetrics = \"127.0.0.1:\(port)\"\n"
            + "log_level = \"notice\"\n"
        for b in 1...s.buses {
            config += "\n[[bus]]\nname = \"bus\(b)\"\ndevice = \"\(dir)/bus\(b)\"\nline = \"\(s.line)\"\n"
                + "poll_interval = \"100ms\"\nmeters = [\((1...s.meters).map(String.init).joined(separator: ", "))]\n"
        }
        try config.write(toFile: dir + "/gateway.toml", atomically: true, encoding: .utf8)
        let gateway = Process()
        gateway.executableURL = bin.appendingPathComponent("metergw")
        gateway.arguments = ["serve", "--config", dir + "/gateway.toml"]
        gateway.standardOutput = FileHandle.nullDevice
        gateway.standardError = FileHandle.nullDevice
        try gateway.run()
        children.append(gateway)
        let address = ListenAddress(host: "127.0.0.1", port: port)

        sleep(UInt32(s.warmup))
        let before = try Sample(pid: gateway.processIdentifier, address: address)
        sleep(UInt32(s.seconds))
        let after = try Sample(pid: gateway.processIdentifier, address: address)
        let seconds = after.time - before.time

        // The wire's limit for one READ_STATUS exchange, as in the bus benchmark.
        let tc = line.characterTime
        let wire = tc * (Frame.minFrameLength + Frame.minFrameLength + 41) + max(tc * 3.5, .milliseconds(1))
            + max(tc * 3.5, .milliseconds(2))
        let wireSeconds = Double(wire.components.seconds) + Double(wire.components.attoseconds) / 1e18
        let allowed = 1 / wireSeconds
        var perBus: [(String, Double)] = []
        var totalPolls = 0
        for b in 1...s.buses {
            let name = "bus\(b)"
            let polls = (after.polls[name] ?? 0) - (before.polls[name] ?? 0)
            totalPolls += polls
            perBus.append((name, Double(polls) / seconds / allowed * 100))
        }
        let failures = after.failures - before.failures
        let cpuMicros = Double(after.cpuMicros - before.cpuMicros)
        let perPoll = cpuMicros / Double(max(1, totalPolls))
        let percents = perBus.map(\.1)
        let worst = percents.min() ?? 0
        let mean = percents.reduce(0, +) / Double(max(1, percents.count))
        let rssMB = Double(after.rssKB) / 1024
        if s.json {
            return "{\"benchmark\":\"gateway\",\"buses\":\(s.buses),\"metersPerBus\":\(s.meters),\"line\":\"\(line)\","
                + "\"seconds\":\(String(format: "%.1f", seconds)),\"polls\":\(totalPolls),\"failures\":\(failures),"
                + "\"wireTxPerSecondPerBus\":\(String(format: "%.3f", allowed)),"
                + "\"percentOfWireWorstBus\":\(String(format: "%.2f", worst)),"
                + "\"percentOfWireMean\":\(String(format: "%.2f", mean)),"
                + "\"cpuMicrosPerPoll\":\(Int(perPoll)),\"rssMB\":\(String(format: "%.1f", rssMB)),"
                + "\"peakRssMB\":\(String(format: "%.1f", Double(after.peakKB) / 1024))}"
        }
        return """
            gateway: \(s.buses) buses x \(s.meters) meters at \(line), paced; \(totalPolls) polls in \
            \(String(format: "%.1f", seconds)) s after \(s.warmup) s of warm-up, \(failures) failures
              per bus: the wire allows \(String(format: "%.3f", allowed)) READ_STATUS/s \
            (\(String(format: "%.2f", wireSeconds * 1000)) ms each); worst bus \(String(format: "%.1f", worst))%, \
            mean \(String(format: "%.1f", mean))% (target >= 95%: \(worst >= 95 ? "ok" : "BELOW TARGET"))
              \(perBus.map { "\($0.0) \(String(format: "%.1f", $0.1))%" }.joined(separator: ", "))
              gateway CPU per poll \(Int(perPoll)) µs (target < 200 µs: \(perPoll < 200 ? "ok" : "ABOVE TARGET")); \
            \(String(format: "%.1f", cpuMicros / seconds / 10_000))% of one core
              gateway RSS \(String(format: "%.1f", rssMB)) MB, \
            peak \(String(format: "%.1f", Double(after.peakKB) / 1024)) MB \
            (target < 50 MB: \(rssMB < 50 ? "ok" : "ABOVE TARGET"))
            """
    }

    /// The gateway's counters, CPU time and memory at one moment.
    struct Sample {
        var time: Double
        var polls: [String: Int] = [:]
        var failures = 0
        var cpuMicros: Int64
        var rssKB: Int
        var peakKB: Int

        init(pid: Int32, address: ListenAddress) throws {
            self.time = Date().timeIntervalSince1970
            let text = String(decoding: try StatusClient.get("/metrics", from: address), as: UTF8.self)
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                guard parts.count == 2, let value = Double(parts[1]) else { continue }
                if line.hasPrefix("metergw_polls_total{bus=\""),
                   let name = line.split(separator: "\"").dropFirst().first
                {
                    self.polls[String(name)] = Int(value)
                } else if line.hasPrefix("metergw_poll_failures_total") {
                    self.failures += Int(value)
                }
            }
            // utime and stime, fields 14 and 15 of /proc/PID/stat, in clock ticks.
            let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
            let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
            let ticks = Int64(sysconf(Int32(_SC_CLK_TCK)))
            let user = fields.count > 12 ? Int64(fields[11]) ?? 0 : 0
            let system = fields.count > 13 ? Int64(fields[12]) ?? 0 : 0
            self.cpuMicros = (user + system) * 1_000_000 / ticks
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            func kb(_ key: String) -> Int {
                status.split(separator: "\n").first { $0.hasPrefix(key) }.flatMap {
                    Int($0.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
                } ?? 0
            }
            self.rssKB = kb("VmRSS:")
            self.peakKB = kb("VmHWM:")
        }
    }

    static func firstLine(_ handle: FileHandle) throws -> String {
        var bytes: [UInt8] = []
        while true {
            let data = handle.readData(ofLength: 1)
            guard let byte = data.first else { throw Failure("meter-emulator exited before it started") }
            if byte == 0x0A { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }
}
