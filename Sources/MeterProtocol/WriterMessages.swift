// Card writer messages (docs/PROTOCOL.md §4.3). A writer counts card insertions so that a write can name the
// card it means: a customer who swaps cards between the read and the write gets CARD_CHANGED, not a wrong card.

// MARK: WRITER_STATUS 0x40

public struct WriterStatusRequest: NativeRequest {
    public typealias Response = WriterStatus
    public static let command = Command.writerStatus
    public init() {}
    public init(reading r: inout ByteReader) throws(PayloadError) {}
    public func write(to w: inout ByteWriter) {}
    public var fields: [Field] { [] }
}

public struct WriterStatus: NativeMessage {
    public static let command = Command.writerStatus
    public static let isResponse = true

    public var state: WriterState
    /// The NAK code of the last failed operation, 0 if none.
    public var lastError: UInt8
    public var cardsWritten: UInt32
    public var cardPresent: Bool

    public init(state: WriterState, lastError: UInt8, cardsWritten: UInt32, cardPresent: Bool) {
        self.state = state
        self.lastError = lastError
        self.cardsWritten = cardsWritten
        self.cardPresent = cardPresent
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.state = try readEnum(WriterState.self, &r, "state")
        self.lastError = try r.u8("lastError")
        self.cardsWritten = try r.u32("cardsWritten")
        let present = try r.u8("cardPresent")
        guard present <= 1 else { throw .invalidValue(field: "cardPresent", value: UInt64(present)) }
        self.cardPresent = present == 1
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.state.rawValue)
        w.u8(self.lastError)
        w.u32(self.cardsWritten)
        w.u8(self.cardPresent ? 1 : 0)
    }

    public var fields: [Field] {
        [Field("state", .code(UInt64(self.state.rawValue), name: self.state.name)),
         Field("lastError", .code(UInt64(self.lastError), name: NakCode(rawValue: self.lastError)?.name ?? "none")),
         Field("cardsWritten", .unsigned(UInt64(self.cardsWritten))),
         Field("cardPresent", .flag(self.cardPresent))]
    }
}

// MARK: CARD_PRESENCE 0x41

public struct CardPresenceRequest: NativeRequest {
    public typealias Response = CardPresence
    public static let command = Command.cardPresence
    public init() {}
    public init(reading r: inout ByteReader) throws(PayloadError) {}
    public func write(to w: inout ByteWriter) {}
    public var fields: [Field] { [] }
}

public struct CardPresence: NativeMessage {
    public static let command = Command.cardPresence
    public static let isResponse = true

    public var media: CardMedia
    /// Bytes of card memory, 0 without a card.
    public var capacity: UInt16
    /// Incremented on every insertion; names the card in the slot for WRITE_CARD and ERASE_CARD.
    public var insertion: UInt32

    public var isPresent: Bool { self.media != .none }

    public init(media: CardMedia, capacity: UInt16, insertion: UInt32) {
        self.media = media
        self.capacity = capacity
        self.insertion = insertion
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.media = try readEnum(CardMedia.self, &r, "media")
        self.capacity = try r.u16("capacity")
        self.insertion = try r.u32("insertion")
    }

    public func write(to w: inout ByteWriter) {
        w.u8(self.media.rawValue)
        w.u16(self.capacity)
        w.u32(self.insertion)
    }

    public var fields: [Field] {
        [Field("media", .code(UInt64(self.media.rawValue), name: self.media.name)),
         Field("capacity", .quantity(Int64(self.capacity), unit: "B")),
         Field("insertion", .unsigned(UInt64(self.insertion)))]
    }
}

// MARK: READ_CARD 0x42

public struct ReadCardRequest: NativeRequest {
    public typealias Response = CardData
    public static let command = Command.readCard
    public static let maxLength: UInt16 = 256

    public var offset: UInt16
    /// 1...256.
    public var length: UInt16

    public init(offset: UInt16, length: UInt16) {
        self.offset = offset
        self.length = length
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.offset = try r.u16("offset")
        self.length = try r.u16("length")
        guard (1...Self.maxLength).contains(self.length) else {
            throw .invalidValue(field: "length", value: UInt64(self.length))
        }
    }

    public func write(to w: inout ByteWriter) {
        w.u16(self.offset)
        w.u16(self.length)
    }

    public var fields: [Field] {
        [Field("offset", .unsigned(UInt64(self.offset))), Field("length", .quantity(Int64(self.length), unit: "B"))]
    }
}

public struct CardData: NativeMessage {
    public static let command = Command.readCard
    public static let isResponse = true

    public var insertion: UInt32
    public var offset: UInt16
    public var data: [UInt8]

