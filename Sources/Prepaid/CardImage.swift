import MeterProtocol

/// A 256-byte memory card image (docs/CARD.md §4), field by field. Parsing never fails on the write-back area's
/// contents; it fails only when the image is not a metergw card of a known layout.
public struct CardImage: Hashable, Sendable {
    public static let size = 256
    public static let magic: [UInt8] = [0x4D, 0x47]  // "MG"
    public static let layoutVersion: UInt8 = 1
    /// The meter serial a check or setup card carries to mean "any meter".
    public static let anyMeter: UInt32 = 0xFFFF_FFFF
    public static let macLength = 16

    // Offsets (docs/CARD.md §4.1).
    public static let issuerMACOffset = 144
    public static let writeBackOffset = 160
    public static let meterMACOffset = 240

    public var type: CardType
    public var cardSerial: UInt32
    public var issuerID: UInt32
    /// 1 for an account's first user card, +1 for each replacement; 0 on check and setup cards.
    public var generation: UInt16
    /// The revision of the key that made the issuer MAC.
    public var keyRevision: UInt8
    /// The unit of the credit block; nil on check and setup cards.
    public var unitKind: UnitKind?
    public var issueTime: UInt32
    /// The meter the card is for, or `anyMeter`.
    public var meterSerial: UInt32
    public var accountNumber: UInt64
    public var credit: CreditBlock
    public var setup: SetupBlock
    public var issuerMAC: [UInt8]
    public var writeBack: WriteBack?
    /// Why a non-blank write-back area could not be read (it is then `nil`); the issuer area is unaffected.
    public var writeBackError: CardFormatError?
    public var meterMAC: [UInt8]

    public enum CardType: UInt8, CaseIterable, Hashable, Sendable {
        case user = 1
        case check = 2
        case setup = 3

        public var name: String {
            switch self {
            case .user: "user"
            case .check: "check"
            case .setup: "setup"
            }
        }
    }

    /// Purchases `first...last` of the meter's sequence space and their summed units; all zero for none.
    public struct CreditBlock: Hashable, Sendable {
        public var firstSequence: UInt32
        public var lastSequence: UInt32
        public var units: UInt32

        public init(firstSequence: UInt32, lastSequence: UInt32, units: UInt32) {
            self.firstSequence = firstSequence
            self.lastSequence = lastSequence
            self.units = units
        }

        public static let none = CreditBlock(firstSequence: 0, lastSequence: 0, units: 0)
        public var isEmpty: Bool { self.firstSequence == 0 && self.lastSequence == 0 && self.units == 0 }
        /// How many purchases the block covers.
        public var purchaseCount: UInt32 {
            self.lastSequence >= self.firstSequence ? self.lastSequence - self.firstSequence + 1 : 0
        }
    }

    /// What a setup card changes. Zero on other cards.
    public struct SetupBlock: Hashable, Sendable {
        public var thresholds: Thresholds?
        /// Units the meter may lend when credit runs out (0 disables it).
        public var emergencyCreditUnits: UInt32?
        public var cutoffBehaviour: CutoffBehaviour?
        /// A card serial the meter must refuse from now on.
        public var revokeCardSerial: UInt32?
        public var keyChange: KeyChange?

        public init(
            thresholds: Thresholds? = nil, emergencyCreditUnits: UInt32? = nil,
            cutoffBehaviour: CutoffBehaviour? = nil, revokeCardSerial: UInt32? = nil, keyChange: KeyChange? = nil
        ) {
            self.thresholds = thresholds
            self.emergencyCreditUnits = emergencyCreditUnits
            self.cutoffBehaviour = cutoffBehaviour
            self.revokeCardSerial = revokeCardSerial
            self.keyChange = keyChange
        }

        public static let none = SetupBlock()
        public var isEmpty: Bool { self == .none }

        var flags: UInt8 {
            (self.thresholds != nil ? 0x01 : 0) | (self.emergencyCreditUnits != nil ? 0x02 : 0)
                | (self.cutoffBehaviour != nil ? 0x04 : 0) | (self.revokeCardSerial != nil ? 0x08 : 0)
                | (self.keyChange != nil ? 0x10 : 0)
        }
    }

