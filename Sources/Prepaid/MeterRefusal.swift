import MeterProtocol

/// Why a meter refused a card or a remote command (docs/CARD.md §6). A closed set; each maps to a NAK (PROTOCOL.md
/// §6) and has a one-byte code that the meter writes on the card.
public enum MeterRefusal: Hashable, Sendable, Error {
    /// The card image or command could not be read.
    case malformed
    /// The card is not a metergw card (no "MG" magic).
    case notAMetergwCard
    /// The card's layout version is newer than this meter knows.
    case unsupportedLayout(UInt8)
    /// The card was issued by another issuer.
    case wrongIssuer(cardIssuer: UInt32)
    /// The card is bound to another meter.
    case wrongMeter(cardMeter: UInt32)
    /// The card or command was made with another key revision than the meter's.
    case keyRevisionMismatch(current: UInt8)
    /// The MAC does not verify: forged or corrupted.
    case authenticationFailed
    /// A newer card of the account has been inserted: this one was replaced.
    case cardReplaced(generationInForce: UInt16)
    /// The card's serial was revoked.
    case cardRevoked(cardSerial: UInt32)
    /// An earlier purchase has not reached the meter: `first > lastApplied + 1`. Send the customer to the desk.
    case sequenceGap(lastApplied: UInt32)
    /// The block starts at or below `lastApplied` but ends above it: part was applied already. To the desk.
    case overlapsApplied(lastApplied: UInt32)
    /// The credit block is in another unit than the meter counts.
    case wrongUnitKind
    /// The credit block is not a valid range (`first == 0` or `last < first`).
    case invalidCreditBlock
    /// The credit would exceed what the meter can hold.
    case creditLimit
    /// A setup value is invalid (alarm below cutoff, key change to any meter).
    case invalidSetup
    /// A key change to a revision not above the current one, or whose check value does not verify.
    case keyChangeRefused
    /// A remote command whose counter is not above the last accepted one.
    case replayedCommand(lastCounter: UInt32)
    /// Not allowed in the meter's state (closing the relay while credit is exhausted).
    case notPermitted
    /// A command value outside what the protocol allows.
    case valueOutOfRange
    /// The keys given to the meter model are not the meter's (a caller error, never a customer's).
    case keysUnavailable

    /// The byte written on the card (write-back offset 162) and logged with a refusal event.
    public var code: UInt8 {
        switch self {
        case .malformed: 0x01
        case .notAMetergwCard: 0x02
        case .unsupportedLayout: 0x03
        case .wrongIssuer: 0x04
        case .wrongMeter: 0x05
        case .keyRevisionMismatch: 0x06
        case .authenticationFailed: 0x07
        case .cardReplaced: 0x08
        case .cardRevoked: 0x09
        case .sequenceGap: 0x0A
        case .overlapsApplied: 0x0B
        case .wrongUnitKind: 0x0C
        case .invalidCreditBlock: 0x0D
        case .creditLimit: 0x0E
        case .invalidSetup: 0x0F
        case .keyChangeRefused: 0x10
        case .replayedCommand: 0x11
        case .notPermitted: 0x12
        case .valueOutOfRange: 0x13
        case .keysUnavailable: 0x14
        }
    }

    /// The detail word (write-back offset 228, NAK detail where the NAK code defines one).
    public var detail: UInt32 {
        switch self {
        case .unsupportedLayout(let v): UInt32(v)
        case .wrongIssuer(let i): i
        case .wrongMeter(let s): s
        case .keyRevisionMismatch(let r): UInt32(r)
        case .cardReplaced(let g): UInt32(g)
        case .cardRevoked(let s): s
        case .sequenceGap(let l), .overlapsApplied(let l): l
        case .replayedCommand(let c): c
        default: 0
        }
    }

    /// The refusal from its card code and detail; nil for code 0 or an unknown code.
    public init?(code: UInt8, detail: UInt32) {
        switch code {
        case 0x01: self = .malformed
        case 0x02: self = .notAMetergwCard
        case 0x03: self = .unsupportedLayout(UInt8(truncatingIfNeeded: detail))
        case 0x04: self = .wrongIssuer(cardIssuer: detail)
        case 0x05: self = .wrongMeter(cardMeter: detail)
        case 0x06: self = .keyRevisionMismatch(current: UInt8(truncatingIfNeeded: detail))
        case 0x07: self = .authenticationFailed
        case 0x08: self = .cardReplaced(generationInForce: UInt16(truncatingIfNeeded: detail))
        case 0x09: self = .cardRevoked(cardSerial: detail)
        case 0x0A: self = .sequenceGap(lastApplied: detail)
        case 0x0B: self = .overlapsApplied(lastApplied: detail)
        case 0x0C: self = .wrongUnitKind
        case 0x0D: self = .invalidCreditBlock
        case 0x0E: self = .creditLimit
        case 0x0F: self = .invalidSetup
        case 0x10: self = .keyChangeRefused
        case 0x11: self = .replayedCommand(lastCounter: detail)
        case 0x12: self = .notPermitted
        case 0x13: self = .valueOutOfRange
        case 0x14: self = .keysUnavailable
        default: return nil
        }
    }

