import MeterProtocol
import SerialPort
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The wire, as the job running on a session's executor holds it: every transaction on one bus goes through here,
/// one at a time (docs/PROTOCOL.md §3, §6, §8).
///
/// A `BusLink` exists only on its session's thread; jobs receive it from ``BusSession/withExclusiveAccess(_:)`` to
/// run several transactions without another caller in between (read the last sequence, then apply credit).
///
/// Per try: wait for the inter-frame gap, flush stale input (first try) or collect a late answer that arrived
/// since the last try (retries), send the same bytes with the same SEQ, then read until the answer is complete.
/// Reading sleeps for the time the missing bytes need on the wire instead of waking for every byte, so a 56-byte
/// answer costs three or four reads. Anything that is not the answer is classified, counted and kept as evidence.
public final class BusLink {
    let transport: any SerialTransport
    public let line: LineSettings
    let options: BusSession.Options
    let shared: SessionShared
    let characterTime: Duration
    /// `Tc` in whole nanoseconds (rounded up), for cheap integer arithmetic on the hot path.
    let characterNanos: Int64
    /// Inter-frame gap `Tg` (§8).
    let gap: Duration
    /// Abort silence `Ta` (§8): a started frame is given up after this much silence.
    let abortSilence: Duration
    /// Modbus RTU t3.5 and t1.5 at this line's speed (see ``modbusSilence(baudRate:characterNanos:)``), computed
    /// once: `Duration` arithmetic with integers is a generic call into the runtime.
    let modbusSilence: Duration
    let modbusCharacterGap: Duration
    let epoch: BusInstant

    private var sequence: UInt8
    /// The next request may start at this instant (gap after the last answer, broadcast or timeout).
    var wireFreeAt: BusInstant
    private var reception = Reception()
    /// The last transaction that gave up: a late answer to it, arriving later, still teaches its turnaround.
    private var lastGiveUp: GiveUp?
    /// Length of the last answer per command, to predict when the next one is complete.
    private var answerLength = AnswerLengths()
    /// Per target, transactions read after a predicted sleep since the last one measured exactly.
    var predictions: [CalibrationKey: Int] = [:]
    /// The last exchange ended with its answer and nothing else on the line, at this instant: stale input is then
    /// unlikely, and a flush (a system call) before the next request is skipped for a while. Whatever arrives
    /// anyway is handled by the decoder and the SEQ match; the flush is hygiene, not what makes matching safe.
    var cleanSince: BusInstant?

    struct GiveUp {
        var key: CalibrationKey
        var sequence: UInt8
        var command: UInt8
        var sends: SendTimes
    }

    init(transport: any SerialTransport, line: LineSettings, options: BusSession.Options, shared: SessionShared) {
        self.transport = transport
        self.line = line
        self.options = options
        self.shared = shared
        self.characterTime = line.characterTime
        let (seconds, attoseconds) = line.characterTime.components
        self.characterNanos = seconds * 1_000_000_000 + (attoseconds + 999_999_999) / 1_000_000_000
        self.gap = options.interFrameGap ?? max(line.characterTime * 3.5, .milliseconds(2))
        self.abortSilence = max(line.characterTime * 40, .milliseconds(50))
        self.modbusSilence = Self.modbusSilence(baudRate: line.baudRate, characterNanos: self.characterNanos)
        self.modbusCharacterGap = .nanoseconds(self.characterNanos * 3 / 2)
        self.epoch = BusInstant.now
        self.wireFreeAt = self.epoch
        var random = SystemRandomNumberGenerator()
        // A random start makes it unlikely that a late answer to a previous process's request matches.
        self.sequence = options.initialSequence ?? UInt8.random(in: 0...255, using: &random)
    }

    // MARK: Transactions

    /// Sends `request` to `target` and returns its typed answer
    /// (see ``BusSession/transaction(_:to:timeout:retries:)``).
    public func transaction<R: NativeRequest>(
        _ request: R, to target: Target, timeout: Duration? = nil, retries: Int? = nil
    ) throws(BusError) -> R.Response {
        try self.answer(command: R.command.rawValue, payload: request.payload, to: target, timeout: timeout,
                        retries: retries, observer: nil).decode(R.Response.self)
    }

    /// A matching answer, with what was seen on the way (for an unreadable payload's error).
    struct Answer: Sendable {
        var frame: Frame
        var evidence: Evidence

        func decode<M: NativeMessage>(_ type: M.Type) throws(BusError) -> M {
            do throws(PayloadError) {
                return try M(payload: self.frame.payload)
            } catch {
                throw .unexpectedPayload(error, self.evidence)
            }
        }
    }

