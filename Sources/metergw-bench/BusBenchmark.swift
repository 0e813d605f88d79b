// metergw-bench bus: the bus master against the emulator at line speed (docs/BENCHMARKS.md, "Bus master").
//
//   metergw-bench bus [--seconds N] [--bauds 9600,2400] [--meters 32] [--warmup-rounds 5] [--json]
//
// For each baud rate: a BusEmulator with 32 test meters on a pseudo-terminal, pacing its answers at line speed
// (8E1), and a BusSession with default options polling READ_STATUS round robin for N seconds after the warm-up
// rounds. Then a scan of 32 meters with random 32-bit serials at 9600 baud.
import Foundation
import MeterBus
import MeterEmulator
import MeterEmulatorTesting
import MeterProtocol
import SerialPort

#if canImport(Glibc)
import Glibc
#endif

enum BusBenchmark {
    struct Settings {
        var seconds = 20
        var bauds = [9600, 2400]
        var meters = 32
        /// Rounds over every meter before measuring: the session calibrates each meter on its first five answers.
        var warmupRounds = 5
        var json = false
    }

    static func main(_ arguments: ArraySlice<String>) -> Never {
        var settings = Settings()
        var args = arguments
        while let arg = args.popFirst() {
            switch arg {
            case "--seconds": settings.seconds = Int(args.popFirst() ?? "") ?? settings.seconds
            case "--meters": settings.meters = Int(args.popFirst() ?? "") ?? settings.meters
            case "--warmup-rounds": settings.warmupRounds = Int(args.popFirst() ?? "") ?? settings.warmupRounds
            case "--bauds":
                settings.bauds = (args.popFirst() ?? "").split(separator: ",").compactMap { Int($0) }
            case "--json": settings.json = true
            default:
                print("usage: metergw-bench bus [--seconds N] [--bauds 9600,2400] [--meters N] [--warmup-rounds N] "
                      + "[--json]")
                exit(64)
            }
        }
        do {
            var results: [String] = []
            for baud in settings.bauds {
                let poll = try self.poll(baud: baud, settings: settings)
                results.append(poll.json)
                if !settings.json { print(poll.text) }
            }
            let scan = try self.scan(baud: 9600, meters: settings.meters)
            results.append(scan.json)
            if settings.json { print("[" + results.joined(separator: ",") + "]") } else { print(scan.text) }
            exit(0)
        } catch {
            print("metergw-bench bus: \(error)")
            exit(1)
        }
    }

    // MARK: Polling

    struct PollResult {
        var text: String
        var json: String
    }

    /// The wire's limit for one READ_STATUS exchange (docs/PROTOCOL.md §8): request and answer characters, the
    /// device's turnaround Tt = max(3.5 Tc, 1 ms) and the master's inter-frame gap Tg = max(3.5 Tc, 2 ms).
    static func wireTime(_ line: LineSettings) -> Duration {
        let tc = line.characterTime
        let characters = Frame.minFrameLength + Frame.minFrameLength + 41  // 15-byte request, 56-byte answer
        return tc * characters + max(tc * 3.5, .milliseconds(1)) + max(tc * 3.5, .milliseconds(2))
    }

