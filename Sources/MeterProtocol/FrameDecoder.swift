/// Why bytes were skipped instead of becoming a frame (docs/PROTOCOL.md §2.4). A closed set.
public enum FrameError: String, Error, Hashable, Sendable, CaseIterable {
    /// Bytes before a start marker: noise, or the tail of a frame whose start was lost.
    case noStartMarker = "no-start-marker"
    /// A start marker whose header check (CRC-8) failed: a false start or a corrupted header.
    case headerCheckMismatch = "header-check-mismatch"
    /// A header that passed its check but declares a payload longer than the maximum.
    case lengthTooLarge = "length-too-large"
    /// A complete frame whose CRC-16 did not match: corrupted in transit.
    case crcMismatch = "crc-mismatch"
    /// A frame that had begun when the stream ended or the line fell silent.
    case truncated = "truncated"

    /// When runs of skipped bytes merge, the run is named after its most telling reason: a corrupted frame says
    /// more about the line than the noise around it.
    var weight: Int {
        switch self {
        case .noStartMarker: 0
        case .headerCheckMismatch: 1
        case .lengthTooLarge: 2
        case .truncated: 3
        case .crcMismatch: 4
        }
    }

    /// A sentence for a person reading a decode or a sniff.
    public var explanation: String {
        switch self {
        case .noStartMarker: "no start marker (0x7E): line noise or the tail of a lost frame"
        case .headerCheckMismatch: "header check (CRC-8) failed: false start or corrupted header"
        case .lengthTooLarge: "declared payload longer than \(Frame.maxPayloadLength) bytes"
        case .crcMismatch: "frame CRC-16 mismatch: corrupted in transit"
        case .truncated: "frame cut short: the stream ended or the line went silent mid-frame"
        }
    }
}

/// What the decoder produced from the bytes it has.
public enum DecodedItem: Hashable, Sendable {
    /// A valid frame that starts at `offset` in the stream.
    case frame(Frame, offset: Int)
    /// `count` bytes from `offset` that belong to no valid frame; `reason` is the most telling reason among them
    /// (a CRC mismatch over noise, see `FrameError.weight`).
    case skipped(offset: Int, count: Int, reason: FrameError)
}