    /// Sends a raw request and returns the matching response frame; a NAK is thrown as ``BusError/refused(_:_:)``.
    /// `observer` sees every valid frame that was discarded (late answers, other addresses), e.g. for a sweep.
    public func exchange(
        command: UInt8, payload: [UInt8], to target: Target, timeout: Duration? = nil, retries: Int? = nil,
        observer: ((Frame) -> Void)? = nil
    ) throws(BusError) -> Frame {
        try self.answer(
            command: command, payload: payload, to: target, timeout: timeout, retries: retries, observer: observer
        ).frame
    }

    /// Broadcasts a message no device answers (BROADCAST_TIME), then keeps the bus quiet for the post-broadcast
    /// wait so that devices finish acting on it (§8).
    public func broadcast<M: NativeMessage>(_ message: M) throws(BusError) {
        let frame = Frame(address: Frame.broadcastAddress, serial: Frame.anySerial, sequence: self.nextSequence(),
                          command: M.command, payload: message.payload)
        let bytes = frame.encoded()
        var tally = TransactionTally()
        do throws(BusError) {
            self.waitForWire()
            try self.flushInput()
            let (_, drained) = try self.send(bytes, attempt: 1)
            tally.framesSent = 1
            tally.bytesSent = bytes.count
            tally.answered = true
            self.wireFreeAt = drained + self.gap + self.options.postBroadcastWait
            self.commit(tally, target: nil)
        } catch {
            self.commit(tally, target: nil)
            throw error
        }
    }

    /// The wire time of `count` characters.
    func characters(_ count: Int) -> Duration { .nanoseconds(self.characterNanos * Int64(count)) }

    /// The next SEQ: incremented per new transaction, wrapping (§3).
    func nextSequence() -> UInt8 {
        self.sequence &+= 1
        return self.sequence
    }

    /// Time since the session started, for trace lines.
    func since(_ instant: BusInstant) -> Duration { instant - self.epoch }

    // MARK: The exchange

