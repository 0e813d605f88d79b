import BillingStore
import Foundation
import Gateway
import MeterProtocol
import MetergwTestSupport
import Prepaid
import Testing

#if canImport(Glibc)
import Glibc
#endif

let desk = Actor("desk", now: Int64(Date().timeIntervalSince1970))

/// Waits (polling every 50 ms) until `condition` holds; the timeout is a generous failure guard, never a
/// measurement.
func eventually(_ what: String, timeout: TimeInterval = 60, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        usleep(50_000)
    }
    throw EmulatorProcess.Failure("gave up waiting (\(Int(timeout)) s) for: \(what)")
}

/// A substation on this machine: emulated buses on pseudo-terminals, a billing store with their meters, a key
/// file shared by both, and the gateway's configuration.
final class Site {
    let dir: URL
    private(set) var emulators: [String: EmulatorProcess] = [:]
    private var seeds: [String: Int] = [:]
    let storePath: String
    let store: BillingDatabase
    let metricsPort: Int

    init() throws {
        self.dir = try EmulatorProcess.makeDirectory()
        self.metricsPort = try LoopbackPort.free()
        self.storePath = self.dir.appendingPathComponent("billing.sqlite").path
        self.store = try BillingDatabase.open(path: self.storePath)
        let tariff = try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                     price: Price(majorPerThousandUnits: "0.5000", currency: .cny)!)
        _ = try self.store.addTariff(tariff, validFrom: 0, by: desk)
    }

    deinit {
        for e in self.emulators.values { e.terminate() }
    }

    var keys: String { self.dir.appendingPathComponent("keys").path }
    func file(_ name: String) -> String { self.dir.appendingPathComponent(name).path }

    /// Starts a bus of `meters` emulated meters in its own folder (sharing the site's key file), registers each
    /// meter in the store with an account of its own.
    @discardableResult
    func addBus(_ name: String, meters: Int, arguments: [String] = [], register: Bool = true) throws -> EmulatorProcess {
        let folder = self.dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: self.keys, toPath: folder.appendingPathComponent("keys").path)
        self.seeds[name] = self.emulators.count + 11
        let emulator = try EmulatorProcess(
            directory: folder,
            arguments: ["--meters", String(meters), "--seed", String(self.seeds[name]!),
                        "--state", folder.appendingPathComponent("state.json").path] + arguments)
        self.emulators[name] = emulator
        if register {
            for address in 1...meters {
                let serial = emulator.serial(ofAddress: address)
                _ = try self.store.addMeter(serial: serial, kind: .electricity, tariff: "flat", bus: name,
                                            address: UInt8(address), by: desk)
                let account = try self.store.openAccount(name: "\(name) customer \(address)", by: desk)
                _ = try self.store.assignMeter(String(serial), to: String(account.account.id!), by: desk)
            }
        }
        return emulator
    }

    func emulator(_ name: String) -> EmulatorProcess { self.emulators[name]! }

    /// Restarts a bus's emulator from its saved state (same link, same meters).
    func restartBus(_ name: String, meters: Int, arguments: [String] = []) throws {
        let folder = self.dir.appendingPathComponent(name)
        self.emulators[name]?.terminate()
        self.emulators[name] = try EmulatorProcess(
            directory: folder,
            arguments: ["--meters", String(meters), "--seed", String(self.seeds[name]!),
                        "--state", folder.appendingPathComponent("state.json").path] + arguments)
    }

    /// A configuration with every bus, polled every `interval`; the buses in `discover` find their meters.
    func writeConfiguration(interval: String = "300ms", extra: [String: String] = [:], lines: [String: String] = [:],
                            busExtra: String = "", discover: Set<String> = [])
        throws -> String
    {
        var text = """
            store = "\(self.storePath)"
            keys = "\(self.keys)"
            metrics = "127.0.0.1:\(self.metricsPort)"
            log_level = "debug"

            """
        for (name, emulator) in self.emulators.sorted(by: { $0.key < $1.key }) {
            let count = emulator.devices.count
            text += """

                [[bus]]
                name = "\(name)"
                device = "\(emulator.link)"
                line = "\(lines[name] ?? "9600:8N1")"
                poll_interval = "\(extra[name] ?? interval)"
                timeout = "200ms"
                retries = 1
                \(discover.contains(name) ? "discover = true"
                    : "meters = [\((1...count).map(String.init).joined(separator: ", "))]")
                \(busExtra)

                """
        }
        let path = self.file("gateway.toml")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    var metricsAddress: ListenAddress { ListenAddress(host: "127.0.0.1", port: self.metricsPort) }

    /// The running gateway's status; nil while its endpoint is not up yet.
    var status: GatewayStatus? { try? StatusClient.fetch(self.metricsAddress) }

    func bus(_ name: String) -> BusStatus? { self.status?.buses.first { $0.name == name } }

    /// The store's meter id for an emulated meter.
    func meterID(_ bus: String, _ address: Int) throws -> Int64 {
        try self.store.meter(String(self.emulator(bus).serial(ofAddress: address))).id!
    }

    /// The emulator's view of its meters (`meter-emulator status`), by bus address.
    func emulated(_ bus: String) throws -> [Int: [String: Any]] {
        let text = try EmulatorProcess.command(["status", "--link", self.emulator(bus).link]).output
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              let devices = object["devices"] as? [[String: Any]]
        else { throw EmulatorProcess.Failure("meter-emulator status: \(text)") }
        var out: [Int: [String: Any]] = [:]
        for d in devices { if let a = d["address"] as? Int { out[a] = d } }
        return out
    }

    /// Sells `amount` yuan remotely (queued for the gateway) for the meter at `address` on `bus`.
    @discardableResult
    func sellRemote(_ bus: String, _ address: Int, amount: String, requestID: String) throws -> Purchase {
        let meter = try self.store.meter(String(self.emulator(bus).serial(ofAddress: address)))
        let money = try Amount.parse(amount, currency: StoreCurrency.named("CNY"))
        return try self.store.sell(account: String(meter.accountId!), amount: money, requestID: requestID,
                                   mode: .remote, by: desk).purchase
    }

    func readingCount(_ bus: String, _ address: Int) throws -> Int {
        try self.store.readings(meterID: try self.meterID(bus, address)).count
    }
}