    public init(insertion: UInt32, offset: UInt16, data: [UInt8]) {
        self.insertion = insertion
        self.offset = offset
        self.data = data
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.insertion = try r.u32("insertion")
        self.offset = try r.u16("offset")
        self.data = r.rest()
        guard self.data.count <= Int(ReadCardRequest.maxLength) else {
            throw .invalidValue(field: "data.length", value: UInt64(self.data.count))
        }
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.insertion)
        w.u16(self.offset)
        w.bytes(self.data)
    }

    public var fields: [Field] {
        [Field("insertion", .unsigned(UInt64(self.insertion))),
         Field("offset", .unsigned(UInt64(self.offset))),
         Field("data", .bytes(self.data))]
    }
}

// MARK: WRITE_CARD 0x43

public struct WriteCardRequest: NativeRequest {
    public typealias Response = CardWritten
    public static let command = Command.writeCard
    /// `insertion` value meaning "whatever card is in the slot" (for technicians' tools only).
    public static let anyInsertion: UInt32 = 0

    public var insertion: UInt32
    public var offset: UInt16
    /// 1...256 bytes.
    public var data: [UInt8]

    public init(insertion: UInt32, offset: UInt16, data: [UInt8]) {
        precondition((1...Int(ReadCardRequest.maxLength)).contains(data.count))
        self.insertion = insertion
        self.offset = offset
        self.data = data
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.insertion = try r.u32("insertion")
        self.offset = try r.u16("offset")
        self.data = r.rest()
        guard (1...Int(ReadCardRequest.maxLength)).contains(self.data.count) else {
            throw .invalidValue(field: "data.length", value: UInt64(self.data.count))
        }
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.insertion)
        w.u16(self.offset)
        w.bytes(self.data)
    }

    public var fields: [Field] {
        [Field("insertion", .unsigned(UInt64(self.insertion))),
         Field("offset", .unsigned(UInt64(self.offset))),
         Field("data", .bytes(self.data))]
    }
}

public struct CardWritten: NativeMessage {
    public static let command = Command.writeCard
    public static let isResponse = true

    public var insertion: UInt32
    public var offset: UInt16
    public var length: UInt16

    public init(insertion: UInt32, offset: UInt16, length: UInt16) {
        self.insertion = insertion
        self.offset = offset
        self.length = length
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.insertion = try r.u32("insertion")
        self.offset = try r.u16("offset")
        self.length = try r.u16("length")
    }

    public func write(to w: inout ByteWriter) {
        w.u32(self.insertion)
        w.u16(self.offset)
        w.u16(self.length)
    }

    public var fields: [Field] {
        [Field("insertion", .unsigned(UInt64(self.insertion))),
         Field("offset", .unsigned(UInt64(self.offset))),
         Field("length", .quantity(Int64(self.length), unit: "B"))]
    }
}

// MARK: ERASE_CARD 0x44

public struct EraseCardRequest: NativeRequest {
    public typealias Response = CardErased
    public static let command = Command.eraseCard

    public var insertion: UInt32

    public init(insertion: UInt32) { self.insertion = insertion }
    public init(reading r: inout ByteReader) throws(PayloadError) { self.insertion = try r.u32("insertion") }
    public func write(to w: inout ByteWriter) { w.u32(self.insertion) }
    public var fields: [Field] { [Field("insertion", .unsigned(UInt64(self.insertion)))] }
}

public struct CardErased: NativeMessage {
    public static let command = Command.eraseCard
    public static let isResponse = true

    public var insertion: UInt32

    public init(insertion: UInt32) { self.insertion = insertion }
    public init(reading r: inout ByteReader) throws(PayloadError) { self.insertion = try r.u32("insertion") }
    public func write(to w: inout ByteWriter) { w.u32(self.insertion) }
    public var fields: [Field] { [Field("insertion", .unsigned(UInt64(self.insertion)))] }
}

// MARK: BEEP 0x45

public struct BeepRequest: NativeRequest {
    public typealias Response = BeepDone
    public static let command = Command.beep

    public var durationMs: UInt16
    public var count: UInt8

    public init(durationMs: UInt16, count: UInt8) {
        self.durationMs = durationMs
        self.count = count
    }

    public init(reading r: inout ByteReader) throws(PayloadError) {
        self.durationMs = try r.u16("duration")
        self.count = try r.u8("count")
    }

    public func write(to w: inout ByteWriter) {
        w.u16(self.durationMs)
        w.u8(self.count)
    }

    public var fields: [Field] {
        [Field("duration", .quantity(Int64(self.durationMs), unit: "ms")), Field("count", .unsigned(UInt64(self.count)))]
    }
}

public struct BeepDone: NativeMessage {
    public static let command = Command.beep
    public static let isResponse = true
    public init() {}
    public init(reading r: inout ByteReader) throws(PayloadError) {}
    public func write(to w: inout ByteWriter) {}
    public var fields: [Field] { [] }
}
