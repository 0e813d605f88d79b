import Foundation
import GRDB
import MeterProtocol
import Prepaid

extension BillingDatabase {
    /// The credit a card must carry to its meter: every sequence after the meter's last known applied one up to
    /// the latest pending purchase, and the units of the pending purchases among them (a cancelled purchase in the
    /// range is a void: its sequence, zero units). docs/CARD.md §5.1.
    public struct PendingCredit: Hashable, Sendable {
        public var firstSequence: Int64
        public var lastSequence: Int64
        public var units: Int64
        public var purchaseIDs: [Int64]

        /// The block for `meter` from its pending purchases (`created`, `written`, `queued`) in sequence order;
        /// nil when none is pending. Written once for both stores.
        public static func of(meter: Meter, pending: [Purchase]) throws(StoreError) -> PendingCredit? {
            guard let last = pending.last else { return nil }
            let units = pending.reduce(Int64(0)) { $0 + $1.units }
            guard units <= Int64(UInt32.max) else {
                throw .invalidArgument("the pending credit exceeds one card block: apply part of it first")
            }
            return PendingCredit(firstSequence: meter.lastAppliedSequence + 1, lastSequence: last.sequence,
                                 units: units, purchaseIDs: pending.map { $0.id! })
        }

        public var block: CardImage.CreditBlock {
            CardImage.CreditBlock(firstSequence: UInt32(self.firstSequence), lastSequence: UInt32(self.lastSequence),
                                  units: UInt32(self.units))
        }
    }

    /// Everything the sale flow needs to build and sign the user card image with `Prepaid.CardIssuer`.
    public struct CardPlan: Hashable, Sendable {
        public var cardSerial: UInt32
        public var generation: UInt16
        public var meterSerial: UInt32
        public var keyRevision: UInt8
        public var accountNumber: UInt64
        public var unitKind: UnitKind
        /// `.none` when nothing is pending (a replacement card with no credit still carries consumption back).
        public var credit: CardImage.CreditBlock

        /// The signed image to write.
        public func image(issuer: CardIssuer, issueTime: UInt32) -> [UInt8] {
            issuer.userCard(cardSerial: self.cardSerial, generation: self.generation, meterSerial: self.meterSerial,
                            revision: self.keyRevision, accountNumber: self.accountNumber, unitKind: self.unitKind,
                            credit: self.credit, issueTime: issueTime)
        }

        /// Whether the card writer's read-back holds exactly the issuer area written (a write-back area may follow).
        public static func readBackMatches(written: [UInt8], readBack: [UInt8]) -> Bool {
            written.count == CardImage.size && readBack.count == CardImage.size
                && written[0..<CardImage.writeBackOffset] == readBack[0..<CardImage.writeBackOffset]
        }
    }

    public func pendingCreditBlock(meter reference: String) throws(StoreError) -> PendingCredit? {
        try self.read { db in try Self.pendingCredit(db, meter: try Self.findMeter(db, reference)) }
    }

    static func pendingCredit(_ db: Database, meter: Meter) throws -> PendingCredit? {
        let pending = try Purchase.filter(
            Column("meterId") == meter.id && ["created", "written", "queued"].contains(Column("state"))
        ).order(Column("sequence")).fetchAll(db)
        return try PendingCredit.of(meter: meter, pending: pending)
    }

    /// The card for a card purchase: the meter's active card, or a new one (generation 1, or the next after a
    /// replaced card) when it has none; and the credit block it must carry, which includes this purchase.
    public func cardPlan(purchase id: Int64, by actor: Actor) throws(StoreError) -> CardPlan {
        try self.write { db in
            guard let purchase = try Purchase.fetchOne(db, key: id) else {
                throw StoreError.purchaseNotFound(String(id))
            }
            try CardRules.checkPlan(purchase)
            let meter = try Meter.fetchOne(db, key: purchase.meterId)!
            let card = try Self.activeCard(db, meter: meter, accountID: purchase.accountId, by: actor)
            return try Self.plan(db, meter: meter, card: card)
        }
    }

    /// The card the meter's customer holds now (a new one when the meter has none active) and everything pending:
    /// for writing the same card again after a write that failed, without issuing another generation.
    public func activeCardPlan(meter reference: String, by actor: Actor) throws(StoreError) -> CardPlan {
        try self.write { db in
            let meter = try Self.findMeter(db, reference)
            let accountID = try CardRules.accountID(of: meter, reference: reference)
            let card = try Self.activeCard(db, meter: meter, accountID: accountID, by: actor)
            return try Self.plan(db, meter: meter, card: card)
        }
    }