/// An incremental decoder of native frames (docs/PROTOCOL.md §2.4).
///
/// Feed it bytes as they arrive with `append`, then call `next()` until it returns nil ("need more"). It never
/// waits for more bytes than the largest frame, and on a failed check it drops one byte and rescans, so a good
/// frame that starts inside garbage is still found. Call `finish()` at the end of a stream (or after the line
/// fell silent) so that an incomplete frame is reported as `truncated` and any frame hidden inside it is found.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    /// Index in `buffer` of the first byte not yet consumed.
    private var start = 0
    /// Stream offset of `buffer[0]`.
    private var bufferOffset = 0
    private var finishing = false
    /// Skipped bytes are coalesced into one run and reported before the next frame or "need more".
    private var pendingSkip: (offset: Int, count: Int, reason: FrameError)?
    public let maxPayloadLength: Int

    public init(maxPayloadLength: Int = Frame.maxPayloadLength) {
        precondition(maxPayloadLength >= 0 && maxPayloadLength <= 0xFFFF)
        self.maxPayloadLength = maxPayloadLength
    }

    /// Bytes received but not yet consumed (at most one frame's worth after `next()` returned nil).
    public var bufferedByteCount: Int { self.buffer.count - self.start + (self.pendingSkip?.count ?? 0) }

    /// Stream offset of the next byte `append` will add.
    public var streamOffset: Int { self.bufferOffset + self.buffer.count }

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

    /// Marks the end of the input: what remains can no longer complete a frame.
    public mutating func finish() { self.finishing = true }

    /// Starts a new stream after `finish()` (e.g. the line went quiet and a new exchange begins).
    public mutating func resume() { self.finishing = false }

    /// Discards everything buffered, e.g. before a new request on a bus.
    public mutating func reset() {
        self.bufferOffset += self.buffer.count
        self.buffer.removeAll(keepingCapacity: true)
        self.start = 0
        self.pendingSkip = nil
        self.finishing = false
    }

    /// The next frame or skipped run, or nil when more bytes are needed (or, after `finish()`, when all is done).
    public mutating func next() -> DecodedItem? {
        while true {
            let step = self.buffer.withUnsafeBufferPointer { Self.scan($0, from: self.start, max: self.maxPayloadLength) }
            switch step {
            case .frame(let frame, let length):
                if let skip = self.takePendingSkip() { return skip }
                let offset = self.bufferOffset + self.start
                self.start += length
                return .frame(frame, offset: offset)
            case .garbage(let count, let reason):
                self.skip(count, reason)
            case .needMore:
                if self.finishing && self.start < self.buffer.count {
                    // An incomplete frame at the end: drop its first byte and look inside it for another frame.
                    self.skip(1, .truncated)
                    continue
                }
                return self.takePendingSkip()
            }
        }
    }

    // MARK: Internals

    private mutating func skip(_ count: Int, _ reason: FrameError) {
        let offset = self.bufferOffset + self.start
        if let pending = self.pendingSkip, pending.offset + pending.count == offset {
            let reason = reason.weight > pending.reason.weight ? reason : pending.reason
            self.pendingSkip = (pending.offset, pending.count + count, reason)
        } else {
            self.pendingSkip = (offset, count, reason)
        }
        self.start += count
    }

    private mutating func takePendingSkip() -> DecodedItem? {
        guard let pending = self.pendingSkip else { return nil }
        self.pendingSkip = nil
        return .skipped(offset: pending.offset, count: pending.count, reason: pending.reason)
    }

    private mutating func compactIfUseful() {
        // Shift only when the consumed prefix dominates, so appends stay amortised O(1).
        guard self.start > 0, self.start >= self.buffer.count - self.start || self.start >= 4096 else { return }
        self.buffer.removeSubrange(0..<self.start)
        self.bufferOffset += self.start
        self.start = 0
    }

    enum Step {
        case frame(Frame, length: Int)
        case garbage(Int, FrameError)
        case needMore
    }

    /// Looks at `bytes[from...]`: a frame, a run of garbage to skip, or not enough bytes to tell.
    static func scan(_ bytes: UnsafeBufferPointer<UInt8>, from: Int, max maxPayload: Int) -> Step {
        let end = bytes.count
        guard from < end else { return .needMore }
        if bytes[from] != Frame.startMarker {
            var i = from + 1
            while i < end && bytes[i] != Frame.startMarker { i += 1 }
            return .garbage(i - from, .noStartMarker)
        }
        guard end - from >= Frame.headerLength else { return .needMore }
        let header = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[from..<(from + Frame.headerLength - 1)]))
        guard CRC8.update(0, header) == bytes[from + 12] else { return .garbage(1, .headerCheckMismatch) }
        let length = Int(bytes[from + 10]) << 8 | Int(bytes[from + 11])
        guard length <= maxPayload else { return .garbage(1, .lengthTooLarge) }
        let total = Frame.headerLength + length + Frame.trailerLength
        guard end - from >= total else { return .needMore }
        let crcEnd = from + total - Frame.trailerLength
        let crc = CRC16.update(CRC16.initial, UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[from..<crcEnd])))
        guard crc == UInt16(bytes[crcEnd]) << 8 | UInt16(bytes[crcEnd + 1]) else { return .garbage(1, .crcMismatch) }
        let serial = UInt32(bytes[from + 4]) << 24 | UInt32(bytes[from + 5]) << 16
            | UInt32(bytes[from + 6]) << 8 | UInt32(bytes[from + 7])
        let frame = Frame(
            version: bytes[from + 1],
            flags: Frame.Flags(rawValue: bytes[from + 2]),
            address: bytes[from + 3],
            serial: serial,
            sequence: bytes[from + 8],
            command: bytes[from + 9],
            payload: Array(bytes[(from + Frame.headerLength)..<crcEnd])
        )
        return .frame(frame, length: total)
    }
}

extension FrameDecoder {
    /// Decodes a complete byte stream (a capture file, a hex dump) into frames and skipped runs.
    public static func decodeAll<C: Collection>(_ bytes: C) -> [DecodedItem] where C.Element == UInt8 {
        var decoder = FrameDecoder()
        decoder.append(bytes)
        decoder.finish()
        var items: [DecodedItem] = []
        while let item = decoder.next() { items.append(item) }
        return items
    }
}
