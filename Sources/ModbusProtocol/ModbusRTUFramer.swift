/// Delimits Modbus RTU frames on a byte stream by line silence (Modbus over Serial Line v1.02 §2.5.1.1), pure:
/// bytes come in with the time they arrived (integer microseconds on any monotonic scale).
///
/// A frame ends after `frameSilenceMicros` (t3.5) without a byte; a silence longer than `characterGapMicros`
/// (t1.5) but shorter than t3.5 inside a frame breaks it, and the whole frame is discarded when it ends. A reader
/// that knows the answer's length from its own request (a master) may set ``expectedLength``: a frame that reaches
/// that length (or the 5 bytes of an exception answer) with a valid CRC is complete at once, without waiting for the
/// silence. That length comes from the request (function code and count), never from scanning for CRCs.
public struct ModbusRTUFramer: Sendable {
    public enum Item: Hashable, Sendable {
        /// A frame with a valid CRC, address first.
        case frame([UInt8])
        /// Bytes that ended by silence without forming a valid frame.
        case skipped([UInt8], Rejection)
    }

    public enum Rejection: String, Hashable, Sendable {
        /// Fewer than 4 bytes before the silence.
        case tooShort = "too-short"
        case crcMismatch = "crc-mismatch"
        /// A gap of more than t1.5 inside the frame (§2.5.1.1: the frame is incomplete and must be discarded).
        case characterGap = "character-gap"
        /// More than 256 bytes without a silence.
        case tooLong = "too-long"
    }

    public let frameSilenceMicros: Int64
    /// nil: gaps inside a frame are not checked (adapters that deliver in bursts make them meaningless).
    public let characterGapMicros: Int64?
    /// Complete a frame at this length (or at 5 bytes for an exception answer) when its CRC verifies.
    public var expectedLength: Int?
    /// A server's framer: a request is complete at the length its function code and byte count give.
    public var readsRequests = false

    private var buffer: [UInt8] = []
    private var lastByteMicros: Int64 = 0
    private var broken = false
    private var ready = ReadyItems()

    public init(frameSilenceMicros: Int64, characterGapMicros: Int64?, expectedLength: Int? = nil) {
        self.frameSilenceMicros = frameSilenceMicros
        self.characterGapMicros = characterGapMicros
        self.expectedLength = expectedLength
    }

    /// The standard's timing for a line: t3.5 and t1.5 (fixed above 19200 baud).
    public init(baud: Int, bitsPerCharacter: Int = 11, checkCharacterGaps: Bool = true, expectedLength: Int? = nil) {
        self.init(frameSilenceMicros: Int64(ModbusTiming.frameSilenceMicros(baud: baud,
                                                                            bitsPerCharacter: bitsPerCharacter)),
                  characterGapMicros: checkCharacterGaps
                    ? Int64(ModbusTiming.characterGapMicros(baud: baud, bitsPerCharacter: bitsPerCharacter)) : nil,
                  expectedLength: expectedLength)
    }

    public var bufferedByteCount: Int { self.buffer.count }

    /// Bytes the frame in progress still needs to reach ``expectedLength`` (1 when unknown or past it).
    public var neededBytes: Int {
        guard let expected = self.expectedLength else { return 1 }
        if self.buffer.count >= 2 && self.buffer[1] & 0x80 != 0 { return max(1, 5 - self.buffer.count) }
        return max(1, expected - self.buffer.count)
    }

    /// When the frame in progress ends by silence, if one is in progress.
    public var silenceDeadlineMicros: Int64? {
        self.buffer.isEmpty ? nil : self.lastByteMicros + self.frameSilenceMicros
    }

    /// Bytes read at `micros` (the time the last of them arrived).
    public mutating func append(_ bytes: [UInt8], atMicros micros: Int64) {
        guard !bytes.isEmpty else { return }
        if !self.buffer.isEmpty {
            // `micros` is when the last new byte arrived: the line was silent for the time since the previous
            // byte less the new bytes' own wire time.
            let silence = micros - self.lastByteMicros - self.characterTime(bytes.count)
            if silence >= self.frameSilenceMicros {
                self.endFrame()
            } else if let gap = self.characterGapMicros, silence > gap {
                self.broken = true
            }
        }
        // A whole read that starts a frame is taken as it is (its storage shared, not copied): a master's answer
        // usually comes in one read.
        if self.buffer.isEmpty && bytes.count <= ModbusADU.maxLength {
            self.buffer = bytes
            self.lastByteMicros = micros
            self.completeIfExpected()
            return
        }
        // In runs up to the length limit rather than byte by byte: one copy, and the buffer grows once.
        var rest = bytes[...]
        while !rest.isEmpty {
            let take = min(rest.count, ModbusADU.maxLength + 1 - self.buffer.count)
            self.buffer.append(contentsOf: rest.prefix(take))
            rest = rest.dropFirst(take)
            if self.buffer.count > ModbusADU.maxLength {
                self.ready.append(.skipped(self.buffer, .tooLong))
                self.buffer.removeAll()
                self.broken = false
            }
        }
        self.lastByteMicros = micros
        self.completeIfExpected()
    }

