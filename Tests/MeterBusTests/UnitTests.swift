import MeterProtocol
import SerialPort
import Testing

@testable import MeterBus

/// Calibration, percentiles, echo stripping and error wording: pure logic, tested with synthetic values.
@Suite struct Calibration {
    let fallback = Duration.milliseconds(70)
    let margin = Duration.milliseconds(2)
    let minimum = Duration.milliseconds(10)
    let maximum = Duration.seconds(2)

    func timeout(_ c: TimingCalibrator) -> Duration {
        c.timeout(default: self.fallback, margin: self.margin, minimum: self.minimum, maximum: self.maximum)
    }

    @Test func startsFromTheDefault() {
        #expect(self.timeout(TimingCalibrator()) == .milliseconds(70))
    }

    @Test func fastAnswersShortenTheTimeoutOnlyOnceThereAreEnough() {
        var c = TimingCalibrator(minimumSamples: 5)
        for _ in 0..<4 { c.record(micros: 4_000) }
        #expect(!c.isCalibrated && self.timeout(c) == .milliseconds(70))
        c.record(micros: 5_000)
        #expect(c.isCalibrated)
        // 2 × p99 (5 ms) + 2 ms.
        #expect(self.timeout(c) == .milliseconds(12))
        for _ in 0..<20 { c.record(micros: 1_000) }
        #expect(self.timeout(c) == .milliseconds(12))  // p99 still sees the 5 ms sample
    }

    @Test func oneSlowAnswerRaisesTheTimeoutAtOnce() {
        var c = TimingCalibrator(minimumSamples: 5)
        c.record(micros: 150_000)
        #expect(self.timeout(c) == .milliseconds(302))
    }

    @Test func boundsHold() {
        var c = TimingCalibrator(minimumSamples: 1)
        c.record(micros: 100)
        #expect(self.timeout(c) == self.minimum)
        c.record(micros: 5_000_000)
        #expect(self.timeout(c) == self.maximum)
    }

    @Test func theWindowForgetsOldSamples() {
        var c = TimingCalibrator(minimumSamples: 5)
        c.record(micros: 900_000)
        for _ in 0..<TimingCalibrator.window { c.record(micros: 3_000) }
        #expect(c.sampleCount == TimingCalibrator.window && c.recorded == TimingCalibrator.window + 1)
        #expect(c.percentile(100) == 3_000 && self.timeout(c) == .milliseconds(10))
    }

    @Test func percentilesMatchASortOfTheLatestSamples() {
        // Rising, falling and repeated values move the oldest sample out and the newest in, both directions.
        var c = TimingCalibrator()
        var recent: [Int64] = []
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for n in 0..<2_000 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let value = n % 7 == 0 ? 4_000 : Int64(state >> 52) * (n < 1_000 ? 1 : 3)
            c.record(micros: value)
            recent = Array((recent + [value]).suffix(TimingCalibrator.window))
            let sorted = recent.sorted()
            for percent in [0, 1, 25, 50, 90, 99, 100] {
                let rank = max(1, (percent * sorted.count + 99) / 100)
                guard c.percentile(percent) == sorted[rank - 1] else {
                    Issue.record("sample \(n): p\(percent) is \(c.percentile(percent) ?? -1), not \(sorted[rank - 1])")
                    return
                }
            }
            #expect(c.shortest == sorted.first)
        }
    }

    @Test func percentilesAreNearestRank() {
        var c = TimingCalibrator()
        for v in 1...100 { c.record(micros: Int64(v)) }
        #expect(c.sampleCount == 64)  // the latest 64: 37...100
        #expect(c.percentile(50) == 68 && c.percentile(99) == 100 && c.percentile(0) == 37)
    }

    @Test func aRetriedAnswerIsAttributedConservativelyThenToTheLikeliestTry() {
        // Sends at 0, 75 and 150 ms; the answer arrives at 160 ms.
        let sends: [Int64] = [0, 75_000, 150_000]
        let fresh = TimingCalibrator()
        #expect(fresh.attribute(arrivalMicros: 160_000, sendMicros: sends) == 160_000)
        var known = TimingCalibrator(minimumSamples: 5)
        for _ in 0..<5 { known.record(micros: 9_000) }
        #expect(known.attribute(arrivalMicros: 160_000, sendMicros: sends) == 10_000)
        var slow = TimingCalibrator(minimumSamples: 5)
        for _ in 0..<5 { slow.record(micros: 85_000) }
        #expect(slow.attribute(arrivalMicros: 160_000, sendMicros: sends) == 85_000)
        #expect(fresh.attribute(arrivalMicros: 10, sendMicros: [20]) == 0)
    }
}

