import Foundation
import MeterProtocol
import SerialPort

/// One emulated RS-485 bus on a pseudo-terminal: every device sees every request, the addressed one answers,
/// broadcasts get no answer, DISCOVER answers collide, and replies go out paced and faulted as configured.
///
/// Thread safety: `run` owns the wire on its thread; the control socket reaches the devices through
/// `withDevices`, which takes the same lock the run loop holds while it handles a request.
public final class BusEmulator: @unchecked Sendable {
    public struct Options: Sendable {
        public var linkPath: String
        /// For pacing and the turnaround time.
        public var line: LineSettings
        /// Send replies at line speed, byte after byte.
        public var pace: Bool
        /// Wait this long after a request before answering; nil: PROTOCOL.md §8 turnaround (3.5 Tc, ≥ 1 ms).
        public var responseDelay: Duration?
        /// Simulated time runs this many times faster than real time for consumption.
        public var speed: Int
        public var faults: FaultPlan
        public var seed: UInt64

        public init(linkPath: String, line: LineSettings = LineSettings(baudRate: 9600), pace: Bool = false,
                    responseDelay: Duration? = nil, speed: Int = 1, faults: FaultPlan = FaultPlan(), seed: UInt64 = 1)
        {
            self.linkPath = linkPath
            self.line = line
            self.pace = pace
            self.responseDelay = responseDelay
            self.speed = speed
            self.faults = faults
            self.seed = seed
        }
    }

    /// What the bus saw and did; `status` on the control socket prints it.
    public struct Statistics: Sendable, Equatable {
        public var requests = 0
        public var replies = 0
        public var broadcasts = 0
        public var collisions = 0
        /// Bytes that were no valid frame, and the runs they came in.
        public var garbageBytes = 0
        public var garbageRuns = 0
        /// Valid frames the addressed device could not read (refused with MALFORMED_PAYLOAD, UNKNOWN_COMMAND or
        /// UNSUPPORTED_VERSION).
        public var unreadable = 0
        public var faults: [String: Int] = [:]
        public var vanished = 0

        public var json: JSONValue {
            .object([
                ("requests", .int(Int64(self.requests))), ("replies", .int(Int64(self.replies))),
                ("broadcasts", .int(Int64(self.broadcasts))), ("collisions", .int(Int64(self.collisions))),
                ("garbageBytes", .int(Int64(self.garbageBytes))), ("garbageRuns", .int(Int64(self.garbageRuns))),
                ("unreadable", .int(Int64(self.unreadable))),
                ("faults", .object(self.faults.sorted { $0.key < $1.key }.map { ($0.key, .int(Int64($0.value))) })),
                ("vanished", .int(Int64(self.vanished))),
            ])
        }
    }

    public let options: Options
    private let lock = NSLock()
    private var devices: [any EmulatedDevice]
    private var injector: FaultInjector
    private var statistics = Statistics()
    private var pair: PseudoTerminalPair?
    private let stopFlag = StopFlag()
    /// Called (under the lock) after a request that changed device state, before its reply is written: the
    /// emulator saves its state there, so a reply never reports what a crash could undo.
    public var onStateChange: (@Sendable () -> Void)?

    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    /// Simulated milliseconds since local midnight, advanced `speed` times faster than real time.
    private var simulatedTimeOfDayMs: Int64

    public init(options: Options, devices: [any EmulatedDevice]) throws(SerialError) {
        self.options = options
        self.devices = devices
        self.injector = FaultInjector(plan: options.faults, seed: options.seed)
        self.started = self.clock.now
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        self.simulatedTimeOfDayMs = now % 86_400_000
        self.pair = try PseudoTerminalPair(linkPath: options.linkPath)
        self.pair?.lineSettings = options.line
    }

    /// The /dev/pts device behind the link (changes when the bus vanishes and comes back).
    public var subordinatePath: String? { self.lock.withLock { self.pair?.subordinatePath } }

    public func withDevices<T>(_ body: ([any EmulatedDevice]) throws -> T) rethrows -> T {
        try self.lock.withLock { try body(self.devices) }
    }

    public var currentStatistics: Statistics { self.lock.withLock { self.statistics } }

    public func stop() { self.stopFlag.set() }

