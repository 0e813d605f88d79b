import DLT645Protocol
import ModbusProtocol

/// A frame of a protocol without native headers (no SEQ, no serial), as the bus master received it.
public enum RawFrame: Sendable, Hashable {
    case modbus(ModbusADU)
    case dlt645(DLT645Frame)
}

/// How a protocol's frames are delimited on the wire.
public enum RawFraming: Sendable, Hashable {
    /// Modbus RTU: a frame ends at t3.5 of silence, a gap over t1.5 inside it breaks it (Modbus over Serial Line
    /// §2.5.1.1). `expectedLength` (from the request: function code and count) completes a frame with a valid CRC
    /// at once instead of waiting for the silence.
    case modbusRTU(expectedLength: Int?)
    /// DL/T 645-2007: 68 A0..A5 68 C L DATA CS 16, FE wake-up bytes skipped; the structure delimits the frame.
    case dlt645

    /// The answer's whole length where the request tells it.
    var expectedLength: Int? {
        if case .modbusRTU(let expected) = self { expected } else { nil }
    }
}

/// What a received frame is to the request in flight.
public enum RawVerdict: Sendable, Equatable {
    /// Its answer (a normal answer, or a refusal the driver decodes).
    case answer
    /// "Busy, ask again" (Modbus exception 5 or 6): retried after the gap while tries are left.
    case busy
    /// An answer to this request from another station, named in its protocol's words.
    case wrongStation(String)
    /// Not for us: another master's request, an answer to an earlier request.
    case notAnswer
}

/// One request in a protocol without native framing, with how to recognise its answer.
public struct RawRequest: Sendable {
    public var bytes: [UInt8]
    /// For evidence and traces: "Modbus read input registers 72+2 from 3".
    public var label: String {
        get { self.requestLabel.text }
        set { self.requestLabel = .text(newValue) }
    }
    /// The label, possibly not yet formatted (see ``RequestLabel``).
    var requestLabel: RequestLabel
    public var framing: RawFraming
    /// A normal answer may repeat the request byte for byte (Modbus 05 and 06): then a first copy is taken for
    /// the adapter's echo only where this adapter has been seen echoing (else it is the answer).
    public var answerMayRepeatRequest: Bool
    /// The device needs longer than a meter's usual turnaround (card operations, writes to flash).
    public var slow: Bool
    /// What a received frame is to this request.
    public var verdict: @Sendable (RawFrame) -> RawVerdict {
        get { { [matcher] frame in matcher.judge(frame) } }
        set { self.matcher = .custom(newValue) }
    }
    var matcher: Matcher

    /// How answers are recognised: a Modbus request's by value (no closure to allocate per request), others by
    /// their driver's closure.
    enum Matcher: Sendable {
        case modbus(function: UInt8, address: UInt8)
        case custom(@Sendable (RawFrame) -> RawVerdict)

        func judge(_ frame: RawFrame) -> RawVerdict {
            switch self {
            case .custom(let verdict): verdict(frame)
            case .modbus(let function, let address):
                ModbusDriver.verdict(frame, function: function, address: address)
            }
        }
    }

    public init(bytes: [UInt8], label: String, framing: RawFraming, answerMayRepeatRequest: Bool = false,
                slow: Bool = false, verdict: @escaping @Sendable (RawFrame) -> RawVerdict) {
        self.init(bytes: bytes, requestLabel: .text(label), framing: framing,
                  answerMayRepeatRequest: answerMayRepeatRequest, slow: slow, matcher: .custom(verdict))
    }

    /// A request whose label is written only when evidence or a trace shows it.
    init(bytes: [UInt8], requestLabel: RequestLabel, framing: RawFraming, answerMayRepeatRequest: Bool = false,
         slow: Bool = false, matcher: Matcher) {
        self.bytes = bytes
        self.requestLabel = requestLabel
        self.framing = framing
        self.answerMayRepeatRequest = answerMayRepeatRequest
        self.slow = slow
        self.matcher = matcher
    }

    /// What `frame` is to this request.
    func judge(_ frame: RawFrame) -> RawVerdict { self.matcher.judge(frame) }
}

/// The answer to a ``RawRequest``, with the bytes as received and what was seen on the way.
public struct RawAnswer: Sendable {
    public var frame: RawFrame
    public var bytes: [UInt8]
    public var evidence: Evidence
}

/// A frame a raw framer delimited, with its bytes as received (for echo detection and the answer).
struct RawReceived {
    var frame: RawFrame
    var bytes: [UInt8]
}

/// A raw protocol's receive side for one transaction: frames and skipped runs from the bytes that arrive, with
/// when the frame in progress began.
///
/// Plain stored fields (no optionals of structs, no tuples): this runs on every transaction, and optional or tuple
/// projections go through generic value witnesses.
struct RawReceiver: ReceiveFramer {
    typealias Item = ReceivedItem<RawReceived>