    /// The exchange itself, not generic over the response type: the session's thread runs this one piece of code
    /// for every command, and the caller decodes the payload.
    func answer(
        command: UInt8, payload: [UInt8], to target: Target, timeout: Duration?, retries: Int?,
        observer: ((Frame) -> Void)?
    ) throws(BusError) -> Answer {
        precondition(target != .broadcast, "broadcasts get no answer: use broadcast(_:) or Discovery")
        let request = Frame(address: target.frameAddress, serial: target.frameSerial, sequence: self.nextSequence(),
                            command: command, payload: payload)
        let bytes = request.encoded()
        let key = CalibrationKey(target: target, slow: Command(rawValue: command)?.isSlow ?? false)
        let learned = self.learned(key)
        let firstByteTimeout = timeout ?? learned.firstByteTimeout
        let tries = 1 + max(0, retries ?? self.options.retries)
        var evidence = Evidence(target: target, command: command, sequence: request.sequence, line: self.line,
                                requestBytes: bytes)
        var tally = TransactionTally()
        var sends = SendTimes()
        var firstStart: BusInstant?
        self.reception.reset()
        self.reception.expectedLength = self.answerLength[command]

        func finish(_ frame: Frame, _ heard: Heard<Frame>, attempt: Int) -> Answer {
            self.wireFreeAt = heard.lastByteAt + self.gap
            tally.answered = true
            let quiet = tally.framesSent == 1 && tally.crcErrors == 0 && tally.partialFrames == 0
                && tally.garbageBytes == 0 && tally.staleFrames == 0 && tally.wrongAddress == 0
            self.cleanSince = quiet && self.reception.decoder.bufferedByteCount == 0 ? heard.lastByteAt : nil
            if let start = firstStart { tally.latencyMicros = heard.lastByteAt.micros(since: start) }
            if !frame.isNak { self.answerLength[command] = frame.encodedLength }
            self.calibrate(key, heard: heard, sends: sends, firstTry: attempt == 1 && sends.count == 1)
            if attempt == 1 && sends.count == 1 && heard.exact, let drained = sends.first {
                tally.turnaroundMicros = heard.firstByteAt.micros(since: drained)
            }
            self.commit(tally, target: target)
            self.trace(.answered(frame, at: self.since(heard.lastByteAt),
                                 latency: firstStart.map { heard.lastByteAt - $0 } ?? .zero))
            return Answer(frame: frame, evidence: evidence)
        }

        do throws(BusError) {
            for attempt in 1...tries {
                self.waitForWire()
                var record = AttemptRecord()
                if attempt == 1 {
                    try self.learnFromLateAnswers()
                    if let clean = self.cleanSince, BusInstant.now - clean < .seconds(1) {
                        // Nothing stale is expected: see `cleanSince`.
                    } else {
                        try self.flushInput()
                    }
                    self.cleanSince = nil
                } else if let drained = sends.last, case let queued = try self.readQueued(), !queued.isEmpty {
                    // An answer to an earlier try may have arrived since its deadline: take it instead of
                    // sending again (and talking over the meter on a half-duplex bus).
                    // What arrives now belongs to the previous try's evidence, timed from its request.
                    var late = AttemptRecord()
                    let at = BusInstant.now
                    tally.bytesReceived += queued.count
                    late.keep(Evidence.Chunk(micros: at.micros(since: drained), bytes: queued))
                    self.trace(.received(bytes: queued, at: self.since(at), sinceSend: at - drained))
                    self.reception.append(queued, at: at, exact: false)
                    let heard = try self.receive(
                        request: request, bytes: bytes, target: target, drained: drained, firstByteTimeout: .zero,
                        echo: false, lastByteAt: at, record: &late, tally: &tally, observer: observer)
                    if let heard, let frame = try self.accept(heard, attempt: attempt - 1, tries: tries,
                                                              timeout: firstByteTimeout, evidence: &evidence,
                                                              record: &late, tally: &tally) {
                        return finish(frame, heard, attempt: attempt - 1)
                    }
                    let previous = evidence.attempts.count - 1
                    evidence.attempts[previous].chunks += late.chunks
                    if late.seen.weight > evidence.attempts[previous].seen.weight {
                        evidence.attempts[previous].seen = late.seen
                    }
                }
                let (start, drained) = try self.send(bytes, attempt: attempt)
                firstStart = firstStart ?? start
                sends.append(drained)
                tally.framesSent += 1
                tally.bytesSent += bytes.count
                let heard = try self.receive(
                    request: request, bytes: bytes, target: target, drained: drained,
                    firstByteTimeout: firstByteTimeout, echo: self.options.echo == .auto, lastByteAt: nil,
                    wakeAt: attempt == 1 ? self.predictedEnd(key, learned, length: self.answerLength[command],
                                                                      drained: drained) : nil,
                    record: &record, tally: &tally, observer: observer)
                if let heard {
                    if let frame = try self.accept(heard, attempt: attempt, tries: tries, timeout: firstByteTimeout,
                                                   evidence: &evidence, record: &record, tally: &tally) {
                        return finish(frame, heard, attempt: attempt)
                    }
                    // NAK BUSY: retry after the gap.
                    self.wireFreeAt = heard.lastByteAt + self.gap
                } else {
                    tally.timeouts += 1
                    self.wireFreeAt = BusInstant.now + self.gap
                }
                evidence.attempts.append(Evidence.Attempt(seen: record.seen, timeout: firstByteTimeout,
                                                          chunks: record.chunks))
            }
            self.lastGiveUp = GiveUp(key: key, sequence: request.sequence, command: command, sends: sends)
            let error: BusError = evidence.attempts.contains { $0.seen.isDamage }
                ? .corrupt(evidence) : .noAnswer(evidence)
            throw error
        } catch {
            if case .refused = error { tally.answered = true }
            self.commit(tally, target: target)
            self.trace(.gaveUp(error, at: self.since(BusInstant.now)))
            throw error
        }
    }

    /// Turns a matching frame into the answer, or a refusal; returns nil for NAK BUSY with tries left.
    private func accept(
        _ heard: Heard<Frame>, attempt: Int, tries: Int, timeout: Duration, evidence: inout Evidence,
        record: inout AttemptRecord, tally: inout TransactionTally
    ) throws(BusError) -> Frame? {
        let frame = heard.frame
        guard frame.isNak else { return frame }
        tally.naks += 1
        let nak: Nak
        do throws(PayloadError) {
            nak = try Nak(payload: frame.payload)
        } catch {
            throw .unexpectedPayload(error, evidence)
        }
        if nak.knownCode == .busy && attempt < tries {
            record.note(.busy)
            return nil
        }
        evidence.attempts.append(Evidence.Attempt(seen: record.seen, timeout: timeout, chunks: record.chunks))
        self.wireFreeAt = heard.lastByteAt + self.gap
        throw .refused(nak, evidence)
    }

    // MARK: Receiving

