// DL/T 645-2007 (multi-function watt-hour meter communication protocol), pure. Bytes in, values out.
//
//   [FE FE FE FE] 68 A0 A1 A2 A3 A4 A5 68 C L DATA... CS 16
//
// Address: 6 bytes of BCD, least significant pair first. DATA: every byte sent plus 0x33. CS: sum modulo 256 of
// every byte from the first 68 through the last data byte.

/// A meter address: 12 decimal digits, e.g. "000000123456", or the wildcard/broadcast forms.
public struct DLT645Address: Hashable, Sendable, CustomStringConvertible {
    /// Wire order: A0 (the least significant two digits) first.
    public var bytes: [UInt8]

    public init(wire bytes: [UInt8]) {
        precondition(bytes.count == 6)
        self.bytes = bytes
    }

    /// From 12 digits as printed on the meter's nameplate (most significant first).
    public init?(_ digits: String) {
        let d = Array(digits.utf8)
        guard d.count == 12, d.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        self.bytes = (0..<6).map { i in
            let hi = d[10 - 2 * i] - 0x30
            let lo = d[11 - 2 * i] - 0x30
            return hi << 4 | lo
        }
    }

    /// AA AA AA AA AA AA: "whoever is on the line" (read address on a single-meter link).
    public static let wildcard = DLT645Address(wire: [UInt8](repeating: 0xAA, count: 6))
    /// 99 99 99 99 99 99: every meter, no answer (broadcast time).
    public static let broadcast = DLT645Address(wire: [UInt8](repeating: 0x99, count: 6))

    public var isBroadcast: Bool { self == .broadcast }

    /// Whether a meter with address `own` processes a frame sent to this address (AA matches any digit pair).
    public func matches(_ own: DLT645Address) -> Bool {
        if self.isBroadcast { return true }
        return zip(self.bytes, own.bytes).allSatisfy { $0 == 0xAA || $0 == $1 }
    }

    public var description: String {
        self.bytes.reversed().map { b in
            b == 0xAA ? "AA" : String(b >> 4, radix: 16) + String(b & 0x0F, radix: 16)
        }.joined().uppercased()
    }
}

/// Control codes (DL/T 645-2007 §7.1), the function in bits 0-4.
public enum DLT645Function: UInt8, CaseIterable, Sendable {
    case broadcastTime = 0x08
    case readData = 0x11
    case readFollowUp = 0x12
    case readAddress = 0x13
    case writeData = 0x14
    case writeAddress = 0x15
    case freeze = 0x16
    case changeBaud = 0x17
    case changePassword = 0x18
    case clearDemand = 0x19
    case clearMeter = 0x1A
    case clearEvents = 0x1B
    case relayControl = 0x1C
}

/// One frame, data already without the 0x33 offset.
public struct DLT645Frame: Hashable, Sendable {
    public var address: DLT645Address
    public var control: UInt8
    public var data: [UInt8]

    public init(address: DLT645Address, control: UInt8, data: [UInt8] = []) {
        self.address = address
        self.control = control
        self.data = data
    }

    public init(address: DLT645Address, function: DLT645Function, data: [UInt8] = []) {
        self.init(address: address, control: function.rawValue, data: data)
    }

    /// Bit 7: sent by a meter. Bit 6: abnormal answer. Bit 5: more data follows.
    public var isResponse: Bool { self.control & 0x80 != 0 }
    public var isAbnormal: Bool { self.control & 0x40 != 0 }
    public var hasFollowUp: Bool { self.control & 0x20 != 0 }
    public var function: DLT645Function? { DLT645Function(rawValue: self.control & 0x1F) }

    /// The largest data field this implementation sends or accepts.
    public static let maxDataLength = 200

    /// Wire bytes, preceded by `preamble` wake-up bytes (FE; meters commonly want 4, some none).
    public func encoded(preamble: Int = 4) -> [UInt8] {
        precondition(self.data.count <= Self.maxDataLength)
        var out = [UInt8](repeating: 0xFE, count: preamble)
        let start = out.count
        out.append(0x68)
        out += self.address.bytes
        out.append(0x68)
        out.append(self.control)
        out.append(UInt8(self.data.count))
        out += self.data.map { $0 &+ 0x33 }
        out.append(out[start...].reduce(0, &+))
        out.append(0x16)
        return out
    }

    /// The response a meter sends to `request`: control with bit 7, normal or abnormal.
    public static func response(to request: DLT645Frame, from address: DLT645Address, data: [UInt8],
                                followUp: Bool = false) -> DLT645Frame {
        DLT645Frame(address: address, control: request.control & 0x1F | 0x80 | (followUp ? 0x20 : 0), data: data)
    }

    public static func abnormal(to request: DLT645Frame, from address: DLT645Address, error: DLT645ErrorWord)
        -> DLT645Frame
    {
        DLT645Frame(address: address, control: request.control & 0x1F | 0xC0, data: [error.rawValue])
    }
}