@Suite struct Histogram {
    @Test func bucketsCoverEveryValueWithinThreePercent() {
        var previousIndex = -1
        for value in [Int64(0), 1, 63, 64, 65, 100, 1000, 4095, 4096, 123_456, 10_000_000, 1 << 35] {
            let index = LatencyHistogram.index(of: value)
            let upper = LatencyHistogram.upperBound(ofBucket: index)
            #expect(index >= previousIndex)
            previousIndex = index
            #expect(upper >= value && upper - value <= max(0, value / 32), "\(value) -> \(upper)")
            #expect(index < LatencyHistogram.bucketCount)
        }
        #expect(LatencyHistogram.index(of: Int64.max) == LatencyHistogram.bucketCount - 1)
    }

    @Test func percentilesOfKnownDistributions() {
        var h = LatencyHistogram()
        for v in 1...1000 { h.record(micros: Int64(v) * 100) }
        let s = h.summary
        #expect(s.count == 1000 && s.max == 100_000 && s.mean == 50_050)
        #expect(abs(s.p50 - 50_000) <= 50_000 / 32 && s.p50 >= 50_000)
        #expect(abs(s.p90 - 90_000) <= 90_000 / 32 && s.p90 >= 90_000)
        #expect(s.p99 >= 99_000 && s.p99 <= 100_000)
        #expect(LatencyHistogram().summary.count == 0 && LatencyHistogram().percentile(50) == 0)
        #expect(s.description.hasPrefix("p50 "))
    }

    /// Only the span of buckets seen is held, growing either way; the order of recording changes nothing.
    @Test func holdsOnlyTheSpanSeenWhateverTheOrder() {
        let values: [Int64] = [30_000, 31_000, 29_500, 120, 45_000, 2_000_000, 30_500, 5, 30_200]
        var forward = LatencyHistogram()
        for v in values { forward.record(micros: v) }
        var backward = LatencyHistogram()
        for v in values.reversed() { backward.record(micros: v) }
        #expect(forward == backward)
        #expect(forward.bucketsHeld == LatencyHistogram.index(of: 2_000_000) - LatencyHistogram.index(of: 5) + 1)
        for percent in [1, 10, 50, 90, 99, 100] {
            // Nearest rank over the sorted values, then its bucket's upper bound, capped at the maximum.
            let sorted = values.sorted()
            let exact = sorted[max(1, (percent * sorted.count + 99) / 100) - 1]
            let bound = min(LatencyHistogram.upperBound(ofBucket: LatencyHistogram.index(of: exact)), 2_000_000)
            #expect(forward.percentile(percent) == bound, "p\(percent)")
        }
        var narrow = LatencyHistogram()
        for v in stride(from: Int64(30_000), through: 33_000, by: 10) { narrow.record(micros: v) }
        #expect(narrow.bucketsHeld < 10, "\(narrow.bucketsHeld) buckets for a 10% spread, of \(LatencyHistogram.bucketCount)")
    }
}

@Suite struct WireHelpers {
    let request: [UInt8] = Frame(request: ReadStatusRequest(), address: 5, serial: 7, sequence: 9).encoded()

    @Test func anEchoIsStrippedWholeOrInPieces() {
        var whole = EchoStripper(request: self.request, active: true)
        let answer: [UInt8] = [0x7E, 0x01, 0x80]
        let r = whole.strip(self.request + answer)
        #expect(r.rest == answer && r.echoed && r.released.isEmpty)
        var pieces = EchoStripper(request: self.request, active: true)
        #expect(pieces.strip(Array(self.request[..<4])) == ([], [], false))
        #expect(pieces.heldCount == 4 && pieces.missing == 11)
        let rest = pieces.strip(Array(self.request[4...]) + answer)
        #expect(rest.rest == answer && rest.echoed && pieces.heldCount == 0)
        // After the echo, an identical frame is data.
        #expect(pieces.strip(self.request).rest == self.request)
    }