    /// What one try saw, for the evidence.
    struct AttemptRecord {
        var seen = Evidence.Seen.nothing
        /// The first chunk is kept without an array: most tries read their answer in one, and the evidence is
        /// only assembled when a try fails.
        private var firstChunk: Evidence.Chunk?
        private var moreChunks: [Evidence.Chunk] = []

        var chunks: [Evidence.Chunk] {
            guard let first = self.firstChunk else { return [] }
            return [first] + self.moreChunks
        }

        mutating func keep(_ chunk: Evidence.Chunk) {
            if self.firstChunk == nil { self.firstChunk = chunk } else { self.moreChunks.append(chunk) }
        }

        mutating func note(_ s: Evidence.Seen) {
            if s.weight > self.seen.weight { self.seen = s }
        }
    }

    /// Reads until the answer to `request` is complete (returned), or until `firstByteTimeout` after `drained`
    /// passed with no frame in progress (nil): the bus's one receive loop with the native decoder.
    private func receive(
        request: Frame, bytes: [UInt8], target: Target, drained: BusInstant,
        firstByteTimeout: Duration, echo: Bool, lastByteAt: BusInstant?,
        wakeAt: BusInstant? = nil, record: inout AttemptRecord, tally: inout TransactionTally,
        observer: ((Frame) -> Void)?
    ) throws(BusError) -> Heard<Frame>? {
        try self.receive(
            &self.reception, request: bytes, drained: drained, firstByteTimeout: firstByteTimeout, echo: echo,
            lastByteAt: lastByteAt, wakeAt: wakeAt, record: &record, tally: &tally
        ) { frame, at, tally in
            if frame.isResponse && frame.sequence == request.sequence && frame.command == request.command
                && target.isSource(of: frame)
            {
                return .answer
            }
            let seen = self.classify(frame, request: request, bytes: bytes, at: at, tally: &tally)
            observer?(frame)
            return .discard(seen)
        }
    }

    /// Names a valid frame that is not the answer.
    private func classify(
        _ frame: Frame, request: Frame, bytes: [UInt8], at: BusInstant, tally: inout TransactionTally
    ) -> Evidence.Seen {
        guard frame.isResponse else {
            if frame == request {
                tally.echoes += 1
                self.shared.statistics.withLock { $0.echoDetected = true }
                return .onlyEcho
            }
            return .otherTraffic
        }
        if frame.sequence == request.sequence && frame.command == request.command {
            tally.wrongAddress += 1
            return .wrongAddress(address: frame.address, serial: frame.serial)
        }
        tally.staleFrames += 1
        self.learnLate(frame, at: at)
        return .staleSequence(frame.sequence)
    }

    // MARK: Sending and the gap

    func send(_ bytes: [UInt8], attempt: Int) throws(BusError) -> (BusInstant,
                                                                            BusInstant)
    {
        let start = BusInstant.now
        let wireTime = self.characters(bytes.count)
        do {
            try self.transport.write(bytes, deadline: (start + wireTime + wireTime + .seconds(1)).continuous)
        } catch .removed(let path) {
            throw .adapterGone(path: path)
        } catch {
            throw .serial(error)
        }
        self.trace(.sent(bytes: bytes, attempt: attempt, at: self.since(start)))
        // tcdrain returns once the driver's queue is empty; a pseudo-terminal (and some USB drivers) return at
        // once, but the last stop bit cannot have left before the bytes' wire time.
        return (start, max(BusInstant.now, start + wireTime))
    }

    func flushInput() throws(BusError) {
        do {
            try self.transport.flush(.input)
        } catch .removed(let path) {
            throw .adapterGone(path: path)
        } catch {
            throw .serial(error)
        }
    }

    /// Reads what is queued without waiting.
    func readQueued() throws(BusError) -> [UInt8] {
        do {
            return try self.transport.read(upTo: 4096, deadline: .now)
        } catch .timeout {
            return []
        } catch .removed(let path) {
            throw .adapterGone(path: path)
        } catch {
            throw .serial(error)
        }
    }

    func waitForWire() { self.sleep(until: self.wireFreeAt) }

    /// Sleeps on this thread until `instant` (nanosleep, re-armed after interruptions).
    func sleep(until instant: BusInstant) {
        var remaining = instant - BusInstant.now
        while remaining > .zero {
            let nanos = remaining.nanos
            var ts = timespec(tv_sec: Int(nanos / 1_000_000_000), tv_nsec: Int(nanos % 1_000_000_000))
            // A sleep that was not interrupted has lasted the whole time: no need to read the clock again.
            guard nanosleep(&ts, nil) != 0 else { return }
            remaining = instant - BusInstant.now
        }
    }

    // MARK: Calibration