    /// A replacement for a lost card: the active card is marked replaced and a new serial with the next generation
    /// carries every purchase the meter is not known to have applied (docs/CARD.md §5.2).
    public func replaceCard(meter reference: String, by actor: Actor) throws(StoreError) -> CardPlan {
        try self.write { db in
            let meter = try Self.findMeter(db, reference)
            let accountID = try CardRules.accountID(of: meter, reference: reference)
            if var old = try Card.filter(Column("meterId") == meter.id && Column("state") == "active").fetchOne(db) {
                old.state = .replaced
                try old.update(db)
                try AuditLog.append(db, operator: actor.name, action: "card.replaced", entity: "card", id: old.id,
                                    now: actor.now, CardRules.replacedDetail(old))
            }
            let card = try Self.activeCard(db, meter: meter, accountID: accountID, by: actor)
            return try Self.plan(db, meter: meter, card: card)
        }
    }

    static func activeCard(_ db: Database, meter: Meter, accountID: Int64, by actor: Actor) throws -> Card {
        if let card = try Card.filter(Column("meterId") == meter.id && Column("state") == "active").fetchOne(db) {
            return card
        }
        var card = try CardRules.newCard(
            meter: meter, accountID: accountID,
            highestGeneration: try Int64.fetchOne(db, sql: "SELECT max(generation) FROM card WHERE meterId = ?",
                                                  arguments: [meter.id]),
            highestSerial: try Int64.fetchOne(db, sql: "SELECT max(serial) FROM card"), by: actor)
        try card.insert(db)
        try AuditLog.append(db, operator: actor.name, action: "card.issue", entity: "card", id: card.id, now: actor.now,
                            CardRules.issueDetail(card, meterSerial: meter.serial))
        return card
    }

    static func plan(_ db: Database, meter: Meter, card: Card) throws -> CardPlan {
        CardRules.plan(meter: meter, card: card, account: try Account.fetchOne(db, key: card.accountId)!,
                       credit: try Self.pendingCredit(db, meter: meter))
    }

    // MARK: Cards brought back

    /// What recording a card upload did.
    public struct UploadOutcome: Hashable, Sendable {
        public var upload: CardUpload
        /// Purchases this upload confirmed as applied by the meter.
        public var applied: [Purchase]
        /// The same image was recorded before: nothing changed.
        public var repeated: Bool

        public init(upload: CardUpload, applied: [Purchase], repeated: Bool) {
            self.upload = upload
            self.applied = applied
            self.repeated = repeated
        }
    }

    /// Records a card brought back from its meter: checks both MACs with `issuer` (a forged or altered write-back is
    /// refused), then in one transaction stores the image, the meter's register as a reading, its alarms, and
    /// confirms the purchases the meter reports applied. The same image twice is recorded once.
    public func recordUpload(image: [UInt8], issuer: CardIssuer, by actor: Actor) throws(StoreError) -> UploadOutcome {
        let (card, back) = try CardRules.verifyUpload(image, issuer: issuer)
        return try self.write { db in
            let meter = try Self.findMeter(db, String(card.meterSerial))
            let cardRow = try Card.filter(Column("serial") == Int64(card.cardSerial)).fetchOne(db)
            try CardRules.checkUploadCard(cardRow, meter: meter)
            if let first = try CardUpload.filter(Column("image") == Data(image)).fetchOne(db) {
                return UploadOutcome(upload: first, applied: [], repeated: true)
            }
            var upload = CardRules.upload(image: image, card: card, back: back, meter: meter, cardID: cardRow?.id,
                                          by: actor)
            try upload.insert(db)
            try AuditLog.append(db, operator: actor.name, action: "card.upload", entity: "cardUpload", id: upload.id,
                                now: actor.now, CardRules.uploadDetail(upload, back: back, meterSerial: meter.serial))
            _ = try Self.insertReadings(db, [ReadingInput(meterID: meter.id!, time: upload.meterTime,
                                                          register: upload.register, credit: upload.credit)],
                                        source: "card")
            try Self.insertAlarm(db, AlarmInput(meterID: meter.id!, time: upload.meterTime, alarms: upload.alarms),
                                 source: "card")
            let applied = try Self.markApplied(db, meter: meter, upTo: upload.lastAppliedSequence, source: "card",
                                               by: actor)
            return UploadOutcome(upload: upload, applied: applied, repeated: false)
        }
    }
}
