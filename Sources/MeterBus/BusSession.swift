import Dispatch
import MeterProtocol
import SerialPort
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One bus master session per serial port: the one place that owns the wire's time (docs/PROTOCOL.md §3, §6, §8).
///
/// Transactions run one at a time, in the order callers asked; callers block (synchronous API, for the CLI) or
/// suspend (`async` API, for the gateway) until theirs is done. Queued work runs on the session's own thread; a
/// blocking caller that finds the bus idle runs its transaction on its own thread, saving two thread hand-offs. Each request
/// carries its own timeout and its expected response; the session honours the inter-frame gap, skips the echo of
/// its own request on half-duplex adapters, matches answers by address, serial, command and SEQ, resends the same
/// SEQ and bytes on retries, calibrates its timeouts from what it observes, and keeps statistics per bus and per
/// target.
///
/// The session does not configure or close the transport: the caller opens the port with `line` and closes it
/// after ``close()``.
public final class BusSession: Sendable {
    /// How the session times and retries; every default is from docs/PROTOCOL.md §8.
    public struct Options: Sendable {
        /// `Tr` for meters: from the last byte of a request to the first byte of the answer.
        public var responseTime: Duration = .milliseconds(50)
        /// `Tr` for card operations (READ_CARD, WRITE_CARD, ERASE_CARD).
        public var slowResponseTime: Duration = .milliseconds(500)
        /// What a USB-serial adapter may add (a 16 ms latency timer is common), until measured.
        public var adapterLatency: Duration = .milliseconds(20)
        /// Tries after the first for a lost, damaged or BUSY exchange.
        public var retries = 2
        /// Calibrated timeouts stay within these bounds.
        public var minimumTimeout: Duration = .milliseconds(10)
        public var maximumTimeout: Duration = .seconds(2)
        /// Learn turnarounds and adapter latency and set timeouts from them (``TimingCalibrator``).
        public var calibrate = true
        /// Added to twice the observed p99 turnaround.
        public var calibrationMargin: Duration = .milliseconds(2)
        /// Samples before a calibrated timeout may fall below the default.
        public var calibrationMinimumSamples = 5
        /// Half-duplex adapters that send our own request back.
        public var echo = EchoHandling.auto
        /// nil: `Tg` = max(3.5 Tc, 2 ms).
        public var interFrameGap: Duration?
        /// Quiet time after a broadcast on top of `Tg`, so devices finish acting on it.
        public var postBroadcastWait: Duration = .milliseconds(20)
        /// nil: random, so a late answer to a previous process is unlikely to match.
        public var initialSequence: UInt8?
        /// Receives every byte sent and received, with timing, and what was discarded: `--verbose`.
        public var trace: (@Sendable (BusTraceEvent) -> Void)?

        public init() {}
    }

    /// What to do with the adapter's copy of our own request.
    public enum EchoHandling: Sendable {
        /// If our exact request bytes come back first, skip them (and count them).
        case auto
        /// Never strip; an echo is still discarded as "not an answer" and reported as such.
        case off
    }

    public let path: String
    public let line: LineSettings
    public let options: Options
    private let executor: BusExecutor
    private let shared = SessionShared()
    /// Confined to the executor's thread: only jobs touch it.
    private nonisolated(unsafe) let link: BusLink

    public init(transport: any SerialTransport, line: LineSettings, options: Options = Options()) {
        self.path = transport.path
        self.line = line
        self.options = options
        self.link = BusLink(transport: transport, line: line, options: options, shared: self.shared)
        self.executor = BusExecutor(name: "bus \(transport.path)")
    }

    deinit { self.executor.close() }

    /// Finishes the transaction in flight; requests still queued fail with ``BusError/cancelled``. Idempotent.
    public func close() { self.executor.close() }

    // MARK: Synchronous API (blocks the calling thread; for the CLI)

    /// Sends `request` to `target` and returns its answer.
    ///
    /// `timeout` is the time allowed from the end of the request to the first byte of the answer (nil:
    /// calibrated, see ``TimingCalibrator``); a started answer is always given its transmission time.
    /// `retries` overrides ``Options/retries``. Throws a ``BusError`` that says what was seen.
    public func transaction<R: NativeRequest>(
        _ request: R, to target: Target, timeout: Duration? = nil, retries: Int? = nil
    ) throws(BusError) -> R.Response {
        try self.answer(Exchange(command: R.command.rawValue, payload: request.payload, target: target,
                                 timeout: timeout, retries: retries)).decode(R.Response.self)
    }