    /// First-byte timeout for a target: calibrated from its turnarounds, else `Tr` + adapter allowance (§8).
    func firstByteTimeout(for key: CalibrationKey) -> Duration {
        self.learned(key).firstByteTimeout
    }

    /// What calibration knows about a target and the adapter, read under one lock per transaction and reduced to
    /// the few numbers a transaction uses (copying the calibrators would copy their sample arrays on the next
    /// record).
    struct Learned {
        /// Calibrated from the target's turnarounds, else `Tr` + adapter allowance (§8).
        var firstByteTimeout: Duration
        /// What the adapter may add to a byte's arrival (``adapterAllowance``).
        var adapterAllowance: Duration
        /// The target's shortest turnaround in µs, once calibrated.
        var shortestTurnaroundMicros: Int64?
        /// The adapter's median delivery lag in µs, once calibrated.
        var medianAdapterLagMicros: Int64?
    }

    func learned(_ key: CalibrationKey) -> Learned {
        self.shared.calibration.withLock { c in
            self.learned(key, turnaround: c.turnaround[key], adapterLag: c.adapterLag)
        }
    }

    /// What a transaction to `key` uses of its calibrators (called under the calibration lock).
    func learned(_ key: CalibrationKey, turnaround: TimingCalibrator?, adapterLag: TimingCalibrator) -> Learned {
        let o = self.options
        let allowance = self.adapterAllowance(adapterLag)
        let base = (key.slow ? o.slowResponseTime : o.responseTime) + allowance
        let timeout: Duration
        if !o.calibrate {
            timeout = base
        } else if let turnaround {
            timeout = turnaround.timeout(default: base, margin: o.calibrationMargin, minimum: o.minimumTimeout,
                                         maximum: o.maximumTimeout)
        } else {
            timeout = TimingCalibrator(minimumSamples: o.calibrationMinimumSamples).timeout(
                default: base, margin: o.calibrationMargin, minimum: o.minimumTimeout, maximum: o.maximumTimeout)
        }
        return Learned(
            firstByteTimeout: timeout, adapterAllowance: allowance,
            shortestTurnaroundMicros: turnaround?.isCalibrated == true ? turnaround?.shortest : nil,
            medianAdapterLagMicros: adapterLag.isCalibrated ? adapterLag.percentile(50) : nil)
    }

    /// When the answer should be complete, so that the whole frame is read after one sleep instead of waking for
    /// its first byte and again for the rest: the target's shortest turnaround plus the wire time of an answer of
    /// `length` bytes (from the request, or the last answer to the same command). nil until the target is
    /// calibrated and then on one transaction in eight, which wait for the first byte and measure the turnaround
    /// exactly: a frame read after a sleep tells when it was complete, not when it began. Waking too late costs
    /// latency, never an answer; the shortest sample makes that rare. Also nil where the line delivers answers in
    /// bursts rather than at wire pace (the adapter's median lag is over half the answer's wire time: a fast
    /// pseudo-terminal, a USB adapter that buffers): there the first byte comes with the rest, and waiting for it
    /// is one wake-up too.
    func predictedEnd(
        _ key: CalibrationKey, _ learned: Learned, length: Int?, drained: BusInstant
    ) -> BusInstant? {
        guard self.options.calibrate, let length, length > 1,
            let shortest = learned.shortestTurnaroundMicros, let lag = learned.medianAdapterLagMicros
        else { return nil }
        let wire = self.characters(length - 1)
        guard .microseconds(lag * 2) < wire else { return nil }
        // Counted only where a prediction could be made: a bursty line never touches the table.
        let count = self.predictions[key, default: 0]
        guard count < 7 else {
            self.predictions[key] = 0
            return nil
        }
        self.predictions[key] = count + 1
        return drained + .microseconds(shortest) + wire
    }

    /// The configured adapter latency until enough answers showed how late the adapter delivers bytes.
    var adapterAllowance: Duration {
        self.shared.calibration.withLock { self.adapterAllowance($0.adapterLag) }
    }

    private func adapterAllowance(_ lag: TimingCalibrator) -> Duration {
        guard self.options.calibrate, lag.isCalibrated, let p99 = lag.percentile(99) else {
            return self.options.adapterLatency
        }
        return min(.microseconds(2 * p99) + self.options.calibrationMargin, self.options.maximumTimeout)
    }

    private func calibrate(_ key: CalibrationKey, heard: Heard<Frame>, sends: SendTimes, firstTry: Bool) {
        self.calibrate(key, firstByteAt: heard.firstByteAt, lastByteAt: heard.lastByteAt,
                       length: heard.frame.encodedLength, exact: heard.exact, sends: sends, firstTry: firstTry)
    }

