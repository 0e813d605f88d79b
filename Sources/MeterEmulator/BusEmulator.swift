import DLT645Protocol
import Foundation
import MeterProtocol
import ModbusProtocol
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
        /// The protocol the meters speak on this bus (card writers speak only the native one).
        public var wire: Wire = .native

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

    /// The protocol a bus serves.
    public enum Wire: Sendable {
        case native
        /// Modbus RTU, every meter through one register map.
        case modbus(ModbusFrontEnd)
        /// DL/T 645-2007, each meter at its 12-digit address.
        case dlt645(DLT645FrontEnd)

        public var name: String {
            switch self {
            case .native: "native"
            case .modbus: "modbus"
            case .dlt645: "dlt645"
            }
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
        guard case .native = self.options.wire else { return try self.runOtherProtocol() }
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

    // MARK: Modbus RTU and DL/T 645

    /// The run loop for a bus of Modbus RTU or DL/T 645 meters: requests delimited as the protocol says (a Modbus
    /// request by its function's length or by t3.5 of silence; DL/T 645 by its structure), answered by the
    /// addressed meters through their front end, with the same faults, pacing and state as the native bus.
    private func runOtherProtocol() throws(SerialError) {
        let baud = self.options.line.baudRate
        var framer = ModbusRTUFramer(baud: baud, bitsPerCharacter: self.options.line.bitsPerCharacter,
                                     checkCharacterGaps: false)
        framer.readsRequests = true
        var dlt = DLT645Decoder()
        var stream: [UInt8] = []
        let epoch = self.clock.now
        var lastTick = self.clock.now
        let tick = Duration.milliseconds(100)
        let silence = Duration.microseconds(framer.frameSilenceMicros)
        while !self.stopFlag.isSet {
            guard let pair = self.lock.withLock({ self.pair }) else {
                self.sleep(until: self.clock.now + tick)
                self.advance(realMs: tick.milliseconds)
                lastTick = self.clock.now
                continue
            }
            var bytes: [UInt8] = []
            do {
                let waiting = framer.bufferedByteCount > 0 || dlt.bufferedByteCount > 0
                bytes = try pair.read(upTo: 4096, deadline: self.clock.now + (waiting ? silence : tick))
            } catch .timeout {
                if dlt.bufferedByteCount > 0 {
                    dlt.finish()
                    self.drainDLT645(&dlt, &stream, pair)
                    dlt.resume()
                }
            } catch .removed {
                return
            }
            let now = (self.clock.now - epoch).micros
            switch self.options.wire {
            case .modbus(let frontEnd):
                framer.append(bytes, atMicros: now)
                while let item = framer.next(nowMicros: (self.clock.now - epoch).micros) {
                    switch item {
                    case .frame(let raw): self.serveModbus(raw, frontEnd, pair)
                    case .skipped(let raw, _): self.noteGarbage(raw.count)
                    }
                }
            case .dlt645:
                stream += bytes
                dlt.append(bytes)
                self.drainDLT645(&dlt, &stream, pair)
            case .native:
                preconditionFailure("the native bus runs run()")
            }
            if self.clock.now - lastTick >= tick {
                let realMs = (self.clock.now - lastTick).milliseconds
                lastTick = self.clock.now
                self.advance(realMs: realMs)
            }
        }
    }

    private func noteGarbage(_ count: Int) {
        self.lock.withLock {
            self.statistics.garbageBytes += count
            self.statistics.garbageRuns += 1
        }
    }

    private func drainDLT645(_ decoder: inout DLT645Decoder, _ stream: inout [UInt8], _ pair: PseudoTerminalPair) {
        guard case .dlt645(let frontEnd) = self.options.wire else { return }
        while let item = decoder.next() {
            switch item {
            case .skipped(_, let count, _): self.noteGarbage(count)
            case .frame(let frame, let offset):
                let raw = offset < stream.count ? Array(stream[offset..<min(stream.count, offset + 12 + frame.data.count)])
                    : []
                self.serveDLT645(frame, raw: raw, frontEnd, pair)
            }
        }
        // The decoder's offsets count from its start: keep the stream whole while the bus is up (small frames).
        if decoder.bufferedByteCount == 0 && stream.count > 1 << 20 {
            decoder = DLT645Decoder()
            stream.removeAll()
        }
    }

    private func meters() -> [EmulatedMeter] { self.devices.compactMap { $0 as? EmulatedMeter } }

    private func serveModbus(_ raw: [UInt8], _ frontEnd: ModbusFrontEnd, _ pair: PseudoTerminalPair) {
        guard let adu = try? ModbusADU(frame: raw) else { return }
        let received = self.clock.now + (self.options.pace ? self.options.line.characterTime * raw.count : .zero)
        let now = Self.unixNow()
        var replies: [(address: UInt8, bytes: [UInt8])] = []
        self.lock.withLock {
            self.statistics.requests += 1
            let broadcast = adu.address == ModbusADU.broadcastAddress
            if broadcast { self.statistics.broadcasts += 1 }
            var changed = false
            for meter in self.meters() where broadcast || meter.busAddress == adu.address {
                let (answer, didChange) = frontEnd.handle(adu.pdu, meter: meter, broadcast: broadcast, now: now)
                changed = changed || didChange
                if let answer {
                    if answer.count == 2 && answer[0] & 0x80 != 0 && [1, 3].contains(answer[1]) {
                        self.statistics.unreadable += 1
                    }
                    replies.append((meter.busAddress, ModbusADU(address: meter.busAddress, pdu: answer).encoded()))
                }
            }
            if changed { self.onStateChange?() }
        }
        self.sendReplies(replies, request: raw, received: received, pair: pair) { bytes in
            var moved = bytes
            moved[0] = bytes[0] == 247 ? 1 : bytes[0] + 1
            return ModbusCRC.appending(to: Array(moved.dropLast(2)))
        }
    }

    private func serveDLT645(_ frame: DLT645Frame, raw: [UInt8], _ frontEnd: DLT645FrontEnd,
                             _ pair: PseudoTerminalPair)
    {
        let received = self.clock.now + (self.options.pace ? self.options.line.characterTime * raw.count : .zero)
        let now = Self.unixNow()
        var replies: [(address: UInt8, bytes: [UInt8])] = []
        self.lock.withLock {
            guard !frame.isResponse else { return }
            self.statistics.requests += 1
            if frame.address.isBroadcast { self.statistics.broadcasts += 1 }
            var changed = false
            for meter in self.meters() {
                let (answer, didChange) = frontEnd.handle(frame, meter: meter, now: now)
                changed = changed || didChange
                if let answer { replies.append((meter.busAddress, answer.encoded(preamble: 4))) }
            }
            if changed { self.onStateChange?() }
        }
        self.sendReplies(replies, request: raw, received: received, pair: pair) { bytes in
            // Another meter's address: the lowest digit pair plus one, checksum recomputed.
            guard let start = bytes.firstIndex(of: 0x68), bytes.count >= start + 12 else { return bytes }
            var moved = bytes
            let low = moved[start + 1]
            moved[start + 1] = low & 0x0F == 9 ? (low & 0xF0) : low + 1
            moved[moved.count - 2] = moved[start..<(moved.count - 2)].reduce(0, &+)
            return moved
        }
    }

    /// Shapes replies with the fault plan (by each meter's bus address) and sends them; several at once collide.
    private func sendReplies(
        _ replies: [(address: UInt8, bytes: [UInt8])], request: [UInt8], received: ContinuousClock.Instant,
        pair: PseudoTerminalPair, readdress: ([UInt8]) -> [UInt8]
    ) {
        guard !replies.isEmpty else { return }
        let nowMs = self.elapsedMs
        var shaped: [ShapedReply] = []
        self.lock.withLock {
            for reply in replies {
                if let s = self.injector.shape(bytes: reply.bytes, request: request, from: reply.address, nowMs: nowMs,
                                               readdress: readdress)
                {
                    shaped.append(s)
                    for fault in s.applied { self.statistics.faults[fault.rawValue, default: 0] += 1 }
                }
            }
            self.statistics.replies += shaped.count
            if shaped.count > 1 { self.statistics.collisions += 1 }
        }
        guard var reply = shaped.first else { return }
        if shaped.count > 1 {
            reply = ShapedReply(segments: [(shaped.map { $0.segments.first?.pauseMs ?? 0 }.max() ?? 0,
                                            collide(shaped.map(\.bytes)))],
                                vanishAfterMs: nil, burstMs: nil, applied: [])
        }
        self.send(reply, after: received, pair: pair)
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

extension Duration {
    /// Whole microseconds, rounded down; integer arithmetic only.
    var micros: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
