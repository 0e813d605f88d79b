import MeterProtocol
import SerialPort

/// Transactions in protocols without native headers (Modbus RTU, DL/T 645), with the native path's guarantees:
/// one at a time, the inter-frame gap, a first-byte timeout per request (calibrated per target), retries of the
/// same bytes, the adapter's echo skipped, every other byte classified and kept as evidence, statistics.
///
/// These protocols carry no sequence number: a late answer to an earlier try of the same request is the same
/// answer (taken), and a late answer to an earlier request is kept out by flushing the input before each new
/// request and by each driver's check that the answer fits the request (function, address, data identifier).
extension BusLink {
    /// Sends `request` to `target` and returns its answer. Frames that are not the answer are discarded with what
    /// they were; a busy answer is retried after the gap; every give-up is a typed error with the evidence.
    public func exchange(
        _ request: RawRequest, to target: Target, timeout: Duration? = nil, retries: Int? = nil
    ) throws(BusError) -> RawAnswer {
        let key = CalibrationKey(target: target, slow: request.slow)
        let learned = self.learned(key)
        let firstByteTimeout = timeout ?? learned.firstByteTimeout
        let tries = 1 + max(0, retries ?? self.options.retries)
        var evidence = Evidence(target: target, command: 0, sequence: 0, line: self.line,
                                requestBytes: request.bytes, requestLabel: request.requestLabel)
        var tally = TransactionTally()
        var sends = SendTimes()
        var firstStart: BusInstant?
        let slack = learned.adapterAllowance
        var receiver = RawReceiver(framing: request.framing, silence: self.modbusSilence + slack,
                                   characterGap: self.modbusCharacterGap + slack, epoch: self.epoch)
        let echoDetected = self.shared.statistics.withLock { $0.echoDetected }
        let stripEcho = self.options.echo == .auto && (!request.answerMayRepeatRequest || echoDetected)

        func finish(_ heard: Heard<RawReceived>, attempt: Int) -> RawAnswer {
            self.wireFreeAt = heard.lastByteAt + self.gap
            tally.answered = true
            let quiet = tally.framesSent == 1 && tally.crcErrors == 0 && tally.partialFrames == 0
                && tally.garbageBytes == 0 && tally.staleFrames == 0 && tally.wrongAddress == 0
            self.cleanSince = quiet && receiver.bufferedByteCount == 0 ? heard.lastByteAt : nil
            if let start = firstStart { tally.latencyMicros = heard.lastByteAt.micros(since: start) }
            let firstTry = attempt == 1 && sends.count == 1
            // Without a SEQ an answer could belong to any try; but where every earlier try already heard its
            // answer (damaged, or from the wrong address), this one answers the last try.
            let earlierAnswered = attempt == sends.count && attempt > 1
                && evidence.attempts.prefix(attempt - 1).allSatisfy { $0.seen.weight >= Evidence.Seen.garbage([]).weight }
            self.calibrate(key, firstByteAt: heard.firstByteAt, lastByteAt: heard.lastByteAt,
                           length: heard.frame.bytes.count, exact: heard.exact,
                           sends: earlierAnswered ? SendTimes(sends[attempt - 1]) : sends, firstTry: firstTry || earlierAnswered)
            if firstTry && heard.exact, let drained = sends.first {
                tally.turnaroundMicros = heard.firstByteAt.micros(since: drained)
            }
            self.commit(tally, target: target)
            self.trace(.answeredRaw(request.label, bytes: heard.frame.bytes, at: self.since(heard.lastByteAt),
                                    latency: firstStart.map { heard.lastByteAt - $0 } ?? .zero))
            return RawAnswer(frame: heard.frame.frame, bytes: heard.frame.bytes, evidence: evidence)
        }

        do throws(BusError) {
            for attempt in 1...tries {
                self.waitForWire()
                var record = AttemptRecord()
                if attempt == 1 {
                    if let clean = self.cleanSince, BusInstant.now - clean < .seconds(1) {
                        // Nothing stale is expected (see `cleanSince`).
                    } else {
                        try self.flushInput()
                    }
                    self.cleanSince = nil
                } else if let drained = sends.last, case let queued = try self.readQueued(), !queued.isEmpty {
                    // An answer to the previous try may have arrived since its deadline: it is this request's
                    // answer too (same bytes sent), so take it instead of talking over the meter.
                    var late = AttemptRecord()
                    let at = BusInstant.now
                    tally.bytesReceived += queued.count
                    late.keep(Evidence.Chunk(micros: at.micros(since: drained), bytes: queued))
                    self.trace(.received(bytes: queued, at: self.since(at), sinceSend: at - drained))
                    receiver.append(queued, at: at, exact: false)
                    let heard = try self.receiveRaw(
                        request, receiver: &receiver, drained: drained, firstByteTimeout: .zero, echo: false,
                        lastByteAt: at, record: &late, tally: &tally)
                    if let heard, !heard.busy { return finish(heard, attempt: attempt - 1) }
                    let previous = evidence.attempts.count - 1
                    evidence.attempts[previous].chunks += late.chunks
                    if late.seen.weight > evidence.attempts[previous].seen.weight {
                        evidence.attempts[previous].seen = late.seen
                    }
                }
                let (start, drained) = try self.send(request.bytes, attempt: attempt)
                firstStart = firstStart ?? start
                sends.append(drained)
                tally.framesSent += 1
                tally.bytesSent += request.bytes.count
                let heard = try self.receiveRaw(
                    request, receiver: &receiver, drained: drained, firstByteTimeout: firstByteTimeout,
                    echo: stripEcho, lastByteAt: nil,
                    wakeAt: attempt == 1
                        ? self.predictedEnd(key, learned, length: request.framing.expectedLength, drained: drained) : nil,
                    record: &record, tally: &tally)
                if let heard {
                    if !heard.busy { return finish(heard, attempt: attempt) }
                    record.note(.busy)
                    if attempt == tries {
                        // Busy on the last try: the answer is the refusal; the driver decodes it.
                        return finish(heard, attempt: attempt)
                    }
                    self.wireFreeAt = heard.lastByteAt + self.gap
                } else {
                    tally.timeouts += 1
                    self.wireFreeAt = BusInstant.now + self.gap
                }
                evidence.attempts.append(Evidence.Attempt(seen: record.seen, timeout: firstByteTimeout,
                                                          chunks: record.chunks))
            }
            let error: BusError = evidence.attempts.contains { $0.seen.isDamage }
                ? .corrupt(evidence) : .noAnswer(evidence)
            throw error
        } catch {
            self.commit(tally, target: target)
            self.trace(.gaveUp(error, at: self.since(BusInstant.now)))
            throw error
        }
    }