    /// Learns a target's turnaround and the adapter's lag from one answer of `length` bytes.
    func calibrate(
        _ key: CalibrationKey, firstByteAt: BusInstant, lastByteAt: BusInstant,
        length n: Int, exact: Bool, sends: SendTimes, firstTry: Bool
    ) {
        guard self.options.calibrate, exact, let first = sends.first else { return }
        let arrival = firstByteAt.micros(since: first)
        let span = lastByteAt - firstByteAt
        let lag = max(.zero, self.characters(n - 1) - span)
        let minimumSamples = self.options.calibrationMinimumSamples
        self.shared.calibration.withLock { c in
            // Recorded in place: a copy taken out of the dictionary would copy its sample arrays.
            if firstTry {
                c.turnaround[key, default: TimingCalibrator(minimumSamples: minimumSamples)].record(micros: arrival)
            } else {
                // Every try's answer looks the same (same SEQ): attribute it to the most plausible try.
                let sendMicros = sends.array.map { $0.micros(since: first) }
                c.turnaround[key, default: TimingCalibrator(minimumSamples: minimumSamples)].record(
                    attributing: arrival, sendMicros: sendMicros)
            }
            c.adapterLag.record(lag)
        }
    }

    /// Before the first try: a late answer to the transaction that gave up last tells how slow that meter is.
    private func learnFromLateAnswers() throws(BusError) {
        guard self.lastGiveUp != nil else { return }
        let queued = try self.readQueued()
        guard !queued.isEmpty else { return }
        let now = BusInstant.now
        for item in FrameDecoder.decodeAll(queued) {
            if case .frame(let frame, _) = item { self.learnLate(frame, at: now) }
        }
    }

    private func learnLate(_ frame: Frame, at: BusInstant) {
        guard let g = self.lastGiveUp, self.options.calibrate, frame.isResponse, frame.sequence == g.sequence,
            frame.command == g.command, g.key.target.isSource(of: frame), let first = g.sends.first
        else { return }
        self.lastGiveUp = nil
        let minimumSamples = self.options.calibrationMinimumSamples
        let sendMicros = g.sends.array.map { $0.micros(since: first) }
        self.shared.calibration.withLock { c in
            c.turnaround[g.key, default: TimingCalibrator(minimumSamples: minimumSamples)].record(
                attributing: at.micros(since: first), sendMicros: sendMicros)
        }
    }

    // MARK: Statistics and trace

    func commit(_ tally: TransactionTally, target: Target?) {
        self.shared.statistics.withLock { $0.add(tally, target: target) }
    }

    func trace(_ event: @autoclosure () -> BusTraceEvent) {
        if let trace = self.options.trace { trace(event()) }
    }

    // MARK: Discovery support

    /// What one DISCOVER window held (docs/PROTOCOL.md §7).
    struct DiscoverWindow {
        /// Valid DISCOVER answers with this query's SEQ.
        var answers: [(frame: Frame, response: DiscoverResponse)] = []
        /// Anything else on the line in the window: garbage, damaged or cut-short frames, other frames.
        var otherBytes = false
        /// Valid DISCOVER answers to earlier queries (other SEQ), with when they were read.
        var late: [(frame: Frame, at: BusInstant)] = []
        var sequence: UInt8 = 0
        var drained: BusInstant
    }

