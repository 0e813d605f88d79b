import MeterProtocol
import SerialPort

/// One protocol's receive side, as the bus's one receive loop sees it: frames and skipped runs out of the bytes
/// of a transaction, and how many bytes the frame in progress still needs. The native decoder (``Reception``) and
/// the raw framers (``RawReceiver``: Modbus RTU, DL/T 645) conform, so timing, echo skipping, evidence and the
/// sleep for a frame's remaining wire time live in one place (`BusLink.receive(_:request:...)`).
protocol ReceiveFramer {
    associatedtype Received
    /// Bytes asked for per read.
    var maxRead: Int { get }
    /// The line silence that ends a frame (Modbus RTU t3.5 plus the adapter's allowance); nil where a frame ends
    /// by its own structure.
    var frameEndSilence: Duration? { get }
    /// Bytes of a frame (or a run not yet classified) held back for more.
    var bufferedByteCount: Int { get }
    /// Bytes the frame in progress still needs where its length is known (at least 1).
    var neededBytes: Int { get }
    /// The whole answer's length where known before it arrives (from the request, or the last answer to the same
    /// command).
    var expectedLength: Int? { get }
    mutating func append(_ bytes: [UInt8], at: BusInstant, exact: Bool)
    /// The next frame or skipped run, considering that the line has been silent until `now`.
    mutating func next(now: BusInstant) -> ReceivedItem<Received>?
    /// The line fell silent for good: end (or give up on) the frame in progress.
    mutating func finish()
    /// Undo ``finish()`` once what it released has been taken.
    mutating func resume()
}

/// What a framer found in the bytes.
enum ReceivedItem<Received> {
    /// A whole frame whose first byte was read at `firstByteAt` (exactly then, or only by then after a sleep).
    case frame(Received, firstByteAt: BusInstant, exact: Bool)
    /// Bytes that form no frame, as evidence: garbage, a cut-short frame or a damaged one.
    case skipped(Evidence.Seen, count: Int)
}

/// What a received frame is to the transaction, decided by the caller of the receive loop.
enum ReceiveJudgement {
    case answer
    /// A busy answer ("ask again"): the caller retries after the gap while tries are left.
    case busy
    /// Not the answer: kept as evidence (the judge has counted it), and the wait is extended.
    case discard(Evidence.Seen)
}

extension BusLink {
    /// The frame that ended a try, with when its first byte and the last byte of the try arrived.
    struct Heard<Received> {
        var frame: Received
        var firstByteAt: BusInstant
        var lastByteAt: BusInstant
        /// Whether `firstByteAt` is when the first byte arrived, not only when it was read after a sleep.
        var exact: Bool
        var busy: Bool
    }