    /// Sends a frame no device answers (Modbus address 0, DL/T 645 broadcast time), then keeps the bus quiet for
    /// the post-broadcast wait.
    public func broadcast(raw bytes: [UInt8]) throws(BusError) {
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

    /// t3.5 at this line's speed (1.75 ms above 19200 baud): the silence that ends a Modbus RTU frame.
    static func modbusSilence(baudRate: Int, characterNanos: Int64) -> Duration {
        baudRate > 19_200 ? .microseconds(1_750) : .nanoseconds(characterNanos * 7 / 2)
    }

    /// Reads until the answer (or a busy answer) is complete, or until `firstByteTimeout` after `drained` passed
    /// with no frame in progress (nil): the bus's one receive loop with the protocol's framer.
    private func receiveRaw(
        _ request: RawRequest, receiver: inout RawReceiver, drained: BusInstant,
        firstByteTimeout: Duration, echo: Bool, lastByteAt: BusInstant?,
        wakeAt: BusInstant? = nil, record: inout AttemptRecord, tally: inout TransactionTally
    ) throws(BusError) -> Heard<RawReceived>? {
        try self.receive(
            &receiver, request: request.bytes, drained: drained, firstByteTimeout: firstByteTimeout, echo: echo,
            lastByteAt: lastByteAt, wakeAt: wakeAt, record: &record, tally: &tally
        ) { received, _, tally in
            let bytes = received.bytes
            if !request.answerMayRepeatRequest, bytes == request.bytes
                || (request.bytes.count > bytes.count && request.bytes.suffix(bytes.count).elementsEqual(bytes)
                    && request.bytes.prefix(request.bytes.count - bytes.count).allSatisfy { $0 == 0xFE })
            {
                // Our own request, come back from a half-duplex adapter (FE preamble stripped).
                tally.echoes += 1
                self.shared.statistics.withLock { $0.echoDetected = true }
                return .discard(.onlyEcho)
            }
            switch request.judge(received.frame) {
            case .answer: return .answer
            case .busy: return .busy
            case .wrongStation(let station):
                tally.wrongAddress += 1
                return .discard(.wrongStation(station))
            case .notAnswer:
                tally.staleFrames += 1
                return .discard(.otherTraffic)
            }
        }
    }
}