/// Error word of an abnormal answer (§7.2, the byte after control | 0xC0).
public struct DLT645ErrorWord: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let other = DLT645ErrorWord(rawValue: 1 << 0)
    public static let noDataRequested = DLT645ErrorWord(rawValue: 1 << 1)
    public static let unauthorized = DLT645ErrorWord(rawValue: 1 << 2)
    public static let baudRateUnchangeable = DLT645ErrorWord(rawValue: 1 << 3)
    public static let yearlyZonesExceeded = DLT645ErrorWord(rawValue: 1 << 4)
    public static let dailyPeriodsExceeded = DLT645ErrorWord(rawValue: 1 << 5)
    public static let tariffsExceeded = DLT645ErrorWord(rawValue: 1 << 6)

    public var names: [String] {
        let all: [(DLT645ErrorWord, String)] = [
            (.other, "other error"), (.noDataRequested, "no such data"), (.unauthorized, "password wrong or unauthorized"),
            (.baudRateUnchangeable, "baud rate cannot be changed"), (.yearlyZonesExceeded, "too many yearly time zones"),
            (.dailyPeriodsExceeded, "too many daily periods"), (.tariffsExceeded, "too many tariffs"),
        ]
        return all.filter { self.contains($0.0) }.map(\.1)
    }
}

/// Why bytes were skipped. A closed set.
public enum DLT645FrameError: String, Error, Hashable, Sendable {
    case noStart = "no-start"
    case noSecondStart = "no-second-start"
    case lengthTooLarge = "length-too-large"
    case checksumMismatch = "checksum-mismatch"
    case noEnd = "no-end"
    case truncated
}

public enum DLT645Item: Hashable, Sendable {
    case frame(DLT645Frame, offset: Int)
    case skipped(offset: Int, count: Int, reason: DLT645FrameError)
}

/// Incremental decoder: skips FE wake-up bytes and noise, drops one byte and rescans on any failed check.
public struct DLT645Decoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    private var bufferOffset = 0
    private var finishing = false
    private var pending: (offset: Int, count: Int, reason: DLT645FrameError)?
    /// Finished skipped runs waiting to be returned, oldest first.
    private var ready: [DLT645Item] = []

    public init() {}

    public var bufferedByteCount: Int { self.buffer.count - self.start }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        self.compactIfUseful()
        self.buffer.append(contentsOf: bytes)
    }

    /// The same for an array, the bus master's case: callers in other modules reach this one without generic
    /// dispatch.
    public mutating func append(_ bytes: [UInt8]) {
        self.compactIfUseful()
        self.buffer.append(contentsOf: bytes)
    }

    private mutating func compactIfUseful() {
        if self.start > 4096 || (self.start > 0 && self.start >= self.buffer.count - self.start) {
            self.buffer.removeSubrange(0..<self.start)
            self.bufferOffset += self.start
            self.start = 0
        }
    }

    public mutating func finish() { self.finishing = true }
    public mutating func resume() { self.finishing = false }

    public mutating func next() -> DLT645Item? {
        while true {
            let b = self.buffer
            let from = self.start
            guard from < b.count else { return self.takePending() }
            if b[from] != 0x68 {
                // FE preamble and noise alike: only a 68 can start a frame.
                var i = from + 1
                while i < b.count && b[i] != 0x68 { i += 1 }
                self.skip(i - from, b[from] == 0xFE ? nil : .noStart)
                continue
            }
            guard b.count - from >= 10 else {
                if self.finishing { self.skip(1, .truncated); continue }
                return self.takePending()
            }
            guard b[from + 7] == 0x68 else { self.skip(1, .noSecondStart); continue }
            let length = Int(b[from + 9])
            guard length <= DLT645Frame.maxDataLength else { self.skip(1, .lengthTooLarge); continue }
            let total = 12 + length
            guard b.count - from >= total else {
                if self.finishing { self.skip(1, .truncated); continue }
                return self.takePending()
            }
            let sum = b[from..<(from + 10 + length)].reduce(0, &+)
            guard sum == b[from + 10 + length] else { self.skip(1, .checksumMismatch); continue }
            guard b[from + 11 + length] == 0x16 else { self.skip(1, .noEnd); continue }
            if let pending = self.takePending() { return pending }
            let frame = DLT645Frame(
                address: DLT645Address(wire: Array(b[(from + 1)..<(from + 7)])), control: b[from + 8],
                data: b[(from + 10)..<(from + 10 + length)].map { $0 &- 0x33 })
            self.start += total
            return .frame(frame, offset: self.bufferOffset + from)
        }
    }

    /// Skipped bytes; preamble bytes (reason nil) are consumed silently: they belong to a well-formed exchange.
    private mutating func skip(_ count: Int, _ reason: DLT645FrameError?) {
        let offset = self.bufferOffset + self.start
        self.start += count
        guard let reason else { return }
        if let p = self.pending, p.offset + p.count == offset {
            self.pending = (p.offset, p.count + count, p.reason)
            return
        }
        if let p = self.pending { self.ready.append(.skipped(offset: p.offset, count: p.count, reason: p.reason)) }
        self.pending = (offset, count, reason)
    }

    private mutating func takePending() -> DLT645Item? {
        if !self.ready.isEmpty { return self.ready.removeFirst() }
        guard let p = self.pending else { return nil }
        self.pending = nil
        return .skipped(offset: p.offset, count: p.count, reason: p.reason)
    }

    /// A whole capture.
    public static func decodeAll(_ bytes: [UInt8]) -> [DLT645Item] {
        var d = DLT645Decoder()
        d.append(bytes)
        d.finish()
        var out: [DLT645Item] = []
        while let item = d.next() { out.append(item) }
        return out
    }
}
