import MeterProtocol

/// A card writer with one slot (docs/PROTOCOL.md §4.3). Cards go in and out through the control socket.
public final class EmulatedCardWriter: EmulatedDevice {
    public let busAddress: UInt8
    public let serial: UInt32
    public let kind = DeviceKind.cardWriter

    public struct State: Codable, Sendable, Equatable {
        /// The card in the slot, nil when empty.
        public var card: [UInt8]?
        /// Incremented on every insertion (PROTOCOL.md §4.3).
        public var insertion: UInt32 = 0
        public var cardsWritten: UInt32 = 0
        public var lastError: UInt8 = 0
        public var beeps: UInt32 = 0

        public init() {}
    }

    public private(set) var state: State

    public init(busAddress: UInt8, serial: UInt32, state: State = State()) {
        self.busAddress = busAddress
        self.serial = serial
        self.state = state
    }

    /// Puts a card in the slot (replacing any card there, as a person swapping cards does).
    public func insert(_ image: [UInt8]) {
        self.state.card = image
        self.state.insertion &+= 1
    }

    /// Takes the card out; returns it.
    @discardableResult
    public func remove() -> [UInt8]? {
        defer { self.state.card = nil }
        return self.state.card
    }

    var media: CardMedia {
        switch self.state.card?.count {
        case nil: .none
        case 256: .memory256
        case 1024: .memory1024
        default: .unknown
        }
    }

    public var summary: JSONValue {
        .object([
            ("kind", .string(self.kind.name)), ("address", .uint(UInt64(self.busAddress))),
            ("serial", .uint(UInt64(self.serial))), ("cardPresent", .bool(self.state.card != nil)),
            ("insertion", .uint(UInt64(self.state.insertion))),
        ])
    }

    public func handle(_ request: Frame, now: UInt32) -> Frame? {
        guard !request.isBroadcast else { return nil }
        if let refusal = self.refusal(for: request) { return refusal }
        guard case .message(let message) = request.decodeMessage() else { return nil }
        let result = self.answer(message, to: request)
        if let result, result.isNak, let code = result.payload.first { self.state.lastError = code }
        return result
    }

    private func answer(_ message: any NativeMessage, to request: Frame) -> Frame? {
        switch message {
        case is IdentifyRequest:
            return self.reply(IdentifyResponse(kind: .cardWriter, firmware: (1, 2, 0), hardwareRevision: 1,
                                               keyRevision: 0, capabilities: [.cardWriter], model: "MGW-CW1 emulated"),
                              to: request)
        case is WriterStatusRequest:
            return self.reply(WriterStatus(state: .ready, lastError: self.state.lastError,
                                           cardsWritten: self.state.cardsWritten, cardPresent: self.state.card != nil),
                              to: request)
        case is CardPresenceRequest:
            return self.reply(CardPresence(media: self.media, capacity: UInt16(self.state.card?.count ?? 0),
                                           insertion: self.state.insertion), to: request)
        case let read as ReadCardRequest:
            guard let card = self.state.card else { return self.nak(.noCard, to: request) }
            let start = Int(read.offset)
            let end = start + Int(read.length)
            guard end <= card.count else { return self.nak(.valueOutOfRange, to: request) }
            return self.reply(CardData(insertion: self.state.insertion, offset: read.offset,
                                       data: Array(card[start..<end])), to: request)
        case let write as WriteCardRequest:
            guard var card = self.state.card else { return self.nak(.noCard, to: request) }
            if write.insertion != WriteCardRequest.anyInsertion && write.insertion != self.state.insertion {
                return self.nak(.cardChanged, detail: self.state.insertion, to: request)
            }
            let start = Int(write.offset)
            guard start + write.data.count <= card.count else { return self.nak(.valueOutOfRange, to: request) }
            card.replaceSubrange(start..<(start + write.data.count), with: write.data)
            self.state.card = card
            self.state.cardsWritten &+= 1
            return self.reply(CardWritten(insertion: self.state.insertion, offset: write.offset,
                                          length: UInt16(write.data.count)), to: request)
        case let erase as EraseCardRequest:
            guard let card = self.state.card else { return self.nak(.noCard, to: request) }
            if erase.insertion != WriteCardRequest.anyInsertion && erase.insertion != self.state.insertion {
                return self.nak(.cardChanged, detail: self.state.insertion, to: request)
            }
            self.state.card = [UInt8](repeating: 0xFF, count: card.count)
            return self.reply(CardErased(insertion: self.state.insertion), to: request)
        case is BeepRequest:
            self.state.beeps &+= 1
            return self.reply(BeepDone(), to: request)
        default:
            // A meter command sent to a card writer.
            return self.nak(.unknownCommand, to: request)
        }
    }
}
