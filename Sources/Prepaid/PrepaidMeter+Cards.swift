import Crypto
import MeterProtocol

/// What happened when a card was inserted, and what the meter writes back (docs/CARD.md §6.2).
public struct CardInsertionOutcome: Sendable {
    public var result: CardInsertionResult
    /// The card image with the write-back area filled and MAC'd, to be written to the card; nil when the meter
    /// leaves the card untouched (not a genuine card for this meter).
    public var writtenImage: [UInt8]?
    /// After a key change, the keys the meter holds from now on (a real meter stores them in secure memory).
    public var newKeys: MeterKeyring?
}

public enum CardInsertionResult: Hashable, Sendable {
    /// Purchases `sequences` added `units` of credit.
    case creditApplied(units: UInt32, sequences: ClosedRange<UInt32>)
    /// The block's purchases are all on the meter already; nothing added, consumption still written back.
    case alreadyApplied(lastApplied: UInt32)
    /// A user card without credit: consumption written back.
    case noCredit
    /// A setup card was applied; `newKeyRevision` when it changed the keys.
    case setupApplied(newKeyRevision: UInt8?)
    case checkRecorded
    case refused(MeterRefusal)

    var outcomeCode: CardImage.InsertionOutcomeCode {
        switch self {
        case .creditApplied: .creditApplied
        case .alreadyApplied: .alreadyApplied
        case .noCredit: .noCredit
        case .setupApplied: .setupApplied
        case .checkRecorded: .checkRecorded
        case .refused: .refused
        }
    }
}

extension PrepaidMeter {
    /// A card inserted at `now`. `keys` must be the meter's own keys for its current revision.
    public mutating func insertCard(_ image: [UInt8], keys: MeterKeyring, now: UInt32) -> CardInsertionOutcome {
        guard keys.serial == self.serial, keys.revision == self.keyRevision, keys.issuerID == self.issuerID else {
            return CardInsertionOutcome(result: .refused(.keysUnavailable), writtenImage: nil, newKeys: nil)
        }
        // Not genuine or not for this meter: refuse and leave the card as it is.
        let card: CardImage
        switch self.authenticate(image, keys: keys) {
        case .failure(let refusal):
            self.noteRefusal(refusal, now: now)
            return CardInsertionOutcome(result: .refused(refusal), writtenImage: nil, newKeys: nil)
        case .success(let c): card = c
        }
        self.cardInsertions &+= 1
        self.log(.cardInserted, Int64(card.cardSerial), now: now)

        var result: CardInsertionResult
        var unitsApplied: UInt32 = 0
        var newKeys: MeterKeyring?
        switch card.type {
        case .user:
            result = self.insertUserCard(card, now: now)
            if case .creditApplied(let units, _) = result { unitsApplied = units }
        case .check:
            result = .checkRecorded
        case .setup:
            switch self.applySetup(card.setup, cardMeter: card.meterSerial, keys: keys, now: now) {
            case .success(let k):
                newKeys = k
                result = .setupApplied(newKeyRevision: k?.revision)
            case .failure(let refusal): result = .refused(refusal)
            }
        }
        if case .refused(let refusal) = result { self.noteRefusal(refusal, now: now) }
        let written = self.writeBack(onto: image, result: result, unitsApplied: unitsApplied,
                                     key: (newKeys ?? keys).writeBack, now: now)
        return CardInsertionOutcome(result: result, writtenImage: written, newKeys: newKeys)
    }