    /// Broadcasts DISCOVER and listens for the whole window (longer while a frame is still arriving).
    func discover(_ request: DiscoverRequest, window: Duration) throws(BusError) -> DiscoverWindow {
        var tally = TransactionTally()
        do throws(BusError) {
            self.waitForWire()
            var late: [(frame: Frame, at: BusInstant)] = []
            let queued = try self.readQueued()
            if !queued.isEmpty {
                let now = BusInstant.now
                for item in FrameDecoder.decodeAll(queued) {
                    if case .frame(let f, _) = item, f.isResponse, f.command == Command.discover.rawValue {
                        late.append((f, now))
                    }
                }
            }
            try self.flushInput()
            let frame = Frame(request: request, address: Frame.broadcastAddress, sequence: self.nextSequence())
            let bytes = frame.encoded()
            let (_, drained) = try self.send(bytes, attempt: 1)
            tally.framesSent = 1
            tally.bytesSent = bytes.count
            var result = DiscoverWindow(late: late, sequence: frame.sequence, drained: drained)
            self.reception.reset()
            var echo = EchoStripper(request: bytes, active: self.options.echo == .auto)
            let end = drained + window
            var lastByteAt: BusInstant?
            var finishing = false
            listening: while true {
                while let item = self.reception.decoder.next() {
                    switch item {
                    case .skipped(_, let count, let reason):
                        result.otherBytes = true
                        if reason == .noStartMarker { tally.garbageBytes += count } else { tally.crcErrors += 1 }
                    case .frame(let f, let offset):
                        if f.isResponse && f.command == Command.discover.rawValue && !f.isNak,
                            let answer = try? DiscoverResponse(payload: f.payload)
                        {
                            if f.sequence == frame.sequence {
                                result.answers.append((f, answer))
                            } else {
                                tally.staleFrames += 1
                                result.late.append((f, self.reception.arrival(ofOffset: offset).at))
                            }
                        } else if f == frame {
                            tally.echoes += 1
                        } else {
                            result.otherBytes = true
                        }
                    }
                }
                if finishing {
                    self.reception.decoder.resume()
                    finishing = false
                }
                let now = BusInstant.now
                var readDeadline = end
                if let last = lastByteAt, self.reception.decoder.bufferedByteCount > 0 || echo.heldCount > 0 {
                    let needed = echo.heldCount > 0 ? echo.missing : self.reception.neededBytes
                    let completeBy = last + self.characters(needed) + self.abortSilence
                    if now >= completeBy {
                        if echo.heldCount > 0 {
                            self.reception.append(echo.release(), at: last, exact: false)
                        } else {
                            self.reception.decoder.finish()
                            finishing = true
                        }
                        continue listening
                    }
                    readDeadline = max(end, completeBy)
                } else if now >= end {
                    break listening
                }
                let chunk: [UInt8]
                do {
                    chunk = try self.transport.read(upTo: Frame.maxFrameLength, deadline: readDeadline.continuous)
                } catch .timeout {
                    continue listening
                } catch .removed(let path) {
                    throw .adapterGone(path: path)
                } catch {
                    throw .serial(error)
                }
                let at = BusInstant.now
                lastByteAt = at
                tally.bytesReceived += chunk.count
                self.trace(.received(bytes: chunk, at: self.since(at), sinceSend: at - drained))
                let (released, rest, echoed) = echo.strip(chunk)
                if echoed { tally.echoes += 1 }
                self.reception.append(released + rest, at: at)
            }
            tally.answered = true
            self.wireFreeAt = max(BusInstant.now, end) + self.gap
            self.commit(tally, target: nil)
            return result
        } catch {
            self.commit(tally, target: nil)
            throw error
        }
    }
}

/// The length of the last answer to each command byte: a table, not a dictionary, as it is read on every
/// transaction.
struct AnswerLengths {
    private var lengths = [Int](repeating: 0, count: 256)

    subscript(command: UInt8) -> Int? {
        get { self.lengths[Int(command)] > 0 ? self.lengths[Int(command)] : nil }
        set { self.lengths[Int(command)] = newValue ?? 0 }
    }
}

/// When each try of a transaction had left the wire: almost always one, kept without an array.
struct SendTimes {
    private(set) var first: BusInstant?
    private var more: [BusInstant] = []

    init() {}

    init(_ only: BusInstant) { self.first = only }

    var count: Int { self.first == nil ? 0 : 1 + self.more.count }
    var last: BusInstant? { self.more.last ?? self.first }
    var array: [BusInstant] { self.first.map { [$0] + self.more } ?? [] }

    subscript(index: Int) -> BusInstant { index == 0 ? self.first! : self.more[index - 1] }

    mutating func append(_ instant: BusInstant) {
        if self.first == nil { self.first = instant } else { self.more.append(instant) }
    }
}

/// When bytes were read, and whether that is when they arrived.
struct Stamp {
    var at: BusInstant
    var exact: Bool
}

/// The key of a turnaround calibrator: meters and card operations differ by an order of magnitude.
struct CalibrationKey: Hashable, Sendable {
    var target: Target
    var slow: Bool
}

/// The decoder's stream for one transaction, with when each chunk arrived, so that a frame's first byte has a time
/// and a skipped run has its bytes.
struct Reception {
    var decoder = FrameDecoder()
    /// The bytes appended in this transaction; `stream[0]` is at decoder offset `base`.
    private var stream: [UInt8] = []
    private var base = 0
    /// Where each chunk starts, when it was read, and whether that is when it arrived (read while waiting) or only
    /// an upper bound (it was already queued after a sleep).
    private var arrivals: [Arrival] = []
    /// The whole answer's length where the last answer to the same command tells it (a hint for one sleep).
    var expectedLength: Int?

