import Foundation
import MeterProtocol
import Prepaid

/// The rules of the card flows (docs/STORE.md "Card sales", "Cards brought back"; docs/CARD.md §5), written once for
/// both stores: each store fetches the rows these functions name and writes what they decide, so SQLite and
/// PostgreSQL number cards, plan credit blocks, mark purchases written and applied, and log them alike. Pure: no
/// I/O, no clock (`Actor.now` is given).
public enum CardRules {
    // MARK: Issuing

    /// The first serial a store gives a card is 100001.
    public static let firstSerial: Int64 = 100_001

    /// A new active card for `meter`: the generation after its highest (1 for its first), the serial after the
    /// highest this store gave (from `firstSerial`). A card image holds a u16 generation and a u32 serial.
    public static func newCard(
        meter: Meter, accountID: Int64, highestGeneration: Int64?, highestSerial: Int64?, by actor: Actor
    ) throws(StoreError) -> Card {
        let generation = (highestGeneration ?? 0) + 1
        guard generation <= Int64(UInt16.max) else {
            throw .invalidArgument("meter \(meter.serial) has used every card generation: a person must decide")
        }
        let serial = max(Self.firstSerial - 1, highestSerial ?? 0) + 1
        guard serial < Int64(CardImage.anyMeter) else {
            throw .invalidArgument("this store has given every card serial")
        }
        return Card(id: nil, serial: serial, meterId: meter.id!, accountId: accountID, generation: generation,
                    state: .active, issuedAt: actor.now)
    }

    /// The audit log's detail of a card issued.
    public static func issueDetail(_ card: Card, meterSerial: Int64) -> [(String, JSONValue)] {
        [("serial", .int(card.serial)), ("meter", .int(meterSerial)), ("generation", .int(card.generation))]
    }

    /// The audit log's detail of a card replaced (lost): the old card's serial.
    public static func replacedDetail(_ old: Card) -> [(String, JSONValue)] { [("serial", .int(old.serial))] }

    /// A card is planned for a card purchase that is not on a card yet, or is on one (it may be written again).
    public static func checkPlan(_ purchase: Purchase) throws(StoreError) {
        guard purchase.mode == .card, purchase.state == .created || purchase.state == .written else {
            throw .invalidTransition(purchase: purchase.id ?? 0, from: purchase.state.rawValue, to: "written")
        }
    }

    /// The meter's account, for an active card or a replacement: an unassigned meter has no customer's card.
    public static func accountID(of meter: Meter, reference: String) throws(StoreError) -> Int64 {
        guard let id = meter.accountId else { throw .meterNotFound("\(reference) (unassigned)") }
        return id
    }

    /// Everything the sale flow needs to sign the card: `card` for `meter` of `account`, carrying `pending` (the
    /// meter's `created`, `written` and `queued` purchases in sequence order) as one block (`PendingCredit.of`).
    public static func plan(meter: Meter, card: Card, account: Account, credit: BillingDatabase.PendingCredit?)
        -> BillingDatabase.CardPlan
    {
        BillingDatabase.CardPlan(
            cardSerial: UInt32(card.serial), generation: UInt16(card.generation), meterSerial: UInt32(meter.serial),
            keyRevision: UInt8(meter.keyRevision), accountNumber: UInt64(account.number), unitKind: meter.units,
            credit: credit?.block ?? .none)
    }

    // MARK: Written

    /// Whether marking `purchase` written on the card `cardSerial` (found as `card`) changes anything: false when it
    /// is on that card already. Refused: no such card, a card of another meter, account or generation, or a
    /// replaced card; a purchase that is not a `created` card purchase.
    public static func checkWritten(
        _ purchase: Purchase, card: Card?, cardSerial: UInt32, generation: UInt16, meter: Meter
    ) throws(StoreError) -> Bool {
        guard let card else { throw .cardNotFound(serial: Int64(cardSerial)) }
        guard card.meterId == purchase.meterId, card.accountId == purchase.accountId,
              card.generation == Int64(generation), card.state == .active
        else { throw .cardForAnotherMeter(cardSerial: card.serial, meterSerial: meter.serial) }
        if purchase.state == .written && purchase.cardId == card.id { return false }
        guard purchase.mode == .card, purchase.state == .created else {
            throw .invalidTransition(purchase: purchase.id ?? 0, from: purchase.state.rawValue, to: "written")
        }
        return true
    }

    /// The audit log's detail of a purchase written onto `card`.
    public static func writtenDetail(_ card: Card) -> [(String, JSONValue)] {
        [("card", .int(card.serial)), ("generation", .int(card.generation))]
    }