    @Test func bytesThatAreNotTheEchoAreHandedOn() {
        var s = EchoStripper(request: self.request, active: true)
        _ = s.strip([0x7E])
        // A response differs at FLAGS: the held byte comes back (with its own arrival time), then this chunk.
        let r = s.strip([0x01, 0x80, 0x05])
        #expect(r.released == [0x7E] && r.rest == [0x01, 0x80, 0x05] && !r.echoed)
        var off = EchoStripper(request: self.request, active: false)
        #expect(off.strip(self.request).rest == self.request)
        var partial = EchoStripper(request: self.request, active: true)
        _ = partial.strip(Array(self.request[..<6]))
        #expect(partial.release() == Array(self.request[..<6]) && partial.heldCount == 0)
    }

    @Test func theReceiverKnowsHowManyBytesAFrameStillNeeds() {
        let status = Frame(response: MeterStatus(kind: .electricity, registerUnits: 1, creditUnits: 2, demand: 3,
                                                 meterTime: 4, lastAppliedSequence: 5, alarms: [], relay: .closed,
                                                 relayReason: .none, alarmThresholdUnits: 6, cutoffThresholdUnits: 7),
                           to: Frame(request: ReadStatusRequest(), address: 5, sequence: 9), address: 5, serial: 7)
            .encoded()
        #expect(status.count == 56)
        var r = Reception()
        r.reset()
        r.append(Array(status[..<5]), at: .now)
        #expect(r.decoder.next() == nil && r.neededBytes == 10)
        r.append(Array(status[5..<20]), at: .now)
        #expect(r.decoder.next() == nil && r.neededBytes == 36)
        r.append(Array(status[20...]), at: .now)
        guard case .frame(let frame, let offset) = r.decoder.next() else {
            Issue.record("no frame")
            return
        }
        #expect(frame.encoded() == status && r.bytes(offset: offset, count: 3) == [0x7E, 0x01, 0x80])

        // Knowing the last answer's length, the receiver waits for the whole frame in one sleep, not the header
        // first; the header's declared length still decides once it is in.
        r.reset()
        r.expectedLength = 56
        r.append(Array(status[..<1]), at: .now)
        #expect(r.decoder.next() == nil && r.neededBytes == 55)
        r.expectedLength = 80
        r.append(Array(status[1..<20]), at: .now)
        #expect(r.decoder.next() == nil && r.neededBytes == 36)
    }

    @Test func theAnswerIsPredictedOnlyWhereTheLineDeliversAtWirePace() throws {
        let bus = try EmulatedBus(meters: [], line: LineSettings(baudRate: 9600))
        defer { bus.shutdown() }
        try bus.session.withExclusiveAccess { link throws(BusError) in
            let key = CalibrationKey(target: .address(1), slow: false)
            var turnaround = TimingCalibrator(minimumSamples: 5)
            for micros in [4_000, 4_500, 5_000, 4_200, 6_000] as [Int64] { turnaround.record(micros: micros) }
            // Answers read whole after a sleep show no lag; answers that came in one burst lag their wire time.
            var paced = TimingCalibrator(minimumSamples: 5)
            for _ in 0..<5 { paced.record(micros: 0) }
            var bursts = TimingCalibrator(minimumSamples: 5)
            for _ in 0..<5 { bursts.record(link.characters(32)) }
            let drained = BusInstant.now
            let predicted = link.predictedEnd(key, link.learned(key, turnaround: turnaround, adapterLag: paced),
                                              length: 33, drained: drained)
            #expect(predicted == drained + .microseconds(4_000) + link.characters(32))
            let inBursts = link.predictedEnd(key, link.learned(key, turnaround: turnaround, adapterLag: bursts),
                                             length: 33, drained: drained)
            let uncalibrated = link.predictedEnd(key, link.learned(key, turnaround: nil, adapterLag: paced),
                                                 length: 33, drained: drained)
            let unknownLength = link.predictedEnd(key, link.learned(key, turnaround: turnaround, adapterLag: paced),
                                                  length: nil, drained: drained)
            #expect(inBursts == nil && uncalibrated == nil && unknownLength == nil)
            // Every eighth answer is waited for byte by byte, to measure the turnaround exactly.
            var predictions = 1
            while link.predictedEnd(key, link.learned(key, turnaround: turnaround, adapterLag: paced), length: 33,
                                    drained: drained) != nil { predictions += 1 }
            #expect(predictions == 7)
        }
    }