    struct Arrival {
        var offset: Int
        var at: BusInstant
        var exact: Bool
    }

    mutating func reset() {
        self.expectedLength = nil
        self.decoder.reset()
        self.base = self.decoder.streamOffset
        self.stream.removeAll(keepingCapacity: true)
        self.arrivals.removeAll(keepingCapacity: true)
    }

    mutating func append(_ bytes: [UInt8], at: BusInstant, exact: Bool = true) {
        guard !bytes.isEmpty else { return }
        self.arrivals.append(Arrival(offset: self.decoder.streamOffset, at: at, exact: exact))
        self.stream += bytes
        self.decoder.append(bytes)
    }

    func bytes(offset: Int, count: Int) -> [UInt8] {
        let start = max(0, offset - self.base)
        return Array(self.stream[min(start, self.stream.count)..<min(start + count, self.stream.count)])
    }

    /// When the chunk holding stream offset `offset` was read, and whether that is exactly when it arrived.
    func arrival(ofOffset offset: Int) -> (at: BusInstant, exact: Bool) {
        guard var found = self.arrivals.first else { return (BusInstant.now, false) }
        for a in self.arrivals {
            if a.offset > offset { break }
            found = a
        }
        return (found.at, found.exact)
    }

    /// Bytes the frame held by the decoder still needs: up to its declared length once its header is in; before
    /// that, up to `expectedLength` (the last answer to the same command) where known, else up to the header.
    var neededBytes: Int {
        let held = self.decoder.bufferedByteCount
        guard held > 0, held <= self.stream.count else { return 1 }
        let start = self.stream.count - held
        guard held >= Frame.headerLength else {
            if let expected = self.expectedLength, expected > Frame.headerLength { return expected - held }
            return Frame.minFrameLength - held
        }
        let length = Int(self.stream[start + 10]) << 8 | Int(self.stream[start + 11])
        return max(1, Frame.minFrameLength + length - held)
    }
}

extension Reception: ReceiveFramer {
    var maxRead: Int { Frame.maxFrameLength }
    var frameEndSilence: Duration? { nil }
    var bufferedByteCount: Int { self.decoder.bufferedByteCount }

    mutating func next(now: BusInstant) -> ReceivedItem<Frame>? {
        switch self.decoder.next() {
        case nil:
            return nil
        case .skipped(let offset, let count, let reason)?:
            let raw = self.bytes(offset: offset, count: count)
            switch reason {
            case .crcMismatch, .headerCheckMismatch, .lengthTooLarge: return .skipped(.crcMismatch(raw), count: count)
            case .truncated: return .skipped(.partialFrame(raw), count: count)
            case .noStartMarker: return .skipped(.garbage(raw), count: count)
            }
        case .frame(let frame, let offset)?:
            let (at, exact) = self.arrival(ofOffset: offset)
            return .frame(frame, firstByteAt: at, exact: exact)
        }
    }

    mutating func finish() { self.decoder.finish() }
    mutating func resume() { self.decoder.resume() }
}

/// Removes the adapter's copy of our own request when it comes back first (half-duplex adapters without echo
/// suppression); bytes that turn out not to be the echo are handed on unchanged.
struct EchoStripper {
    let request: [UInt8]
    private var matched = 0
    private var done: Bool

    init(request: [UInt8], active: Bool) {
        self.request = request
        self.done = !active
    }

    /// Bytes of a possible echo held back until it is complete or disproved.
    var heldCount: Int { self.done ? 0 : self.matched }
    var missing: Int { self.request.count - self.matched }

    /// Splits a chunk: `released` are bytes held from earlier chunks that turned out not to be the echo (they
    /// keep their own arrival time), `rest` this chunk's bytes that are not echo, and whether an echo completed.
    mutating func strip(_ chunk: [UInt8]) -> (released: [UInt8], rest: [UInt8], echoed: Bool) {
        guard !self.done else { return ([], chunk, false) }
        let before = self.matched
        for (i, byte) in chunk.enumerated() {
            if byte == self.request[self.matched] {
                self.matched += 1
                if self.matched == self.request.count {
                    self.done = true
                    return ([], Array(chunk[(i + 1)...]), true)
                }
            } else {
                self.done = true
                return (Array(self.request[..<before]), chunk, false)
            }
        }
        return ([], [], false)
    }

    /// Gives up on a partial echo: its bytes are data after all.
    mutating func release() -> [UInt8] {
        defer { self.done = true }
        return Array(self.request[..<self.matched])
    }
}