    /// Checks, in order: layout, issuer, binding, key revision, MAC (docs/CARD.md §6.2 steps 1-5).
    func authenticate(_ image: [UInt8], keys: MeterKeyring) -> Result<CardImage, MeterRefusal> {
        let card: CardImage
        do {
            card = try CardImage(bytes: image)
        } catch {
            switch error {
            case .notAMetergwCard: return .failure(.notAMetergwCard)
            case .unsupportedLayout(let v): return .failure(.unsupportedLayout(v))
            case .wrongSize, .unknownCardType, .invalidField: return .failure(.malformed)
            }
        }
        guard card.issuerID == self.issuerID else { return .failure(.wrongIssuer(cardIssuer: card.issuerID)) }
        let forAnyMeter = card.type != .user && card.meterSerial == CardImage.anyMeter
        guard card.meterSerial == self.serial || forAnyMeter else {
            return .failure(.wrongMeter(cardMeter: card.meterSerial))
        }
        guard card.keyRevision == self.keyRevision else {
            return .failure(.keyRevisionMismatch(current: self.keyRevision))
        }
        let key = card.type == .user ? keys.cardIssuer : keys.tool.key
        guard CardIssuer.verify(image, range: 0..<CardImage.issuerMACOffset, key: key) else {
            return .failure(.authenticationFailed)
        }
        return .success(card)
    }

    mutating func noteRefusal(_ refusal: MeterRefusal, now: UInt32) {
        self.cardRefusals &+= 1
        self.log(.cardRefused, Int64(refusal.nak.code), now: now)
    }

    /// Generation and revocation, then the sequence rule (docs/CARD.md §6.2 steps 6-8).
    mutating func insertUserCard(_ card: CardImage, now: UInt32) -> CardInsertionResult {
        guard card.unitKind == self.unitKind else { return .refused(.wrongUnitKind) }
        if self.revokedCardSerials.contains(card.cardSerial) {
            return .refused(.cardRevoked(cardSerial: card.cardSerial))
        }
        if card.generation < self.cardGeneration {
            return .refused(.cardReplaced(generationInForce: self.cardGeneration))
        }
        if card.generation == self.cardGeneration, let current = self.currentCardSerial, current != card.cardSerial {
            return .refused(.cardRevoked(cardSerial: card.cardSerial))
        }
        if card.generation > self.cardGeneration || self.currentCardSerial == nil {
            // A newer generation (or the first card after the current one was revoked) becomes the account's card.
            if let old = self.currentCardSerial, old != card.cardSerial { self.revoke(old) }
            self.cardGeneration = card.generation
            self.currentCardSerial = card.cardSerial
        }
        // The customer's own card acknowledges a low-credit cutoff, whatever its credit.
        if self.creditUnits <= Int64(self.cutoffThresholdUnits) && !self.exhausted {
            self.cutoffAcknowledged = true
        }
        defer { self.updateSupply(now: now) }
        let block = card.credit
        if block.isEmpty { return .noCredit }
        switch self.decide(first: block.firstSequence, last: block.lastSequence) {
        case .failure(let refusal): return .refused(refusal)
        case .success(.alreadyApplied): return .alreadyApplied(lastApplied: self.lastAppliedSequence)
        case .success(.apply):
            if let refusal = self.addCredit(block.units, last: block.lastSequence, now: now) {
                return .refused(refusal)
            }
            return .creditApplied(units: block.units, sequences: block.firstSequence...block.lastSequence)
        }
    }

    mutating func revoke(_ cardSerial: UInt32) {
        guard !self.revokedCardSerials.contains(cardSerial) else { return }
        self.revokedCardSerials.append(cardSerial)
        if self.revokedCardSerials.count > Self.revokedCardCapacity { self.revokedCardSerials.removeFirst() }
    }