    /// A raw request (command byte and payload) and the matching response frame; NAKs throw
    /// ``BusError/refused(_:_:)``.
    public func exchange(
        command: UInt8, payload: [UInt8], to target: Target, timeout: Duration? = nil, retries: Int? = nil
    ) throws(BusError) -> Frame {
        try self.answer(Exchange(command: command, payload: payload, target: target, timeout: timeout,
                                 retries: retries)).frame
    }

    /// One request as the session's thread runs it.
    private struct Exchange: Sendable {
        var command: UInt8
        var payload: [UInt8]
        var target: Target
        var timeout: Duration?
        var retries: Int?
    }

    /// The hot path of every transaction, kept free of generics (the response is decoded by the caller).
    private func answer(_ x: Exchange) throws(BusError) -> BusLink.Answer {
        if self.executor.isCurrent {
            return try self.link.answer(command: x.command, payload: x.payload, to: x.target, timeout: x.timeout,
                                        retries: x.retries, observer: nil)
        }
        // An idle bus: run on this thread. The inter-frame gap is kept by the next transaction's start.
        let inline = try self.executor.runInline { () throws(BusError) -> BusLink.Answer in
            try self.link.answer(command: x.command, payload: x.payload, to: x.target, timeout: x.timeout,
                                 retries: x.retries, observer: nil)
        }
        if let inline { return inline }
        let job = AnswerJob()
        let link = UnsafeTransfer(self.link)
        self.executor.submit { run in
            if run {
                do throws(BusError) {
                    job.answer = try link.value.answer(command: x.command, payload: x.payload, to: x.target,
                                                       timeout: x.timeout, retries: x.retries, observer: nil)
                } catch {
                    job.error = error
                }
            } else {
                job.error = .cancelled
            }
            job.done.signal()
            // The inter-frame gap, kept here after the caller has its answer (see withExclusiveAccess).
            if run { link.value.waitForWire() }
        }
        job.done.wait()
        if let error = job.error { throw error }
        return job.answer!
    }

    private func answer(_ x: Exchange) async throws(BusError) -> BusLink.Answer {
        try await self.withExclusiveAccess { link throws(BusError) in
            try link.answer(command: x.command, payload: x.payload, to: x.target, timeout: x.timeout,
                            retries: x.retries, observer: nil)
        }
    }

    /// Broadcasts a message no device answers (BROADCAST_TIME) and waits the post-broadcast time.
    public func broadcast<M: NativeMessage>(_ message: M) throws(BusError) {
        try self.withExclusiveAccess { link throws(BusError) in try link.broadcast(message) }
    }

    /// Runs `body` on the session's thread with the wire to itself: no other caller's transaction comes in
    /// between. Called from inside such a body (or a driver operation), it runs inline.
    public func withExclusiveAccess<T>(_ body: (BusLink) throws(BusError) -> T) throws(BusError) -> T {
        if self.executor.isCurrent { return try body(self.link) }
        if let inline = try self.executor.runInline({ () throws(BusError) -> T in try body(self.link) }) {
            return inline
        }
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let link = UnsafeTransfer(self.link)
        withoutActuallyEscaping(body) { body in
            // The body does not escape: the job lets go of it before it signals, and this waits for that.
            box.body = body
            self.executor.submit { run in
                do {
                    let body = box.body!
                    box.body = nil
                    box.result = run
                        ? Result { () throws(BusError) -> T in try body(link.value) } : .failure(.cancelled)
                }
                done.signal()
                // The inter-frame gap, kept here after the caller has its answer: the next job, queued meanwhile,
                // then starts at once instead of waking the thread twice.
                if run { link.value.waitForWire() }
            }
            done.wait()
        }
        return try box.result!.get()
    }

    // MARK: Async API (suspends the task; the wire work runs on the session's thread)

    /// The `async` form of ``transaction(_:to:timeout:retries:)``.
    public func transaction<R: NativeRequest>(
        _ request: R, to target: Target, timeout: Duration? = nil, retries: Int? = nil
    ) async throws(BusError) -> R.Response {
        try await self.answer(Exchange(command: R.command.rawValue, payload: request.payload, target: target,
                                       timeout: timeout, retries: retries)).decode(R.Response.self)
    }