    /// Closes the pseudo-terminal and removes the link.
    public func close() {
        self.lock.withLock {
            try? self.pair?.close()
            self.pair = nil
        }
    }

    /// Unix seconds now, the clock every device starts from.
    static func unixNow() -> UInt32 { UInt32(clamping: Int64(Date().timeIntervalSince1970)) }

    private var elapsedMs: Int64 { (self.clock.now - self.started).milliseconds }

    // MARK: Run loop

    /// Serves the bus until `stop()`. Throws only if the pseudo-terminal cannot be (re)created.
    public func run() throws(SerialError) {
        var decoder = FrameDecoder()
        var window: [UInt8] = []
        var lastTick = self.clock.now
        let tick = Duration.milliseconds(100)
        let abort = max(self.options.line.characterTime * 40, .milliseconds(50))
        while !self.stopFlag.isSet {
            guard let pair = self.lock.withLock({ self.pair }) else {
                // Vanished for good: nothing on the wire, but meters keep consuming until we are stopped.
                self.sleep(until: self.clock.now + tick)
                self.advance(realMs: tick.milliseconds)
                lastTick = self.clock.now
                continue
            }
            do {
                let bytes = try pair.read(upTo: 4096, deadline: self.clock.now + min(abort, tick))
                window += bytes
                decoder.append(bytes)
            } catch .timeout {
                if decoder.bufferedByteCount > 0 {
                    decoder.finish()
                    self.drain(&decoder, &window, pair)
                    decoder.resume()
                }
            } catch .removed {
                // No one holds the subordinate and the pair's own hold was lost: nothing to serve until reopened.
                return
            }
            self.drain(&decoder, &window, pair)
            if self.clock.now - lastTick >= tick {
                let realMs = (self.clock.now - lastTick).milliseconds
                lastTick = self.clock.now
                self.advance(realMs: realMs)
            }
        }
    }

    private func advance(realMs: Int64) {
        let simulated = realMs * Int64(self.options.speed)
        self.lock.withLock {
            self.simulatedTimeOfDayMs = (self.simulatedTimeOfDayMs + simulated) % 86_400_000
            let now = Self.unixNow()
            for device in self.devices {
                device.advance(simulatedMs: simulated, timeOfDayMs: self.simulatedTimeOfDayMs, now: now)
            }
        }
    }

    private func drain(_ decoder: inout FrameDecoder, _ window: inout [UInt8], _ pair: PseudoTerminalPair) {
        while let item = decoder.next() {
            switch item {
            case .skipped(_, let count, _):
                self.lock.withLock {
                    self.statistics.garbageBytes += count
                    self.statistics.garbageRuns += 1
                }
            case .frame(let frame, let offset):
                let start = offset - (decoder.streamOffset - window.count)
                let raw = Array(window[start..<(start + frame.encodedLength)])
                self.serve(frame, raw: raw, pair: pair)
            }
        }
        let keep = decoder.bufferedByteCount
        if window.count > keep { window.removeFirst(window.count - keep) }
    }

    /// Hands a request to every device it addresses and sends what they answer.
    private func serve(_ request: Frame, raw: [UInt8], pair: PseudoTerminalPair) {
        // A response on the wire is another device's (or our own echo); a bus device never answers it.
        guard !request.isResponse else { return }
        // A pseudo-terminal hands the master's whole request over at once; on a wire its last stop bit ends
        // only after all its characters, so with pacing the turnaround counts from there.
        let wireTime = self.options.pace ? self.options.line.characterTime * raw.count : .zero
        let received = self.clock.now + wireTime
        let now = Self.unixNow()
        var replies: [(address: UInt8, frame: Frame)] = []
        self.lock.withLock {
            self.statistics.requests += 1
            if request.isBroadcast { self.statistics.broadcasts += 1 }
            var changed = false
            for device in self.devices where request.isAddressed(toAddress: device.busAddress, serial: device.serial) {
                guard let reply = device.handle(request, now: now) else { continue }
                replies.append((device.busAddress, reply))
                if reply.isNak, let code = reply.payload.first.flatMap(NakCode.init(rawValue:)),
                    [.malformedPayload, .unknownCommand, .unsupportedVersion].contains(code)
                {
                    self.statistics.unreadable += 1
                }
                changed = changed || Self.mayChangeState(request)
            }
            if changed { self.onStateChange?() }
        }
        guard !replies.isEmpty else { return }
        // Several answers at once: only DISCOVER does this on a sane bus, and RS-485 garbles them.
        let nowMs = self.elapsedMs
        var shaped: [ShapedReply] = []
        self.lock.withLock {
            for reply in replies {
                if let s = self.injector.shape(reply.frame, request: raw, from: reply.address, nowMs: nowMs) {
                    shaped.append(s)
                    for fault in s.applied { self.statistics.faults[fault.rawValue, default: 0] += 1 }
                }
            }
            self.statistics.replies += shaped.count
            if shaped.count > 1 { self.statistics.collisions += 1 }
        }
        guard !shaped.isEmpty else { return }
        var reply = shaped[0]
        if shaped.count > 1 {
            reply = ShapedReply(segments: [(shaped.map { $0.segments.first?.pauseMs ?? 0 }.max() ?? 0,
                                            collide(shaped.map(\.bytes)))],
                                vanishAfterMs: nil, burstMs: nil, applied: [])
        }
        self.send(reply, after: received, pair: pair)
    }