    /// Reads until `judge` accepts a frame (returned, busy or not), or until `firstByteTimeout` after `drained`
    /// passed with no frame in progress (nil). A started frame is given its remaining wire time in one sleep (the
    /// framer knows its length from its header, or from the request, or from the last answer to the same command)
    /// plus the silence that ends it; what is not the answer extends the wait (it did not use up the meter's time),
    /// up to the maximum. `wakeAt`: sleep until then first (the predicted end of the answer) instead of waking
    /// for its first byte.
    func receive<F: ReceiveFramer>(
        _ framer: inout F, request bytes: [UInt8], drained: BusInstant, firstByteTimeout: Duration,
        echo echoActive: Bool, lastByteAt initialLastByteAt: BusInstant?,
        wakeAt: BusInstant? = nil, record: inout AttemptRecord, tally: inout TransactionTally,
        judge: (F.Received, BusInstant, inout TransactionTally) -> ReceiveJudgement
    ) throws(BusError) -> Heard<F.Received>? {
        var deadline = drained + firstByteTimeout
        let cap = drained + max(firstByteTimeout, self.options.maximumTimeout)
        var echo = EchoStripper(request: bytes, active: echoActive)
        /// When the first byte held as a possible echo arrived.
        var echoHeldAt: Stamp?
        var lastByteAt = initialLastByteAt
        var finishing = false
        let endsBySilence = framer.frameEndSilence != nil
        let endSilence = framer.frameEndSilence ?? self.abortSilence
        // After a sleep, what is queued is read without waiting and its time is only an upper bound. The predicted
        // end of the answer lies past its first-byte deadline; what arrived by then is read before any timeout.
        var afterSleep = false
        if let wakeAt {
            self.sleep(until: min(wakeAt, cap))
            afterSleep = true
        }

        func extend() {
            guard firstByteTimeout > .zero else { return }
            deadline = max(deadline, min(BusInstant.now + firstByteTimeout, cap))
        }

        while true {
            // One clock reading per pass: the framer's silence check and the deadlines below use it.
            let now = BusInstant.now
            while let item = framer.next(now: now) {
                switch item {
                case .skipped(let seen, let count):
                    switch seen {
                    case .crcMismatch: tally.crcErrors += 1
                    case .partialFrame: tally.partialFrames += 1
                    default: tally.garbageBytes += count
                    }
                    record.note(seen)
                    self.trace(.discarded(seen, at: self.since(BusInstant.now)))
                    extend()
                case .frame(let frame, let at, let exact):
                    let judgement = judge(frame, at, &tally)
                    switch judgement {
                    case .answer, .busy:
                        if finishing { framer.resume() }
                        return Heard(frame: frame, firstByteAt: at, lastByteAt: lastByteAt ?? at, exact: exact,
                                     busy: { if case .busy = judgement { true } else { false } }())
                    case .discard(let seen):
                        record.note(seen)
                        self.trace(.discarded(seen, at: self.since(BusInstant.now)))
                        extend()
                    }
                }
            }
            if finishing {
                framer.resume()
                finishing = false
            }
            let readDeadline: BusInstant
            if let last = lastByteAt, framer.bufferedByteCount > 0 || echo.heldCount > 0 {
                // A frame (or our echo) has started: wait for the bytes it still needs.
                // Bytes held as a possible echo may be the answer's own start (the native preamble, Modbus's
                // address and function): sleep for whichever is longer, the rest of the echo or of the answer.
                // An echo is followed by the whole answer, so the longer sleep never passes the answer's end,
                // and it saves a wake-up where the bus does not echo.
                let needed = echo.heldCount > 0
                    ? max(echo.missing, (framer.expectedLength ?? 0) - echo.heldCount) : framer.neededBytes
                let completeBy = last + self.characters(needed) + endSilence
                if now >= completeBy {
                    if echo.heldCount > 0 {
                        framer.append(echo.release(), at: echoHeldAt?.at ?? last, exact: echoHeldAt?.exact ?? false)
                    } else {
                        framer.finish()
                        finishing = true
                    }
                    continue
                }
                let expected = last + self.characters(needed)
                if needed > 1 && expected > now {
                    // One sleep for the rest of the frame instead of a wake-up per byte or chunk.
                    self.sleep(until: expected)
                    afterSleep = true
                }
                // A frame that ends by silence: wake when the silence has passed, unless more bytes come first.
                readDeadline = endsBySilence && echo.heldCount == 0
                    ? max(expected, last + endSilence) : completeBy
            } else {
                if now >= deadline && !afterSleep { return nil }
                readDeadline = deadline
            }
            let chunk: [UInt8]
            let exact = !afterSleep
            do {
                // After a sleep: a deadline already passed, so what is queued is read without waiting.
                chunk = try self.transport.read(upTo: framer.maxRead,
                                                 deadline: afterSleep ? .now : readDeadline.continuous)
            } catch .timeout {
                afterSleep = false
                continue
            } catch .removed(let path) {
                throw .adapterGone(path: path)
            } catch {
                throw .serial(error)
            }
            afterSleep = false
            let at = BusInstant.now
            lastByteAt = at
            tally.bytesReceived += chunk.count
            record.keep(Evidence.Chunk(micros: at.micros(since: drained), bytes: chunk))
            self.trace(.received(bytes: chunk, at: self.since(at), sinceSend: at - drained))
            let heldBefore = echo.heldCount
            let (released, rest, echoed) = echo.strip(chunk)
            if echoed {
                tally.echoes += 1
                self.shared.statistics.withLock { $0.echoDetected = true }
                record.note(.onlyEcho)
                self.trace(.discarded(.onlyEcho, at: self.since(at)))
                extend()
            }
            if !released.isEmpty, let held = echoHeldAt {
                framer.append(released, at: held.at, exact: held.exact)
            }
            if heldBefore == 0 && echo.heldCount > 0 { echoHeldAt = Stamp(at: at, exact: exact) }
            framer.append(rest, at: at, exact: exact)
        }
    }
}