    /// The next revision's keys, wrapped under the meter's current key-change key, with a check value.
    public struct KeyChange: Hashable, Sendable {
        public var newRevision: UInt8
        public var wrappedRootKey: [UInt8]
        public var wrappedToolKey: [UInt8]
        public var check: [UInt8]
    }

    /// What the meter at the low-credit cutoff threshold does (setup card, docs/CARD.md §5.2).
    public enum CutoffBehaviour: UInt8, CaseIterable, Hashable, Sendable, Codable {
        /// Open the relay (close the valve) until a user card is inserted.
        case openUntilCardInserted = 0
        /// Only raise the cutoff alarm; supply stays on until credit is exhausted.
        case alarmOnly = 1

        public var name: String { self == .openUntilCardInserted ? "open-until-card-inserted" : "alarm-only" }
    }

    /// The area the meter fills on every insertion of a genuine card meant for it (docs/CARD.md §4.3).
    public struct WriteBack: Hashable, Sendable {
        public var outcome: InsertionOutcomeCode
        /// `MeterRefusal.code` of why the insertion was refused; 0 unless `outcome` is `.refused`.
        public var refusalCode: UInt8
        public var refusalDetail: UInt32
        public var meterSerial: UInt32
        public var meterKind: UInt8
        public var meterKeyRevision: UInt8
        public var alarms: Alarms
        public var relay: UInt8
        public var relayReason: UInt8
        public var cardGenerationInForce: UInt16
        public var lastAppliedSequence: UInt32
        public var unitsApplied: UInt32
        public var registerUnits: UInt64
        public var creditUnits: Int64
        public var meterTime: UInt32
        public var eventsRecorded: UInt32
        public var cardInsertions: UInt32
        public var cardRefusals: UInt32
        public var alarmThresholdUnits: UInt32
        public var cutoffThresholdUnits: UInt32
        public var emergencyCreditUnits: UInt32

        public var refusal: MeterRefusal? { MeterRefusal(code: self.refusalCode, detail: self.refusalDetail) }
    }

    public enum InsertionOutcomeCode: UInt8, CaseIterable, Hashable, Sendable {
        case creditApplied = 0
        case alreadyApplied = 1
        case noCredit = 2
        case setupApplied = 3
        case checkRecorded = 4
        case refused = 5

        public var name: String {
            switch self {
            case .creditApplied: "credit-applied"
            case .alreadyApplied: "already-applied"
            case .noCredit: "no-credit"
            case .setupApplied: "setup-applied"
            case .checkRecorded: "check-recorded"
            case .refused: "refused"
            }
        }
    }

    public init(
        type: CardType, cardSerial: UInt32, issuerID: UInt32, generation: UInt16, keyRevision: UInt8,
        unitKind: UnitKind?, issueTime: UInt32, meterSerial: UInt32, accountNumber: UInt64,
        credit: CreditBlock = .none, setup: SetupBlock = .none
    ) {
        self.type = type
        self.cardSerial = cardSerial
        self.issuerID = issuerID
        self.generation = generation
        self.keyRevision = keyRevision
        self.unitKind = unitKind
        self.issueTime = issueTime
        self.meterSerial = meterSerial
        self.accountNumber = accountNumber
        self.credit = credit
        self.setup = setup
        self.issuerMAC = [UInt8](repeating: 0, count: Self.macLength)
        self.writeBack = nil
        self.writeBackError = nil
        self.meterMAC = [UInt8](repeating: 0, count: Self.macLength)
    }

    // MARK: Encoding