    /// Commands that change what a device persists.
    static func mayChangeState(_ request: Frame) -> Bool {
        switch request.knownCommand {
        case .setRelay, .setThresholds, .setClock, .applyCredit, .acknowledgeAlarms, .setAddress, .broadcastTime,
            .writeCard, .eraseCard:
            return true
        default:
            return false
        }
    }

    private func send(_ reply: ShapedReply, after received: ContinuousClock.Instant, pair: PseudoTerminalPair) {
        let turnaround = self.options.responseDelay ?? max(self.options.line.characterTime * 3.5, .milliseconds(1))
        var at = received + turnaround
        if let burst = reply.burstMs {
            // Released at the next latency-timer boundary.
            let ms = Int64(burst)
            let since = (at - self.started).milliseconds
            at = self.started + .milliseconds((since / ms + 1) * ms)
        }
        for segment in reply.segments {
            at = at + .milliseconds(segment.pauseMs)
            self.sleep(until: at)
            self.write(segment.bytes, pair: pair)
            at = self.clock.now
        }
        if let comeBack = reply.vanishAfterMs { self.vanish(comeBackAfterMs: comeBack) }
    }

    private func write(_ bytes: [UInt8], pair: PseudoTerminalPair) {
        guard self.options.pace else {
            try? pair.write(bytes, deadline: self.clock.now + .seconds(2))
            return
        }
        // At line speed: a receiving UART has byte i after its stop bit, at start + (i + 1) character times.
        let start = self.clock.now
        let tc = self.options.line.characterTime
        var sent = 0
        while sent < bytes.count {
            self.sleep(until: start + tc * (sent + 1))
            let due = min(bytes.count, max(sent + 1, Int((self.clock.now - start) / tc)))
            try? pair.write(bytes[sent..<due], deadline: self.clock.now + .seconds(2))
            sent = due
        }
    }

    private func sleep(until instant: ContinuousClock.Instant) {
        // Re-computed after each wake-up, so an interrupted sleep (EINTR) still ends at `instant`.
        while case let remaining = instant - self.clock.now, remaining > .zero {
            let (seconds, attoseconds) = remaining.components
            var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
            _ = nanosleep(&ts, nil)
        }
    }

    /// Unplugs the bus: the pseudo-terminal closes (the master sees "removed"); with `comeBackAfterMs` > 0 a new
    /// one appears at the same link after that time.
    private func vanish(comeBackAfterMs: Int) {
        self.lock.withLock {
            try? self.pair?.close()
            self.pair = nil
            self.statistics.vanished += 1
        }
        guard comeBackAfterMs > 0 else { return }
        self.sleep(until: self.clock.now + .milliseconds(comeBackAfterMs))
        self.lock.withLock {
            self.pair = try? PseudoTerminalPair(linkPath: self.options.linkPath)
            self.pair?.lineSettings = self.options.line
        }
    }
}

/// A flag set from a signal handler thread or the control socket, read by the run loop.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { self.lock.withLock { self.value } }
    func set() { self.lock.withLock { self.value = true } }
}

extension Duration {
    /// Whole milliseconds, rounded down; integer arithmetic only.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