    static func poll(baud: Int, settings: Settings) throws -> PollResult {
        let line = LineSettings(baudRate: baud, parity: .even)
        let bench = try EmulatedBench(line: line, meters: self.meters(settings.meters, seed: 42))
        defer { bench.shutdown() }
        let session = bench.session
        let targets = bench.meters.map { Target.address($0.busAddress, serial: $0.serial) }
        // Warm-up: the session measures each meter's first answers exactly, then reads most answers whole after one
        // predicted sleep; the measurement is of that steady state.
        for _ in 0..<settings.warmupRounds {
            for target in targets { _ = try? session.transaction(ReadStatusRequest(), to: target) }
        }

        let clock = ContinuousClock()
        let before = Snapshot(bench: bench)
        let start = clock.now
        let end = start + .seconds(settings.seconds)
        var transactions = 0
        var failures = 0
        var wrong = 0
        // CPU per transaction of each round of 8 (session thread + calling thread): other work on the machine
        // shows up as spread between rounds.
        var rounds: [Double] = []
        var roundStart = before
        while clock.now < end {
            for _ in 0..<8 {
                let meter = bench.meters[transactions % bench.meters.count]
                do {
                    let status = try session.transaction(ReadStatusRequest(),
                                                         to: targets[transactions % targets.count])
                    if status.registerUnits != TestMeter.register(of: meter.serial) { wrong += 1 }
                } catch {
                    failures += 1
                }
                transactions += 1
            }
            let now = Snapshot(bench: bench)
            rounds.append(Double((now.executor - roundStart.executor) + (now.caller - roundStart.caller)) / 8)
            roundStart = now
        }
        let elapsed = clock.now - start
        let after = Snapshot(bench: bench)
        let sortedRounds = rounds.sorted()
        let median = sortedRounds[sortedRounds.count / 2]
        let best = sortedRounds[0]

        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let measured = Double(transactions) / seconds
        let wire = self.wireTime(line)
        let wireSeconds = Double(wire.components.seconds) + Double(wire.components.attoseconds) / 1e18
        let allowed = 1 / wireSeconds
        let percent = measured / allowed * 100
        let executor = Double(after.executor - before.executor) / Double(transactions)
        let caller = Double(after.caller - before.caller) / Double(transactions)
        let rest = Double((after.process - after.emulator) - (before.process - before.emulator)) / Double(transactions)
        let sleeps = Double(after.callerVoluntarySwitches - before.callerVoluntarySwitches) / Double(transactions)
        let preemptions = Double(after.callerInvoluntarySwitches - before.callerInvoluntarySwitches)
            / Double(transactions)
        let stats = session.statistics.bus
        let text = """
            \(line): \(transactions) READ_STATUS polls of \(bench.meters.count) meters in \
            \(String(format: "%.1f", seconds)) s: \(String(format: "%.3f", measured)) tx/s; the wire allows \
            \(String(format: "%.3f", allowed)) tx/s (\(String(format: "%.2f", wireSeconds * 1000)) ms each) -> \
            \(String(format: "%.1f", percent))% (target 95%: \(percent >= 95 ? "ok" : "BELOW TARGET"))
              failures \(failures), wrong values \(wrong), retries \(stats.retries), timeouts \(stats.timeouts); \
            latency \(stats.latency)
              master CPU per transaction: median \(Int(median)) µs over \(rounds.count) rounds of 8 (best \
            \(Int(best)) µs; mean \(Int(executor)) µs on the session thread + \(Int(caller)) µs on the calling \
            thread) (target < 200 µs: \(median < 200 ? "ok" : "ABOVE TARGET")); cross-check, process CPU minus \
            the emulator thread: \(Int(rest)) µs
              calling thread per transaction: \(String(format: "%.2f", sleeps)) voluntary context switches \
            (sleeps), \(String(format: "%.2f", preemptions)) involuntary (preempted)
            """
        let json = "{\"benchmark\":\"bus-poll\",\"line\":\"\(line)\",\"meters\":\(bench.meters.count),"
            + "\"transactions\":\(transactions),\"seconds\":\(String(format: "%.3f", seconds)),"
            + "\"txPerSecond\":\(String(format: "%.3f", measured)),"
            + "\"wireTxPerSecond\":\(String(format: "%.3f", allowed)),"
            + "\"percentOfWire\":\(String(format: "%.2f", percent)),\"failures\":\(failures),\"wrong\":\(wrong),"
            + "\"retries\":\(stats.retries),\"masterCpuMicrosPerTx\":\(Int(median)),"
            + "\"masterCpuMicrosPerTxBest\":\(Int(best)),\"masterCpuMicrosPerTxMean\":\(Int(executor + caller)),"
            + "\"sessionThreadCpuMicrosPerTx\":\(Int(executor)),\"callerCpuMicrosPerTx\":\(Int(caller)),"
            + "\"processMinusEmulatorCpuMicrosPerTx\":\(Int(rest)),"
            + "\"callerSleepsPerTx\":\(String(format: "%.3f", sleeps)),"
            + "\"callerPreemptionsPerTx\":\(String(format: "%.3f", preemptions))}"
        return PollResult(text: text, json: json)
    }

    /// CPU clocks at one moment, in microseconds, and the calling thread's context switches.
    struct Snapshot {
        var executor: Int64
        var caller: Int64
        var emulator: Int64
        var process: Int64
        /// The calling thread's voluntary context switches (it slept) and involuntary ones (it was preempted).
        var callerVoluntarySwitches: Int
        var callerInvoluntarySwitches: Int