    /// The 256 bytes of the card.
    public var bytes: [UInt8] {
        var w = ByteWriter()
        w.bytes(Self.magic)
        w.u8(Self.layoutVersion)
        w.u8(self.type.rawValue)
        w.u32(self.cardSerial)
        w.u32(self.issuerID)
        w.u16(self.generation)
        w.u8(self.keyRevision)
        w.u8(self.unitKind?.rawValue ?? 0)
        w.u32(self.issueTime)
        w.u32(self.meterSerial)
        w.u64(self.accountNumber)
        w.u32(self.credit.firstSequence)
        w.u32(self.credit.lastSequence)
        w.u32(self.credit.units)
        w.u32(0)
        // Setup block, offset 48.
        let s = self.setup
        w.u8(s.flags)
        w.u8(s.cutoffBehaviour?.rawValue ?? 0)
        w.u16(0)
        w.u32(s.thresholds?.alarmUnits ?? 0)
        w.u32(s.thresholds?.cutoffUnits ?? 0)
        w.u32(s.emergencyCreditUnits ?? 0)
        w.u32(s.revokeCardSerial ?? 0)
        w.u8(s.keyChange?.newRevision ?? 0)
        w.bytes([0, 0, 0])
        w.bytes(Self.fixed(s.keyChange?.wrappedRootKey, 32))
        w.bytes(Self.fixed(s.keyChange?.wrappedToolKey, 32))
        w.bytes(Self.fixed(s.keyChange?.check, 8))
        precondition(w.bytes.count == Self.issuerMACOffset)
        w.bytes(Self.fixed(self.issuerMAC, Self.macLength))
        // Write-back area, offset 160.
        if let b = self.writeBack {
            w.u8(1)
            w.u8(b.outcome.rawValue)
            w.u8(b.refusalCode)
            w.u8(b.refusal?.nak.code ?? 0)
            w.u32(b.meterSerial)
            w.u8(b.meterKind)
            w.u8(b.meterKeyRevision)
            w.u16(b.alarms.rawValue)
            w.u8(b.relay)
            w.u8(b.relayReason)
            w.u16(b.cardGenerationInForce)
            w.u32(b.lastAppliedSequence)
            w.u32(b.unitsApplied)
            w.u64(b.registerUnits)
            w.i64(b.creditUnits)
            w.u32(b.meterTime)
            w.u32(b.eventsRecorded)
            w.u32(b.cardInsertions)
            w.u32(b.cardRefusals)
            w.u32(b.alarmThresholdUnits)
            w.u32(b.cutoffThresholdUnits)
            w.u32(b.emergencyCreditUnits)
            w.u32(b.refusalDetail)
            w.bytes([UInt8](repeating: 0, count: 8))
        } else {
            w.bytes([UInt8](repeating: 0, count: Self.meterMACOffset - Self.writeBackOffset))
        }
        precondition(w.bytes.count == Self.meterMACOffset)
        w.bytes(Self.fixed(self.meterMAC, Self.macLength))
        return w.bytes
    }

    private static func fixed(_ bytes: [UInt8]?, _ count: Int) -> [UInt8] {
        let b = bytes ?? []
        return b.count == count ? b : Array((b + [UInt8](repeating: 0, count: count)).prefix(count))
    }

    // MARK: Decoding