    // MARK: Brought back

    /// A card brought back from its meter, checked before any store is touched: a user card of this issuer (its
    /// MAC), with a write-back by its own meter (the meter's MAC). A forged or altered image is refused.
    public static func verifyUpload(_ image: [UInt8], issuer: CardIssuer) throws(StoreError)
        -> (card: CardImage, back: CardImage.WriteBack)
    {
        let card: CardImage
        do {
            card = try CardImage(bytes: image)
        } catch {
            throw .notACardImage(error.explanation)
        }
        guard card.type == .user else { throw .notACardImage("a \(card.type.name) card carries no account's credit") }
        guard issuer.issuerMACVerifies(image) == true else {
            throw .forgedWriteBack("the issuer MAC does not verify: not a card of this issuer, or altered")
        }
        guard let back = card.writeBack else {
            throw .forgedWriteBack("the card carries no write-back: insert it into its meter first")
        }
        guard issuer.meterMACVerifies(image) == true else {
            throw .forgedWriteBack("the meter MAC does not verify: the write-back was not written by meter "
                                   + "\(back.meterSerial), or was altered")
        }
        guard back.meterSerial == card.meterSerial else {
            throw .forgedWriteBack("written back by meter \(back.meterSerial), but the card is for \(card.meterSerial)")
        }
        return (card, back)
    }

    /// A card the store knows by its serial must be of the meter that wrote the card back.
    public static func checkUploadCard(_ cardRow: Card?, meter: Meter) throws(StoreError) {
        if let cardRow, cardRow.meterId != meter.id {
            throw .cardForAnotherMeter(cardSerial: cardRow.serial, meterSerial: meter.serial)
        }
    }

    /// The upload to record (without its id).
    public static func upload(
        image: [UInt8], card: CardImage, back: CardImage.WriteBack, meter: Meter, cardID: Int64?, by actor: Actor
    ) -> CardUpload {
        CardUpload(
            id: nil, image: Data(image), cardSerial: Int64(card.cardSerial), cardId: cardID, meterId: meter.id!,
            outcome: Int64(back.outcome.rawValue), refusal: Int64(back.refusalCode),
            refusalDetail: Int64(back.refusalDetail), lastAppliedSequence: Int64(back.lastAppliedSequence),
            unitsApplied: Int64(back.unitsApplied), register: Int64(clamping: back.registerUnits),
            credit: back.creditUnits, meterTime: Int64(back.meterTime), alarms: Int64(back.alarms.rawValue),
            uploadedAt: actor.now, operator: actor.name)
    }

    /// The audit log's detail of an upload recorded.
    public static func uploadDetail(_ upload: CardUpload, back: CardImage.WriteBack, meterSerial: Int64)
        -> [(String, JSONValue)]
    {
        [("card", .int(upload.cardSerial)), ("meter", .int(meterSerial)),
         ("lastApplied", .int(upload.lastAppliedSequence)), ("outcome", .string(back.outcome.name))]
    }

    /// Whether an alarm row is recorded: only a change from the meter's alarms before it (an episode once).
    public static func alarmChanged(previous: Int64?, alarms: Int64) -> Bool { (previous ?? 0) != alarms }

    // MARK: Applied

    /// Whether the meter's confirmation of every purchase up to `sequence` changes anything (false: known
    /// already). `highestSequence` is the highest sequence this store gave the meter (nil: none). Refused: an
    /// unknown source, a sequence this store never sold (the meter is bound to another desk).
    public static func checkApplied(meter: Meter, upTo sequence: Int64, highestSequence: Int64?, source: String)
        throws(StoreError) -> Bool
    {
        guard ["card", "remote", "reading"].contains(source) else {
            throw .invalidArgument("source is card, remote or reading")
        }
        let allocated = highestSequence ?? meter.sequenceBase
        guard sequence <= max(allocated, meter.sequenceBase) else {
            throw .invalidArgument(
                "meter \(meter.serial) reports sequence \(sequence) applied, but this store sold only up to "
                    + "\(allocated): is it bound to another desk?")
        }
        return sequence > meter.lastAppliedSequence
    }

    /// The audit log's detail of a purchase applied.
    public static func appliedDetail(source: String, upTo sequence: Int64) -> [(String, JSONValue)] {
        [("source", .string(source)), ("upTo", .int(sequence))]
    }

    /// The audit log's detail of a cancelled purchase (a void of zero units) the meter has passed.
    public static func voidConfirmedDetail(source: String) -> [(String, JSONValue)] { [("source", .string(source))] }
}