    /// Modbus RTU (by silence and expected length) or DL/T 645 (by structure).
    private let isModbus: Bool
    private var modbus: ModbusRTUFramer
    private var dlt = DLT645Decoder()
    private var stream: [UInt8] = []
    private let epoch: BusInstant
    /// When the frame in progress started arriving, and whether that time is exact (nil `at`: no frame).
    private var frameStart: Stamp?
    private var arrivals: [Reception.Arrival] = []

    init(framing: RawFraming, silence: Duration, characterGap: Duration?, epoch: BusInstant) {
        self.epoch = epoch
        if case .modbusRTU(let expected) = framing {
            self.isModbus = true
            self.frameEndSilence = silence
            self.modbus = ModbusRTUFramer(frameSilenceMicros: silence.micros, characterGapMicros: characterGap?.micros,
                                          expectedLength: expected)
        } else {
            self.isModbus = false
            self.frameEndSilence = nil
            self.modbus = ModbusRTUFramer(frameSilenceMicros: silence.micros, characterGapMicros: nil)
        }
    }

    private func micros(_ instant: BusInstant) -> Int64 { instant.micros(since: self.epoch) }

    var bufferedByteCount: Int { self.isModbus ? self.modbus.bufferedByteCount : self.dlt.bufferedByteCount }

    /// Bytes the frame in progress still needs, where its length is known (else 1).
    var neededBytes: Int {
        if self.isModbus { return self.modbus.neededBytes }
        let held = self.dlt.bufferedByteCount
        guard held > 0, held <= self.stream.count else { return 1 }
        let start = self.stream.count - held
        guard self.stream[start] == 0x68 else { return 1 }
        guard held >= 10 else { return 12 - held }
        return max(1, 12 + Int(self.stream[start + 9]) - held)
    }

    let frameEndSilence: Duration?
    var maxRead: Int { 512 }
    var expectedLength: Int? { self.isModbus ? self.modbus.expectedLength : nil }

    mutating func append(_ bytes: [UInt8], at: BusInstant, exact: Bool) {
        guard !bytes.isEmpty else { return }
        if self.bufferedByteCount == 0 { self.frameStart = Stamp(at: at, exact: exact) }
        if self.isModbus {
            self.modbus.append(bytes, atMicros: self.micros(at))
        } else {
            self.arrivals.append(Reception.Arrival(offset: self.stream.count, at: at, exact: exact))
            self.stream += bytes
            self.dlt.append(bytes)
        }
    }

    mutating func next(now: BusInstant) -> Item? {
        if self.isModbus {
            guard let item = self.modbus.next(nowMicros: self.micros(now)) else { return nil }
            let start = self.frameStart ?? Stamp(at: now, exact: false)
            if self.modbus.bufferedByteCount == 0 { self.frameStart = nil }
            switch item {
            case .frame(let bytes):
                // The framer checked the CRC and the length.
                guard let adu = try? ModbusADU(framed: bytes) else { return .skipped(.crcMismatch(bytes), count: 1) }
                return .frame(RawReceived(frame: .modbus(adu), bytes: bytes), firstByteAt: start.at, exact: start.exact)
            case .skipped(let bytes, let why):
                switch why {
                case .crcMismatch: return .skipped(.crcMismatch(bytes), count: bytes.count)
                case .characterGap, .tooShort: return .skipped(.partialFrame(bytes), count: bytes.count)
                case .tooLong: return .skipped(.garbage(bytes), count: bytes.count)
                }
            }
        }
        guard let item = self.dlt.next() else { return nil }
        switch item {
        case .frame(let frame, let offset):
            let length = 12 + frame.data.count
            let bytes = Array(self.stream[offset..<min(offset + length, self.stream.count)])
            var found = self.arrivals.first ?? Reception.Arrival(offset: 0, at: now, exact: false)
            for a in self.arrivals where a.offset <= offset { found = a }
            return .frame(RawReceived(frame: .dlt645(frame), bytes: bytes), firstByteAt: found.at, exact: found.exact)
        case .skipped(let offset, let count, let reason):
            let raw = Array(self.stream[offset..<min(offset + count, self.stream.count)])
            switch reason {
            case .noStart: return .skipped(.garbage(raw), count: count)
            case .truncated: return .skipped(.partialFrame(raw), count: count)
            case .noSecondStart, .lengthTooLarge, .checksumMismatch, .noEnd:
                return .skipped(.crcMismatch(raw), count: count)
            }
        }
    }

    /// The line fell silent for good: end (or give up on) the frame in progress.
    mutating func finish() {
        if self.isModbus { self.modbus.finish() } else { self.dlt.finish() }
    }

    mutating func resume() {
        if !self.isModbus { self.dlt.resume() }
    }
}