    /// The NAK a meter answers a remote command with for this refusal (PROTOCOL.md §6).
    public var nak: Nak {
        switch self {
        case .malformed, .notAMetergwCard, .invalidCreditBlock: Nak(.malformedPayload)
        case .unsupportedLayout(let v): Nak(.unsupportedVersion, detail: UInt32(v))
        case .wrongIssuer, .wrongMeter, .cardReplaced, .cardRevoked, .wrongUnitKind, .notPermitted:
            Nak(.notPermitted)
        case .keyRevisionMismatch(let r): Nak(.keyRevisionMismatch, detail: UInt32(r))
        case .authenticationFailed, .keyChangeRefused: Nak(.authenticationFailed)
        case .sequenceGap(let l), .overlapsApplied(let l): Nak(.sequenceGap, detail: l)
        case .creditLimit, .invalidSetup, .valueOutOfRange: Nak(.valueOutOfRange)
        case .replayedCommand(let c): Nak(.replayedCommand, detail: c)
        case .keysUnavailable: Nak(.internalError)
        }
    }

    public var name: String {
        switch self {
        case .malformed: "malformed"
        case .notAMetergwCard: "not-a-metergw-card"
        case .unsupportedLayout: "unsupported-layout"
        case .wrongIssuer: "wrong-issuer"
        case .wrongMeter: "wrong-meter"
        case .keyRevisionMismatch: "key-revision-mismatch"
        case .authenticationFailed: "authentication-failed"
        case .cardReplaced: "card-replaced"
        case .cardRevoked: "card-revoked"
        case .sequenceGap: "sequence-gap"
        case .overlapsApplied: "overlaps-applied"
        case .wrongUnitKind: "wrong-unit-kind"
        case .invalidCreditBlock: "invalid-credit-block"
        case .creditLimit: "credit-limit"
        case .invalidSetup: "invalid-setup"
        case .keyChangeRefused: "key-change-refused"
        case .replayedCommand: "replayed-command"
        case .notPermitted: "not-permitted"
        case .valueOutOfRange: "value-out-of-range"
        case .keysUnavailable: "keys-unavailable"
        }
    }

    /// Words for the person at the meter or the desk: what happened and what to do.
    public var explanation: String {
        switch self {
        case .malformed: "the card or command could not be read"
        case .notAMetergwCard: "not a metergw card"
        case .unsupportedLayout(let v): "card layout \(v) is newer than the meter supports"
        case .wrongIssuer(let i): "card from issuer \(i), not this meter's issuer"
        case .wrongMeter(let s): "card is for meter \(s), not this one"
        case .keyRevisionMismatch(let r): "made with another key revision; the meter uses revision \(r)"
        case .authenticationFailed: "MAC does not verify: the card or command is forged or corrupted"
        case .cardReplaced(let g): "card was replaced by a newer card (generation \(g)); use the new card"
        case .cardRevoked(let s): "card \(s) is revoked; take it to the desk"
        case .sequenceGap(let l):
            "an earlier purchase has not reached the meter (last applied \(l)); take the card to the desk"
        case .overlapsApplied(let l):
            "part of this card's credit is already on the meter (last applied \(l)); take the card to the desk"
        case .wrongUnitKind: "credit in another unit than this meter counts"
        case .invalidCreditBlock: "credit block is not a valid range of purchases"
        case .creditLimit: "credit would exceed what the meter can hold"
        case .invalidSetup: "setup values are invalid"
        case .keyChangeRefused: "key change refused: not a newer revision, or its check value does not verify"
        case .replayedCommand(let c): "command counter not above the last accepted one (\(c))"
        case .notPermitted: "not permitted in the meter's present state"
        case .valueOutOfRange: "value out of range"
        case .keysUnavailable: "the keys given are not this meter's"
        }
    }
}