    /// The next frame or skipped run, considering that the line has been silent until `nowMicros`.
    public mutating func next(nowMicros: Int64) -> Item? {
        if self.ready.isEmpty, !self.buffer.isEmpty, nowMicros - self.lastByteMicros >= self.frameSilenceMicros {
            self.endFrame()
        }
        return self.ready.removeFirst()
    }

    /// Ends the frame in progress now (the reader gives up waiting).
    public mutating func finish() {
        if !self.buffer.isEmpty { self.endFrame() }
    }

    public mutating func reset() {
        self.buffer.removeAll(keepingCapacity: true)
        self.ready.removeAll()
        self.broken = false
    }

    /// A whole capture with no timing (frames separated by the caller): each chunk is one frame.
    public static func frames(_ chunks: [[UInt8]]) -> [Item] {
        var framer = ModbusRTUFramer(frameSilenceMicros: 1, characterGapMicros: nil)
        var out: [Item] = []
        for (i, chunk) in chunks.enumerated() {
            framer.append(chunk, atMicros: Int64(i) * 10)
            framer.finish()
            while let item = framer.next(nowMicros: Int64(i) * 10) { out.append(item) }
        }
        return out
    }

    /// The length of a request from its first bytes, for the functions this implementation serves; nil when
    /// unknown (then only silence ends it).
    public static func requestLength(_ prefix: [UInt8]) -> Int? {
        guard prefix.count >= 2 else { return nil }
        switch prefix[1] {
        case 0x01...0x06: return 8
        case 0x0F, 0x10: return prefix.count >= 7 ? 9 + Int(prefix[6]) : nil
        case 0x17: return prefix.count >= 11 ? 13 + Int(prefix[10]) : nil
        case 0x2B: return 7
        default: return nil
        }
    }

    private func characterTime(_ count: Int) -> Int64 {
        // t3.5 is 3.5 character times (or fixed above 19200, where a character is shorter still).
        self.frameSilenceMicros * 2 * Int64(count) / 7
    }

    private mutating func completeIfExpected() {
        guard !self.broken, self.buffer.count >= 4 else { return }
        let length: Int
        if self.readsRequests {
            guard let n = Self.requestLength(self.buffer) else { return }
            length = n
        } else {
            guard let expected = self.expectedLength else { return }
            length = self.buffer[1] & 0x80 != 0 ? 5 : expected
        }
        if self.buffer.count == length && ModbusCRC.verifies(self.buffer) {
            self.ready.append(.frame(self.buffer))
            // Not removeAll(keepingCapacity:): the frame shares the storage, which would be copied.
            self.buffer = []
        }
    }

    private mutating func endFrame() {
        let bytes = self.buffer
        self.buffer = []
        defer { self.broken = false }
        if self.broken {
            self.ready.append(.skipped(bytes, .characterGap))
        } else if bytes.count < 4 {
            self.ready.append(.skipped(bytes, .tooShort))
        } else if !ModbusCRC.verifies(bytes) {
            self.ready.append(.skipped(bytes, .crcMismatch))
        } else {
            self.ready.append(.frame(bytes))
        }
    }
}

extension ModbusRequest {
    /// The length of a normal RTU answer to this request, address and CRC included (an exception answer has 5).
    public var expectedAnswerLength: Int? {
        switch self {
        case .readCoils(_, let n), .readDiscreteInputs(_, let n): 5 + (Int(n) + 7) / 8
        case .readHoldingRegisters(_, let n), .readInputRegisters(_, let n),
            .readWriteMultipleRegisters(_, let n, _, _):
            5 + 2 * Int(n)
        case .writeSingleCoil, .writeSingleRegister, .writeMultipleCoils, .writeMultipleRegisters: 8
        // Objects of any length: delimited by silence.
        case .readDeviceIdentification: nil
        }
    }

    /// Whether a normal answer repeats the request byte for byte (an adapter's echo looks the same).
    public var answerRepeatsRequest: Bool {
        switch self {
        case .writeSingleCoil, .writeSingleRegister: true
        default: false
        }
    }
}

/// Items delimited and not yet taken, in order: almost always one, which is kept without an array (an allocation
/// per frame otherwise).
private struct ReadyItems {
    private var first: ModbusRTUFramer.Item?
    private var more: [ModbusRTUFramer.Item] = []

    var isEmpty: Bool { self.first == nil }

    mutating func append(_ item: ModbusRTUFramer.Item) {
        if self.first == nil { self.first = item } else { self.more.append(item) }
    }

    mutating func removeFirst() -> ModbusRTUFramer.Item? {
        guard let item = self.first else { return nil }
        self.first = self.more.isEmpty ? nil : self.more.removeFirst()
        return item
    }

    mutating func removeAll() {
        self.first = nil
        self.more.removeAll()
    }
}