/// `metergw serve` as a separate process, its log in a file.
final class GatewayProcess {
    let process = Process()
    let logPath: String

    init(config: String, logPath: String, arguments: [String] = [], environment: [String: String] = [:]) throws {
        self.logPath = logPath
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        self.process.executableURL = EmulatorProcess.productsDirectory.appendingPathComponent("metergw")
        self.process.arguments = ["serve", "--config", config] + arguments
        self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        self.process.standardOutput = log
        self.process.standardError = log
        try self.process.run()
    }

    deinit { self.kill() }

    var log: String { (try? String(contentsOfFile: self.logPath, encoding: .utf8)) ?? "" }

    /// Whether a line of the log has `message` and `metadata` (swift-log prints metadata, sorted, before it).
    func logLine(_ message: String, with metadata: String) -> Bool {
        self.log.split(separator: "\n").contains { $0.hasSuffix(message) && $0.contains(metadata) }
    }

    /// SIGKILL: a power cut.
    func kill() {
        if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGKILL) }
        self.process.waitUntilExit()
    }

    /// SIGTERM and wait; nil if it has not exited within `guardSeconds` (then it is killed).
    func terminate(guardSeconds: TimeInterval = 10) -> Int32? {
        if self.process.isRunning { Glibc.kill(self.process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(guardSeconds)
        while self.process.isRunning && Date() < deadline { usleep(20_000) }
        if self.process.isRunning {
            self.kill()
            return nil
        }
        return self.process.terminationStatus
    }

    func signal(_ signal: Int32) { Glibc.kill(self.process.processIdentifier, signal) }
}

/// Runs `metergw ARGS` and returns (status, stdout, stderr).
func metergw(_ arguments: [String], environment: [String: String] = [:]) throws -> (Int32, String, String) {
    let process = Process()
    process.executableURL = EmulatorProcess.productsDirectory.appendingPathComponent("metergw")
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    nonisolated(unsafe) var errData = Data()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    group.wait()
    return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
}

/// Runs a task's jobs on a serial dispatch queue of its own instead of the cooperative pool, whose two threads
/// (on this machine) other tests' blocking waits may hold for a minute: an in-process gateway under test must not
/// starve behind them.
final class DedicatedExecutor: TaskExecutor, @unchecked Sendable {
    private let queue = DispatchQueue(label: "metergw.test.executor")

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        self.queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// `eventually` for async tests: sleeps without holding a thread.
func eventuallyAsync(_ what: String, timeout: TimeInterval = 60, _ condition: () throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
        if try condition() { return }
        if Date() >= deadline { break }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw EmulatorProcess.Failure("gave up waiting (\(Int(timeout)) s) for: \(what)")
}
