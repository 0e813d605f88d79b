import BillingStore
import Foundation
import MeterProtocol
import PostgresNIO
import Prepaid

/// The card flows on the central store (docs/CENTRAL.md "The desk on the central store"), for the meters the centre
/// numbers (no gateway serves them): the same rules (`CardRules`) and records as on SQLite. Where SQLite relied on
/// its single writer, the meter's row is locked (`FOR UPDATE`: its cards' generations, its purchases' states, its
/// last applied sequence) and card serials, numbered across meters, are given under the desk's advisory lock.
extension CentralDatabase {
    // MARK: Issuing

    public func cardPlan(purchase id: Int64, by actor: Actor) async throws(StoreError) -> BillingDatabase.CardPlan {
        try await self.deskWrite { c in
            let meterID = try await self.purchase(c, id: id).meterId
            let meter = try await self.findMeter(c, "id:\(meterID)", lock: true)
            // Read again under the meter's lock: another desk may have written it meanwhile.
            let purchase = try await self.purchase(c, id: id)
            try CardRules.checkPlan(purchase)
            try await self.refuseServed(c, meter)
            let card = try await self.activeCard(c, meter: meter, accountID: purchase.accountId, by: actor)
            return try await self.plan(c, meter: meter, card: card)
        }
    }

    public func activeCardPlan(meter reference: String, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.CardPlan
    {
        try await self.deskWrite { c in
            let meter = try await self.findMeter(c, reference, lock: true)
            let accountID = try CardRules.accountID(of: meter, reference: reference)
            try await self.refuseServed(c, meter)
            let card = try await self.activeCard(c, meter: meter, accountID: accountID, by: actor)
            return try await self.plan(c, meter: meter, card: card)
        }
    }

    public func replaceCard(meter reference: String, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.CardPlan
    {
        try await self.deskWrite { c in
            let meter = try await self.findMeter(c, reference, lock: true)
            let accountID = try CardRules.accountID(of: meter, reference: reference)
            try await self.refuseServed(c, meter)
            if let old = try await self.activeCardRow(c, meterID: meter.id!) {
                try await c.execute("UPDATE card SET state = 'replaced' WHERE id = \(old.id!)", logger: self.logger)
                try await self.audit(c, actor, "card.replaced", "card", old.id, CardRules.replacedDetail(old))
            }
            let card = try await self.activeCard(c, meter: meter, accountID: accountID, by: actor)
            return try await self.plan(c, meter: meter, card: card)
        }
    }

    /// A meter a gateway serves has its cards and its credit at that gateway (it numbers the meter's purchases):
    /// `refusal` names what was asked of the centre (by default a card).
    func refuseServed(
        _ c: PostgresConnection, _ meter: Meter,
        _ refusal: (_ serial: Int64, _ gateway: String) -> StoreError = StoreError.meterServedByGateway
    ) async throws {
        if let gateway = try await self.servingGateway(c, meterID: meter.id!) {
            throw refusal(meter.serial, gateway.name)
        }
    }

    func activeCardRow(_ c: PostgresConnection, meterID: Int64) async throws -> Card? {
        try await self.records(c, """
            SELECT to_jsonb(k)::text FROM card k WHERE k.meter_id = \(meterID) AND k.state = 'active'
            """, as: Card.self).first
    }

    /// The meter's active card, or a new one. The caller holds the meter's row (its generations); serials are
    /// numbered across meters, so two desks issuing cards for two meters take turns on the advisory lock.
    func activeCard(_ c: PostgresConnection, meter: Meter, accountID: Int64, by actor: Actor) async throws -> Card {
        if let card = try await self.activeCardRow(c, meterID: meter.id!) { return card }
        try await self.lockNumbering(c)
        var card = try CardRules.newCard(
            meter: meter, accountID: accountID,
            highestGeneration: try await self.optional(
                c, "SELECT max(generation)::bigint FROM card WHERE meter_id = \(meter.id!)", as: Int64.self),
            highestSerial: try await self.optional(c, "SELECT max(serial) FROM card", as: Int64.self), by: actor)
        card.id = try await self.id(c, """
            INSERT INTO card (serial, meter_id, account_id, generation, state, issued_at)
            VALUES (\(card.serial), \(card.meterId), \(card.accountId), \(Int32(card.generation)), 'active',
                    \(card.issuedAt))
            RETURNING id
            """)
        try await self.audit(c, actor, "card.issue", "card", card.id,
                             CardRules.issueDetail(card, meterSerial: meter.serial))
        return card
    }

    func plan(_ c: PostgresConnection, meter: Meter, card: Card) async throws -> BillingDatabase.CardPlan {
        CardRules.plan(meter: meter, card: card, account: try await self.account(c, id: card.accountId),
                       credit: try await self.pendingCredit(c, meter: meter))
    }

    // MARK: Written

    public func markWritten(purchase id: Int64, cardSerial: UInt32, generation: UInt16, by actor: Actor)
        async throws(StoreError) -> [Purchase]
    {
        try await self.deskWrite { c in
            let meterID = try await self.purchase(c, id: id).meterId
            let meter = try await self.findMeter(c, "id:\(meterID)", lock: true)
            let purchase = try await self.purchase(c, id: id)
            let card = try await self.records(
                c, "SELECT to_jsonb(k)::text FROM card k WHERE k.serial = \(Int64(cardSerial))", as: Card.self).first
            guard try CardRules.checkWritten(purchase, card: card, cardSerial: cardSerial, generation: generation,
                                             meter: meter), let card
            else { return [purchase] }
            var written: [Purchase] = []
            for p in try await self.purchases(c, where: """
                p.meter_id = \(meter.id!) AND p.state = 'created' AND p.sequence <= \(purchase.sequence)
                ORDER BY p.sequence
                """) {
                try await c.execute("""
                    UPDATE purchase SET state = 'written', card_id = \(card.id!), written_at = \(actor.now)
                    WHERE id = \(p.id!)
                    """, logger: self.logger)
                try await self.audit(c, actor, "purchase.written", "purchase", p.id, CardRules.writtenDetail(card))
                written.append(try await self.purchase(c, id: p.id!))
            }
            return written
        }
    }

    // MARK: Brought back

    /// Records a card brought back, as on SQLite; the centre's own desk's upload has no gateway (`gateway_id`
    /// NULL). `card_upload.image` is UNIQUE whoever recorded it: an image a gateway synced before (or syncs while
    /// this runs) is the same upload, `repeated`, and changes nothing here; the gateway's row stands as it came.
    public func recordUpload(image: [UInt8], issuer: CardIssuer, by actor: Actor) async throws(StoreError)
        -> BillingDatabase.UploadOutcome
    {
        let (card, back) = try CardRules.verifyUpload(image, issuer: issuer)
        return try await self.deskWrite { c in
            let meter = try await self.findMeter(c, String(card.meterSerial), lock: true)
            let cardRow = try await self.records(
                c, "SELECT to_jsonb(k)::text FROM card k WHERE k.serial = \(Int64(card.cardSerial))",
                as: Card.self).first
            try CardRules.checkUploadCard(cardRow, meter: meter)
            if let first = try await self.upload(c, image: image) {
                return BillingDatabase.UploadOutcome(upload: first, applied: [], repeated: true)
            }
            try await self.refuseServed(c, meter)
            var upload = CardRules.upload(image: image, card: card, back: back, meter: meter, cardID: cardRow?.id,
                                          by: actor)
            guard let id = try await self.optional(c, """
                INSERT INTO card_upload (image, card_serial, card_id, meter_id, outcome, refusal, refusal_detail,
                                         last_applied_sequence, units_applied, register, credit, meter_time, alarms,
                                         uploaded_at, operator)
                VALUES (\(upload.image), \(upload.cardSerial), \(upload.cardId), \(upload.meterId),
                        \(Int32(upload.outcome)), \(Int32(upload.refusal)), \(upload.refusalDetail),
                        \(upload.lastAppliedSequence), \(upload.unitsApplied), \(upload.register), \(upload.credit),
                        \(upload.meterTime), \(Int32(upload.alarms)), \(upload.uploadedAt), \(upload.operator))
                ON CONFLICT (image) DO NOTHING RETURNING id
                """, as: Int64.self)
            else {
                // A gateway's sync committed the same image while this waited for it: that one is the upload.
                return BillingDatabase.UploadOutcome(upload: try await self.upload(c, image: image)!, applied: [],
                                                     repeated: true)
            }
            upload.id = id
            try await self.audit(c, actor, "card.upload", "cardUpload", id,
                                 CardRules.uploadDetail(upload, back: back, meterSerial: meter.serial))
            try await c.execute("""
                INSERT INTO reading (meter_id, time, register, credit, source)
                VALUES (\(meter.id!), \(upload.meterTime), \(upload.register), \(upload.credit), 'card')
                ON CONFLICT DO NOTHING
                """, logger: self.logger)
            let previous = try await self.optional(c, """
                SELECT alarms::bigint FROM alarm WHERE meter_id = \(meter.id!) AND time < \(upload.meterTime)
                ORDER BY time DESC LIMIT 1
                """, as: Int64.self)
            if CardRules.alarmChanged(previous: previous, alarms: upload.alarms) {
                try await c.execute("""
                    INSERT INTO alarm (meter_id, time, alarms, source)
                    VALUES (\(meter.id!), \(upload.meterTime), \(Int32(upload.alarms)), 'card') ON CONFLICT DO NOTHING
                    """, logger: self.logger)
            }
            let applied = try await self.markApplied(c, meter: meter, upTo: upload.lastAppliedSequence,
                                                     source: "card", by: actor)
            return BillingDatabase.UploadOutcome(upload: upload, applied: applied, repeated: false)
        }
    }

    /// The upload of this image, whoever recorded it. bytea reads as base64 in one line, as `Data` decodes.
    func upload(_ c: PostgresConnection, image: [UInt8]) async throws -> CardUpload? {
        try await self.records(c, """
            SELECT (to_jsonb(u) || jsonb_build_object(
                'image', translate(encode(u.image, 'base64'), E'\\n', '')))::text
            FROM card_upload u WHERE u.image = \(Data(image))
            """, as: CardUpload.self).first
    }

    /// The meter (its row locked by the caller) confirmed every purchase up to `sequence`: each pending one becomes
    /// `applied` once, a cancelled one is logged as a void passed, as on SQLite. The purchases are locked too: a
    /// cancel at the same moment (which locks its account and purchase, not the meter) is either seen or waits.
    func markApplied(_ c: PostgresConnection, meter: Meter, upTo sequence: Int64, source: String, by actor: Actor)
        async throws -> [Purchase]
    {
        let highest = try await self.optional(
            c, "SELECT max(sequence) FROM purchase WHERE meter_id = \(meter.id!)", as: Int64.self)
        guard try CardRules.checkApplied(meter: meter, upTo: sequence, highestSequence: highest, source: source)
        else { return [] }
        try await c.execute("UPDATE meter SET last_applied_sequence = \(sequence) WHERE id = \(meter.id!)",
                            logger: self.logger)
        var applied: [Purchase] = []
        for p in try await self.purchases(c, where: """
            p.meter_id = \(meter.id!) AND p.sequence <= \(sequence) AND p.sequence > \(meter.lastAppliedSequence)
            ORDER BY p.sequence FOR UPDATE
            """) {
            guard p.isPending else {
                if p.state == .cancelled {
                    try await self.audit(c, actor, "purchase.void-confirmed", "purchase", p.id,
                                         CardRules.voidConfirmedDetail(source: source))
                }
                continue
            }
            try await c.execute("""
                UPDATE purchase SET state = 'applied', applied_at = \(actor.now), applied_source = \(source)
                WHERE id = \(p.id!)
                """, logger: self.logger)
            try await self.audit(c, actor, "purchase.applied", "purchase", p.id,
                                 CardRules.appliedDetail(source: source, upTo: sequence))
            applied.append(try await self.purchase(c, id: p.id!))
        }
        return applied
    }
}