        init(bench: EmulatedBench) {
            self.executor = bench.session.sessionThreadCPUTime.microseconds
            self.caller = Self.clock(CLOCK_THREAD_CPUTIME_ID)
            self.emulator = bench.emulatorCPUMicros
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            self.process = Int64(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000
                + Int64(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
            var thread = rusage()
            getrusage(1, &thread)  // RUSAGE_THREAD, which the Glibc module does not export
            self.callerVoluntarySwitches = thread.ru_nvcsw
            self.callerInvoluntarySwitches = thread.ru_nivcsw
        }

        static func clock(_ id: clockid_t) -> Int64 {
            var ts = timespec()
            clock_gettime(id, &ts)
            return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
        }
    }

    // MARK: Scanning

    static func scan(baud: Int, meters count: Int) throws -> PollResult {
        let line = LineSettings(baudRate: baud, parity: .even)
        let bench = try EmulatedBench(line: line, meters: self.meters(count, seed: 2026))
        defer { bench.shutdown() }
        let report = try NativeDriver(session: bench.session).scan(progress: nil)
        let expected = Set(bench.meters.map(\.serial))
        let found = Set(report.meters.compactMap(\.address.serial))
        let seconds = Double(report.duration.components.seconds)
            + Double(report.duration.components.attoseconds) / 1e18
        let perMeter = Double(report.requests) / Double(count)
        let how = found == expected ? "all \(count)" : "\(found.intersection(expected).count) of \(count)"
        let text = """
            scan at \(line): \(how) \
            meters with random 32-bit serials found in \(report.requests) requests \
            (\(String(format: "%.2f", perMeter)) per meter, target < 10: \(perMeter < 10 ? "ok" : "ABOVE TARGET")); \
            \(report.collisions) collisions, \(report.silences) silent prefixes, \(String(format: "%.1f", seconds)) s
            """
        let json = "{\"benchmark\":\"bus-scan\",\"line\":\"\(line)\",\"meters\":\(count),\"found\":\(found.count),"
            + "\"requests\":\(report.requests),\"collisions\":\(report.collisions),\"silences\":\(report.silences),"
            + "\"seconds\":\(String(format: "%.2f", seconds))}"
        return PollResult(text: text, json: json)
    }

    /// Test meters at addresses 1...count with seeded random serials.
    static func meters(_ count: Int, seed: UInt64) -> [TestMeter] {
        var rng = SplitMix64(state: seed)
        var serials = Set<UInt32>()
        while serials.count < count { serials.insert(UInt32.random(in: 1...0xFFFF_FFFE, using: &rng)) }
        return serials.sorted().enumerated().map { TestMeter(busAddress: UInt8($0.offset + 1), serial: $0.element) }
    }
}

/// The emulator on its own thread at line speed, a port on its link and a session with default options.
final class EmulatedBench: @unchecked Sendable {
    let emulator: BusEmulator
    let port: SerialPort
    let session: BusSession
    let meters: [TestMeter]
    private let directory: String
    private let stopped = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)
    private var emulatorThread: pthread_t?

    init(line: LineSettings, meters: [TestMeter]) throws {
        self.meters = meters
        self.directory = NSTemporaryDirectory() + "metergw-bench-\(getpid())-\(line.baudRate)"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        let link = self.directory + "/bus"
        self.emulator = try BusEmulator(
            options: BusEmulator.Options(linkPath: link, line: line, pace: true), devices: meters)
        self.port = try SerialPort.open(link)
        _ = try self.port.configure(line)  // a pseudo-terminal drops parity: timing still uses 11-bit characters
        self.session = BusSession(transport: self.port, line: line)
        let thread = Thread { [self] in
            self.emulatorThread = pthread_self()
            self.started.signal()
            try? self.emulator.run()
            self.stopped.signal()
        }
        thread.name = "emulator"
        thread.start()
        self.started.wait()
    }

    var emulatorCPUMicros: Int64 {
        guard let thread = self.emulatorThread else { return 0 }
        var id = clockid_t()
        guard pthread_getcpuclockid(thread, &id) == 0 else { return 0 }
        return BusBenchmark.Snapshot.clock(id)
    }

    func shutdown() {
        self.session.close()
        self.emulator.stop()
        self.stopped.wait()
        self.emulator.close()
        try? self.port.close()
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}

extension Duration {
    var microseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