    /// Reads a card image. Throws only when the bytes are not a metergw card this reader understands.
    public init(bytes: [UInt8]) throws(CardFormatError) {
        guard bytes.count == Self.size else { throw .wrongSize(bytes.count) }
        guard Array(bytes[0..<2]) == Self.magic else { throw .notAMetergwCard }
        guard bytes[2] == Self.layoutVersion else { throw .unsupportedLayout(bytes[2]) }
        guard let type = CardType(rawValue: bytes[3]) else { throw .unknownCardType(bytes[3]) }
        do {
            var r = ByteReader(bytes)
            _ = try r.bytes(4, "header")
            self.type = type
            self.cardSerial = try r.u32("cardSerial")
            self.issuerID = try r.u32("issuerID")
            self.generation = try r.u16("generation")
            self.keyRevision = try r.u8("keyRevision")
            let unit = try r.u8("unitKind")
            guard unit == 0 || UnitKind(rawValue: unit) != nil else {
                throw CardFormatError.invalidField("unitKind", UInt64(unit))
            }
            self.unitKind = UnitKind(rawValue: unit)
            self.issueTime = try r.u32("issueTime")
            self.meterSerial = try r.u32("meterSerial")
            self.accountNumber = try r.u64("accountNumber")
            self.credit = CreditBlock(firstSequence: try r.u32("first"), lastSequence: try r.u32("last"),
                                      units: try r.u32("units"))
            _ = try r.u32("reserved")
            let flags = try r.u8("setupFlags")
            guard flags & 0xE0 == 0 else { throw CardFormatError.invalidField("setupFlags", UInt64(flags)) }
            let behaviourRaw = try r.u8("cutoffBehaviour")
            _ = try r.u16("reserved")
            let alarm = try r.u32("alarmThreshold")
            let cutoff = try r.u32("cutoffThreshold")
            let emergency = try r.u32("emergencyCredit")
            let revoke = try r.u32("revokeCardSerial")
            let newRevision = try r.u8("newKeyRevision")
            _ = try r.bytes(3, "reserved")
            let wrappedRoot = try r.bytes(32, "wrappedRootKey")
            let wrappedTool = try r.bytes(32, "wrappedToolKey")
            let check = try r.bytes(8, "keyChangeCheck")
            var setup = SetupBlock()
            if flags & 0x01 != 0 { setup.thresholds = Thresholds(alarmUnits: alarm, cutoffUnits: cutoff) }
            if flags & 0x02 != 0 { setup.emergencyCreditUnits = emergency }
            if flags & 0x04 != 0 {
                guard let behaviour = CutoffBehaviour(rawValue: behaviourRaw) else {
                    throw CardFormatError.invalidField("cutoffBehaviour", UInt64(behaviourRaw))
                }
                setup.cutoffBehaviour = behaviour
            }
            if flags & 0x08 != 0 { setup.revokeCardSerial = revoke }
            if flags & 0x10 != 0 {
                setup.keyChange = KeyChange(newRevision: newRevision, wrappedRootKey: wrappedRoot,
                                            wrappedToolKey: wrappedTool, check: check)
            }
            self.setup = setup
            self.issuerMAC = try r.bytes(Self.macLength, "issuerMAC")
            self.writeBackError = nil
            let state = try r.u8("writeBackState")
            let outcomeRaw = try r.u8("outcome")
            let outcome = InsertionOutcomeCode(rawValue: outcomeRaw)
            if state == 0 || state != 1 || outcome == nil {
                // Blank, or not a write-back this reader understands: the issuer area stands on its own.
                self.writeBack = nil
                if state != 0 {
                    self.writeBackError = .invalidField("writeBack", UInt64(state) << 8 | UInt64(outcomeRaw))
                }
                _ = try r.bytes(Self.meterMACOffset - Self.writeBackOffset - 2, "writeBack")
            } else if let outcome {
                let refusal = try r.u8("refusal")
                _ = try r.u8("refusalNak")
                self.writeBack = WriteBack(
                    outcome: outcome, refusalCode: refusal, refusalDetail: 0,
                    meterSerial: try r.u32("meterSerial"), meterKind: try r.u8("meterKind"),
                    meterKeyRevision: try r.u8("meterKeyRevision"), alarms: Alarms(rawValue: try r.u16("alarms")),
                    relay: try r.u8("relay"), relayReason: try r.u8("relayReason"),
                    cardGenerationInForce: try r.u16("generationInForce"),
                    lastAppliedSequence: try r.u32("lastApplied"), unitsApplied: try r.u32("unitsApplied"),
                    registerUnits: try r.u64("register"), creditUnits: try r.i64("credit"),
                    meterTime: try r.u32("meterTime"), eventsRecorded: try r.u32("events"),
                    cardInsertions: try r.u32("insertions"), cardRefusals: try r.u32("refusals"),
                    alarmThresholdUnits: try r.u32("alarmThreshold"), cutoffThresholdUnits: try r.u32("cutoff"),
                    emergencyCreditUnits: try r.u32("emergency"))
                self.writeBack?.refusalDetail = try r.u32("refusalDetail")
                _ = try r.bytes(8, "reserved")
            }
            self.meterMAC = try r.bytes(Self.macLength, "meterMAC")
        } catch let error as CardFormatError {
            throw error
        } catch {
            throw .invalidField("image", 0)  // unreachable: the size was checked
        }
    }

}

/// Why bytes are not a card image this reader understands (docs/CARD.md §4).
public enum CardFormatError: Error, Hashable, Sendable {
    case wrongSize(Int)
    case notAMetergwCard
    case unsupportedLayout(UInt8)
    case unknownCardType(UInt8)
    case invalidField(String, UInt64)

    public var explanation: String {
        switch self {
        case .wrongSize(let n): "a card image is 256 bytes, this is \(n)"
        case .notAMetergwCard: "not a metergw card (no \"MG\" magic at offset 0)"
        case .unsupportedLayout(let v): "card layout version \(v) is not supported (this reader knows 1)"
        case .unknownCardType(let t): "unknown card type \(t)"
        case .invalidField(let name, let value): "\(name) has undefined value \(value)"
        }
    }
}
