import BillingStore
import Foundation
import GRDB
import MeterProtocol
import Prepaid
import Testing

/// The store's half of the card flows: plan, sign, "write", mark written, the meter inserts the card, the desk
/// records what came back. The card writer itself is the bus layer's; here the image goes straight to a
/// `PrepaidMeter` model, as the emulator's writer would carry it.
@Suite struct CardFlowTests {
    func meterModel() -> PrepaidMeter {
        PrepaidMeter(serial: 20_251_125, kind: .electricity, issuerID: 1, now: UInt32(now))
    }

    @Test func twoSalesJoinOneCreditBlockAndTheUploadConfirmsBoth() throws {
        let store = try makeStore()
        let first = try store.sell(account: "1", amount: .fen(10000), requestID: "c1", mode: .card, by: desk).purchase
        let plan1 = try store.cardPlan(purchase: first.id!, by: desk)
        #expect(plan1.cardSerial == 100_001 && plan1.generation == 1 && plan1.accountNumber == 10_000_001)
        #expect(plan1.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1, units: 189_286))
        let image1 = plan1.image(issuer: TestKeys.cardIssuer, issueTime: UInt32(now))
        #expect(BillingDatabase.CardPlan.readBackMatches(written: image1, readBack: image1))
        _ = try store.markWritten(purchase: first.id!, cardSerial: plan1.cardSerial, generation: 1, by: desk)

        // The customer buys again before going to the meter: the card is rewritten with both purchases.
        let second = try store.sell(account: "1", amount: .fen(5000), requestID: "c2", mode: .card, by: desk).purchase
        let plan2 = try store.cardPlan(purchase: second.id!, by: desk)
        #expect(plan2.cardSerial == 100_001)
        #expect(plan2.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 2,
                                                       units: UInt32(189_286 + second.units)))
        let image2 = plan2.image(issuer: TestKeys.cardIssuer, issueTime: UInt32(now))
        _ = try store.markWritten(purchase: second.id!, cardSerial: plan2.cardSerial, generation: 1, by: desk)
        #expect(try store.pendingCreditBlock(meter: "20251125")?.purchaseIDs == [1, 2])

        var meter = meterModel()
        let inserted = meter.insertCard(image2, keys: TestKeys.issuer.meter(serial: 20_251_125, revision: 1),
                                        now: UInt32(now + 3600))
        let back = try #require(inserted.writtenImage)
        let upload = try store.recordUpload(image: back, issuer: TestKeys.cardIssuer, by: Actor("desk", now: now + 7200))
        #expect(!upload.repeated && upload.applied.map(\.sequence) == [1, 2])
        #expect(upload.upload.lastAppliedSequence == 2 && upload.upload.unitsApplied == 189_286 + second.units)
        #expect(try store.pendingCreditBlock(meter: "20251125") == nil)
        #expect(try store.count("SELECT count(*) FROM reading WHERE source = 'card'") == 1)
        // The same card read twice is one upload.
        let again = try store.recordUpload(image: back, issuer: TestKeys.cardIssuer, by: desk)
        #expect(again.repeated && again.applied.isEmpty)
        #expect(try store.count("SELECT count(*) FROM cardUpload") == 1)
        #expect(try store.check().isEmpty)
        // For the centre: the upload once, with its image, and each purchase at every state it reached.
        let batch = try #require(try store.outboxBatch(after: 0, limit: 1000))
        #expect(batch.cardUploads.map(\.upload.image) == [Data(back)])
        #expect(batch.purchases.map { "\($0.purchase.sequence)/\($0.state)" }
                == ["1/created", "1/written", "2/created", "2/written", "1/applied", "2/applied"])
    }

    @Test func aForgedOrAlteredWriteBackIsRefusedAndRecordsNothing() throws {
        let store = try makeStore()
        let p = try store.sell(account: "1", amount: .fen(1000), requestID: "f", mode: .card, by: desk).purchase
        let plan = try store.cardPlan(purchase: p.id!, by: desk)
        let image = plan.image(issuer: TestKeys.cardIssuer, issueTime: UInt32(now))
        _ = try store.markWritten(purchase: p.id!, cardSerial: plan.cardSerial, generation: 1, by: desk)
        #expect(throws: StoreError.forgedWriteBack("the card carries no write-back: insert it into its meter first")) {
            try store.recordUpload(image: image, issuer: TestKeys.cardIssuer, by: desk)
        }
        var meter = meterModel()
        var back = try #require(meter.insertCard(image, keys: TestKeys.issuer.meter(serial: 20_251_125, revision: 1),
                                                 now: UInt32(now)).writtenImage)
        back[176 + 3] = 5  // "last applied 5": claims purchases that were never sold
        #expect {
            try store.recordUpload(image: back, issuer: TestKeys.cardIssuer, by: desk)
        } throws: { error in
            if case .forgedWriteBack = error as? StoreError { return true }
            return false
        }
        // A card signed with another issuer's key.
        let stranger = CardIssuer(keys: IssuerKeys(systemKey: SystemKey(bytes: Array(repeating: 7, count: 32))!,
                                                   issuerID: 1))
        #expect(throws: StoreError.self) {
            try store.recordUpload(image: plan.image(issuer: stranger, issueTime: 0), issuer: TestKeys.cardIssuer,
                                   by: desk)
        }
        #expect(try store.count("SELECT count(*) FROM cardUpload") == 0)
        #expect(try store.purchase(p.id!).state == .written)
    }

    @Test func aCardOfAnotherMeterIsRefused() throws {
        let store = try makeStore()
        _ = try store.openAccount(name: "B", by: desk)
        _ = try store.addMeter(serial: 555, kind: .electricity, tariff: "flat", by: desk)
        _ = try store.assignMeter("555", to: "2", by: desk)
        let a = try store.sell(account: "1", amount: .fen(1000), requestID: "a", mode: .card, by: desk).purchase
        let b = try store.sell(account: "2", amount: .fen(1000), requestID: "b", mode: .card, by: desk).purchase
        let planA = try store.cardPlan(purchase: a.id!, by: desk)
        let planB = try store.cardPlan(purchase: b.id!, by: desk)
        #expect(planA.cardSerial != planB.cardSerial)
        #expect(throws: StoreError.cardForAnotherMeter(cardSerial: Int64(planB.cardSerial), meterSerial: 20_251_125)) {
            try store.markWritten(purchase: a.id!, cardSerial: planB.cardSerial, generation: 1, by: desk)
        }
        #expect(try store.purchase(a.id!).state == .created)
    }

    @Test func aReplacementCardCarriesEveryUnappliedPurchaseWithTheNextGeneration() throws {
        let store = try makeStore()
        let p = try store.sell(account: "1", amount: .fen(1000), requestID: "r", mode: .card, by: desk).purchase
        let plan = try store.cardPlan(purchase: p.id!, by: desk)
        _ = try store.markWritten(purchase: p.id!, cardSerial: plan.cardSerial, generation: 1, by: desk)
        let replacement = try store.replaceCard(meter: "20251125", by: desk)
        #expect(replacement.generation == 2 && replacement.cardSerial == plan.cardSerial + 1)
        #expect(replacement.credit == plan.credit)
        #expect(try store.count("SELECT count(*) FROM card WHERE state = 'active'") == 1)
    }

    @Test func readingsEventsAndAlarmsAreIdempotent() throws {
        let store = try makeStore()
        let meter = try store.meter("20251125").id!
        let batch = (0..<96).map { ReadingInput(meterID: meter, time: now + Int64($0) * 900, register: 1000 + Int64($0)) }
        #expect(try store.insertReadings(batch, by: desk) == 96)
        #expect(try store.insertReadings(batch, by: desk) == 0)
        #expect(try store.count("SELECT count(*) FROM reading") == 96)
        let events = [EventInput(meterID: meter, index: 1, time: now, code: 0x20, value: 5)]
        #expect(try store.insertEvents(events, by: desk) == 1)
        #expect(try store.insertEvents(events, by: desk) == 0)
        #expect(try store.recordAlarms(AlarmInput(meterID: meter, time: now, alarms: 1), by: desk))
        #expect(try !store.recordAlarms(AlarmInput(meterID: meter, time: now + 1, alarms: 1), by: desk))
        #expect(try store.check(full: true).isEmpty)
    }
}