    /// Validates every field first, then applies them all (docs/CARD.md §5.3).
    mutating func applySetup(
        _ setup: CardImage.SetupBlock, cardMeter: UInt32, keys: MeterKeyring, now: UInt32
    ) -> Result<MeterKeyring?, MeterRefusal> {
        if let t = setup.thresholds, t.alarmUnits < t.cutoffUnits { return .failure(.invalidSetup) }
        var newKeys: MeterKeyring?
        if let change = setup.keyChange {
            guard cardMeter == self.serial else { return .failure(.invalidSetup) }
            guard change.newRevision > self.keyRevision else { return .failure(.keyChangeRefused) }
            let root = KeyWrap.xor(change.wrappedRootKey, KeyWrap.stream(keys.keyChange, change.newRevision, 1))
            let tool = KeyWrap.xor(change.wrappedToolKey, KeyWrap.stream(keys.keyChange, change.newRevision, 2))
            let check = KeyWrap.check(keys.keyChange, change.newRevision, root, tool)
            guard KeyDerivation.constantTimeEqual(check, change.check),
                  let newRoot = MeterRootKey(revision: change.newRevision, serial: self.serial, bytes: root),
                  let newTool = ToolKey(revision: change.newRevision, issuerID: self.issuerID, bytes: tool)
            else { return .failure(.keyChangeRefused) }
            newKeys = MeterKeyring(serial: self.serial, issuerID: self.issuerID, root: newRoot, tool: newTool)
        }
        if let t = setup.thresholds {
            self.alarmThresholdUnits = t.alarmUnits
            self.cutoffThresholdUnits = t.cutoffUnits
            self.log(.thresholdsChanged, Int64(t.alarmUnits), now: now)
        }
        if let e = setup.emergencyCreditUnits { self.emergencyCreditUnits = e }
        if let b = setup.cutoffBehaviour { self.cutoffBehaviour = b }
        if let serial = setup.revokeCardSerial {
            self.revoke(serial)
            if self.currentCardSerial == serial { self.currentCardSerial = nil }
        }
        if let k = newKeys {
            self.keyRevision = k.revision
            self.log(.keyChanged, Int64(k.revision), now: now)
        }
        self.updateSupply(now: now)
        return .success(newKeys)
    }

    /// The image with bytes 160...255 replaced by this meter's write-back and MAC (docs/CARD.md §4.3).
    func writeBack(onto image: [UInt8], result: CardInsertionResult, unitsApplied: UInt32, key: SymmetricKey,
                   now: UInt32) -> [UInt8] {
        var refusalCode: UInt8 = 0
        var refusalDetail: UInt32 = 0
        if case .refused(let r) = result {
            refusalCode = r.code
            refusalDetail = r.detail
        }
        let back = CardImage.WriteBack(
            outcome: result.outcomeCode, refusalCode: refusalCode, refusalDetail: refusalDetail,
            meterSerial: self.serial, meterKind: self.kind.rawValue, meterKeyRevision: self.keyRevision,
            alarms: self.alarms, relay: self.relay.rawValue, relayReason: self.relayReason.rawValue,
            cardGenerationInForce: self.cardGeneration, lastAppliedSequence: self.lastAppliedSequence,
            unitsApplied: unitsApplied, registerUnits: self.registerUnits, creditUnits: self.creditUnits,
            meterTime: self.meterTime(now: now), eventsRecorded: self.nextEventIndex,
            cardInsertions: self.cardInsertions, cardRefusals: self.cardRefusals,
            alarmThresholdUnits: self.alarmThresholdUnits, cutoffThresholdUnits: self.cutoffThresholdUnits,
            emergencyCreditUnits: self.emergencyCreditUnits)
        return CardImage.replacingWriteBack(of: image, with: back, key: key)
    }
}

extension CardImage {
    /// `image` (its issuer area byte for byte) with a new write-back area and meter MAC under `key`.
    static func replacingWriteBack(of image: [UInt8], with back: WriteBack, key: SymmetricKey) -> [UInt8] {
        // Encode the write-back through a scratch card so the layout lives in one place (`bytes`).
        var scratch = CardImage(type: .check, cardSerial: 0, issuerID: 0, generation: 0, keyRevision: 0,
                                unitKind: nil, issueTime: 0, meterSerial: 0, accountNumber: 0)
        scratch.writeBack = back
        var out = Array(image[0..<Self.writeBackOffset])
        out += scratch.bytes[Self.writeBackOffset..<Self.meterMACOffset]
        out += KeyDerivation.mac(key, out, length: Self.macLength)
        return out
    }
}