    /// The `async` form of ``exchange(command:payload:to:timeout:retries:)``.
    public func exchange(
        command: UInt8, payload: [UInt8], to target: Target, timeout: Duration? = nil, retries: Int? = nil
    ) async throws(BusError) -> Frame {
        try await self.answer(Exchange(command: command, payload: payload, target: target, timeout: timeout,
                                       retries: retries)).frame
    }

    /// The `async` form of ``broadcast(_:)``.
    public func broadcast<M: NativeMessage>(_ message: M) async throws(BusError) {
        try await self.withExclusiveAccess { link throws(BusError) in try link.broadcast(message) }
    }

    /// The `async` form of ``withExclusiveAccess(_:)``. A task cancelled before its turn gets
    /// ``BusError/cancelled`` and nothing is sent; once on the wire, a transaction runs to its end.
    public func withExclusiveAccess<T: Sendable>(
        _ body: @escaping @Sendable (BusLink) throws(BusError) -> T
    ) async throws(BusError) -> T {
        let cancelled = Mutex(false)
        let link = UnsafeTransfer(self.link)
        let result: Result<T, BusError> = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, BusError>, Never>) in
                self.executor.submit { run in
                    guard run, !cancelled.withLock({ $0 }) else {
                        continuation.resume(returning: .failure(.cancelled))
                        return
                    }
                    continuation.resume(returning: Result { () throws(BusError) -> T in try body(link.value) })
                    link.value.waitForWire()
                }
            }
        } onCancel: {
            cancelled.withLock { $0 = true }
        }
        return try result.get()
    }

    // MARK: Observations

    /// Counters and latency percentiles so far, for the bus and per target.
    public var statistics: BusStatistics {
        self.shared.statistics.withLock { $0.snapshot(cpuMicros: self.masterCPUTime.micros) }
    }

    /// What the session learned about a target's turnaround, and the first-byte timeout it uses now.
    public func calibration(for target: Target, cardOperation: Bool = false) -> CalibrationState {
        let key = CalibrationKey(target: target, slow: cardOperation)
        let calibrator = self.shared.calibration.withLock {
            $0.turnaround[key] ?? TimingCalibrator(minimumSamples: self.options.calibrationMinimumSamples)
        }
        return CalibrationState(samples: calibrator.sampleCount, p50Micros: calibrator.percentile(50) ?? 0,
                                p99Micros: calibrator.percentile(99) ?? 0,
                                timeout: self.link.firstByteTimeout(for: key), isCalibrated: calibrator.isCalibrated)
    }

    /// The adapter's delivery lag as measured (bytes held back and delivered in a burst), and the allowance used.
    public var adapterCalibration: CalibrationState {
        let lag = self.shared.calibration.withLock { $0.adapterLag }
        return CalibrationState(samples: lag.sampleCount, p50Micros: lag.percentile(50) ?? 0,
                                p99Micros: lag.percentile(99) ?? 0, timeout: self.link.adapterAllowance,
                                isCalibrated: lag.isCalibrated)
    }

    /// CPU time the bus master has used: its own thread's, plus transactions run inline on blocking callers'
    /// threads; not its callers' other work (zero where thread clocks cannot be read).
    public var masterCPUTime: Duration { self.executor.cpuTime }

    /// CPU time of the session's own thread alone; with the callers' thread clocks, for benchmarks.
    public var sessionThreadCPUTime: Duration { .nanoseconds(self.executor.threadCPUTimeNanos) }
}

/// State read from any thread: statistics and calibration, each behind its own lock (held for microseconds).
final class SessionShared: Sendable {
    let statistics = Mutex(StatisticsStore())
    let calibration = Mutex(CalibrationStore())
}

struct CalibrationStore {
    var turnaround: [CalibrationKey: TimingCalibrator] = [:]
    var adapterLag = TimingCalibrator()
}

/// An answer handed from the executor's thread to the waiting caller (ordered by the semaphore).
private final class AnswerJob: @unchecked Sendable {
    let done = DispatchSemaphore(value: 0)
    var answer: BusLink.Answer?
    var error: BusError?
}

/// A result handed from the executor's thread to the waiting caller (ordered by the semaphore).
private final class ResultBox<T>: @unchecked Sendable {
    var body: ((BusLink) throws(BusError) -> T)?
    var result: Result<T, BusError>?
}

/// Moves a value to the executor's thread. Used for the link (only ever touched there) and for a synchronous
/// caller's closure (which the caller outlives by waiting).
struct UnsafeTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