    @Test func targetsAddressAndMatch() {
        let request = Frame(address: 5, sequence: 1, command: .identify)
        let answer = Frame(response: AlarmsRemaining(alarms: []), to: request, address: 5, serial: 77)
        #expect(Target.address(5).isSource(of: answer))
        #expect(Target.address(5, serial: 77).isSource(of: answer))
        #expect(!Target.address(5, serial: 78).isSource(of: answer))
        #expect(!Target.address(6).isSource(of: answer))
        #expect(Target.serial(77).isSource(of: answer) && !Target.broadcast.isSource(of: answer))
        #expect(Target.serial(77).frameAddress == 0xFF && Target.serial(77).frameSerial == 77)
        #expect(Target.address(5).frameSerial == Frame.anySerial && Target.broadcast.frameAddress == 0)
        #expect("\(Target.address(7, serial: 20_251_125))" == "meter 7 (serial 20251125)")
    }
}

@Suite struct ErrorWording {
    static let line = LineSettings(baudRate: 9600, parity: .even)
    static func evidence(_ seen: Evidence.Seen..., target: Target = .address(7)) -> Evidence {
        Evidence(target: target, command: Command.readStatus.rawValue, sequence: 3, line: Self.line,
                 requestBytes: [0x7E, 0x01],
                 attempts: seen.map { .init(seen: $0, timeout: .milliseconds(70),
                                            chunks: [.init(micros: 4_321, bytes: [0x7E, 0x01])]) })
    }

    @Test func eachErrorSaysWhatToDo() {
        let silent = BusError.noAnswer(Self.evidence(.nothing, .nothing, .nothing))
        #expect(silent.description == "no answer from meter 7 at 9600:8E1 after 3 tries: check wiring, termination "
                + "and line settings; try metergw sniff")
        let gone = BusError.adapterGone(path: "/dev/ttyUSB0")
        #expect(gone.description.contains("/dev/ttyUSB0 went away") && !gone.description.contains("no answer"))
        let damaged = BusError.corrupt(Self.evidence(.crcMismatch([1, 2]), .nothing, .partialFrame([0x7E])))
        #expect(damaged.description.contains("damaged in 2 of 3 tries") && damaged.description.contains("9600:8E1"))
        let refused = BusError.refused(Nak(.keyRevisionMismatch, detail: 4), Self.evidence())
        #expect(refused.description == "meter 7 refused READ_STATUS: key revision mismatch: the meter uses key "
                + "revision 4; sign with that revision")
        for code in NakCode.allCases {
            #expect(BusError.nakSentence(Nak(code)).count > 20)
        }
        #expect(BusError.nakSentence(Nak(rawCode: 0x33, detail: 1)).contains("not defined"))
        let stale = BusError.noAnswer(Self.evidence(.staleSequence(2)))
        #expect(stale.description.contains("raise the timeout"))
        let swapped = BusError.noAnswer(Self.evidence(.wrongAddress(address: 7, serial: 99)))
        #expect(swapped.description.contains("swapped"))
        #expect(BusError.cancelled.description.contains("nothing reached the meter"))
        #expect(BusError.serial(.removed(path: "/dev/x")).description.contains("/dev/x"))
    }

    @Test func verboseEvidenceShowsHexAndTiming() {
        let e = Self.evidence(.crcMismatch([0x7E]))
        #expect(e.verboseDescription == """
            READ_STATUS SEQ 3 to meter 7 at 9600:8E1
              sent (each try): 7E 01
              try 1 (first byte allowed 70.000 ms): a damaged frame (1 byte(s), check failed)
                +4.321 ms  7E 01
            """)
        #expect(e.description.contains("try 1: a damaged frame"))
        #expect(formatMicros(-1_500) == "-1.500" && formatMicros(7) == "0.007")
    }
}
