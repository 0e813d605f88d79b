import MetergwTestSupport
import Foundation
import MeterProtocol
import Testing
@testable import Prepaid

@Suite struct CardTests {
    static let keys = TestKeys.meter()
    static let now = TestKeys.time

    /// The fixtures on disk are exactly what the code makes (METERGW_REGENERATE_FIXTURES=1 rewrites them).
    @Test func goldenCardImagesMatchTheFixtures() throws {
        for (name, bytes) in GoldenCards.all {
            #expect(bytes.count == CardImage.size, "\(name)")
            if CardFixtures.regenerate { try CardFixtures.write(name, bytes) }
            #expect(try CardFixtures.read(name) == bytes, "\(name): fixture differs from the generated image")
            // A valid image decodes and re-encodes to the same bytes.
            let card = try CardImage(bytes: bytes)
            #expect(card.bytes == bytes, "\(name): decode/encode round trip")
            #expect(TestKeys.cardIssuer.issuerMACVerifies(bytes) == true, "\(name): issuer MAC")
        }
        let written = try CardImage(bytes: GoldenCards.userWrittenBack)
        let back = try #require(written.writeBack)
        #expect(back.outcome == .creditApplied)
        #expect(back.lastAppliedSequence == 43)
        #expect(back.unitsApplied == 150_000)
        #expect(back.registerUnits == 1_234_567)
        #expect(back.creditUnits == 195_300)
        #expect(back.meterTime == Self.now)
        #expect(TestKeys.cardIssuer.meterMACVerifies(GoldenCards.userWrittenBack) == true)
        #expect(TestKeys.cardIssuer.meterMACVerifies(GoldenCards.user) == nil)
    }

    /// Flipping any bit the issuer signed (bytes 0...159) makes the meter refuse the card and leave it untouched.
    @Test(arguments: ["user", "replacement", "check", "setup", "setup-key-change"])
    func everyIssuerBitFlipIsRefused(_ name: String) throws {
        let image = try #require(GoldenCards.all.first { $0.name == name }?.bytes)
        let base = GoldenCards.exampleMeter()
        var refused = 0
        for byte in 0..<CardImage.writeBackOffset {
            for bit in 0..<8 {
                var flipped = image
                flipped[byte] ^= 1 << bit
                var meter = base
                let outcome = meter.insertCard(flipped, keys: Self.keys, now: Self.now)
                guard case .refused = outcome.result else {
                    Issue.record("\(name): flip of byte \(byte) bit \(bit) accepted: \(outcome.result)")
                    continue
                }
                #expect(outcome.writtenImage == nil)
                #expect(meter.creditUnits == base.creditUnits && meter.lastAppliedSequence == base.lastAppliedSequence)
                #expect(meter.keyRevision == base.keyRevision && meter.alarmThresholdUnits == base.alarmThresholdUnits)
                #expect(TestKeys.cardIssuer.issuerMACVerifies(flipped) != true)
                refused += 1
            }
        }
        #expect(refused == CardImage.writeBackOffset * 8)
    }

    /// Flipping any bit of a written-back area or its MAC (bytes 160...255) fails the desk's meter-MAC check.
    @Test func everyWriteBackBitFlipIsDetectedAtTheDesk() throws {
        let image = GoldenCards.userWrittenBack
        var detected = 0
        for byte in CardImage.writeBackOffset..<CardImage.size {
            for bit in 0..<8 {
                var flipped = image
                flipped[byte] ^= 1 << bit
                // Either the area no longer reads as a write-back (nil/throws) or its MAC fails.
                #expect(TestKeys.cardIssuer.meterMACVerifies(flipped) != true, "byte \(byte) bit \(bit)")
                detected += 1
            }
        }
        #expect(detected == 96 * 8)
    }

    /// A fresh card's blank write-back area is not signed: the meter overwrites whatever is there.
    @Test func blankWriteBackAreaIsOverwritten() throws {
        var rng = SeededGenerator(seed: 7)
        var reference = GoldenCards.exampleMeter()
        let expected = reference.insertCard(GoldenCards.user, keys: Self.keys, now: Self.now).writtenImage
        for _ in 0..<50 {
            var image = GoldenCards.user
            for i in CardImage.writeBackOffset..<CardImage.size { image[i] = UInt8.random(in: 0...255, using: &rng) }
            var meter = GoldenCards.exampleMeter()
            let outcome = meter.insertCard(image, keys: Self.keys, now: Self.now)
            #expect(outcome.result == .creditApplied(units: 150_000, sequences: 42...43))
            #expect(outcome.writtenImage == expected)
        }
    }

    @Test func aCardForMeterAIsRefusedByMeterB() {
        let meterB: UInt32 = 20_251_126
        var b = PrepaidMeter(serial: meterB, kind: .electricity, issuerID: 1, now: Self.now)
        let outcome = b.insertCard(GoldenCards.user, keys: TestKeys.meter(meterB), now: Self.now)
        #expect(outcome.result == .refused(.wrongMeter(cardMeter: TestKeys.serial)))
        #expect(outcome.writtenImage == nil)
        #expect(b.creditUnits == 0 && b.lastAppliedSequence == 0)
        #expect(b.cardRefusals == 1)
        // Re-binding the card to B by rewriting the meter serial breaks the issuer MAC (B's key differs anyway).
        var rebound = GoldenCards.user
        rebound.replaceSubrange(20..<24, with: [0x01, 0x35, 0x01, 0xF6])
        #expect(b.insertCard(rebound, keys: TestKeys.meter(meterB), now: Self.now).result
                == .refused(.authenticationFailed))
        // Re-signing with A's card key but B's serial still fails: B checks with its own key.
        let forged = CardIssuer.sign(rebound, key: TestKeys.meter().cardIssuer)
        #expect(b.insertCard(forged, keys: TestKeys.meter(meterB), now: Self.now).result
                == .refused(.authenticationFailed))
        // Another issuer's card is refused before anything else.
        let other = CardIssuer(keys: IssuerKeys(systemKey: TestKeys.systemKey, issuerID: 2))
        let foreign = other.userCard(cardSerial: 5, generation: 1, meterSerial: meterB, revision: 1, accountNumber: 1,
                                     unitKind: .wattHours, credit: .init(firstSequence: 1, lastSequence: 1, units: 9),
                                     issueTime: Self.now)
        #expect(b.insertCard(foreign, keys: TestKeys.meter(meterB), now: Self.now).result
                == .refused(.wrongIssuer(cardIssuer: 2)))
    }

    @Test func insertingTheSameCardTwiceAppliesItOnceAndStillWritesBack() throws {
        var meter = GoldenCards.exampleMeter()
        let first = meter.insertCard(GoldenCards.user, keys: Self.keys, now: Self.now)
        #expect(first.result == .creditApplied(units: 150_000, sequences: 42...43))
        meter.consume(units: 300, now: Self.now + 60)
        let second = meter.insertCard(try #require(first.writtenImage), keys: Self.keys, now: Self.now + 120)
        #expect(second.result == .alreadyApplied(lastApplied: 43))
        #expect(meter.creditUnits == 45_300 + 150_000 - 300)
        let secondImage = try #require(second.writtenImage)
        let back = try #require(try CardImage(bytes: secondImage).writeBack)
        #expect(back.outcome == .alreadyApplied)
        #expect(back.registerUnits == 1_234_567 + 300)
        #expect(back.unitsApplied == 0)
    }

    @Test func gapsAndOverlapsAreRefusedWithTheLastAppliedSequence() throws {
        var meter = GoldenCards.exampleMeter()  // last applied 41
        let gap = GoldenCards.issuer.userCard(
            cardSerial: GoldenCards.userCardSerial, generation: 1, meterSerial: TestKeys.serial, revision: 1,
            accountNumber: 1, unitKind: .wattHours, credit: .init(firstSequence: 43, lastSequence: 44, units: 10),
            issueTime: Self.now)
        let outcome = meter.insertCard(gap, keys: Self.keys, now: Self.now)
        #expect(outcome.result == .refused(.sequenceGap(lastApplied: 41)))
        let gapImage = try #require(outcome.writtenImage)
        let back = try #require(try CardImage(bytes: gapImage).writeBack)
        #expect(back.outcome == .refused)
        #expect(back.refusal == .sequenceGap(lastApplied: 41))
        #expect(back.lastAppliedSequence == 41)
        #expect(TestKeys.cardIssuer.meterMACVerifies(gapImage) == true)
        let overlap = GoldenCards.issuer.userCard(
            cardSerial: GoldenCards.userCardSerial, generation: 1, meterSerial: TestKeys.serial, revision: 1,
            accountNumber: 1, unitKind: .wattHours, credit: .init(firstSequence: 41, lastSequence: 42, units: 10),
            issueTime: Self.now)
        #expect(meter.insertCard(overlap, keys: Self.keys, now: Self.now).result
                == .refused(.overlapsApplied(lastApplied: 41)))
        let backwards = GoldenCards.issuer.userCard(
            cardSerial: GoldenCards.userCardSerial, generation: 1, meterSerial: TestKeys.serial, revision: 1,
            accountNumber: 1, unitKind: .wattHours, credit: .init(firstSequence: 45, lastSequence: 44, units: 10),
            issueTime: Self.now)
        #expect(meter.insertCard(backwards, keys: Self.keys, now: Self.now).result == .refused(.invalidCreditBlock))
        let litres = GoldenCards.issuer.userCard(
            cardSerial: GoldenCards.userCardSerial, generation: 1, meterSerial: TestKeys.serial, revision: 1,
            accountNumber: 1, unitKind: .litres, credit: .init(firstSequence: 42, lastSequence: 42, units: 10),
            issueTime: Self.now)
        #expect(meter.insertCard(litres, keys: Self.keys, now: Self.now).result == .refused(.wrongUnitKind))
        #expect(meter.lastAppliedSequence == 41 && meter.creditUnits == 45_300)
    }

    @Test func aReplacementCardRetiresTheOldOne() throws {
        var meter = GoldenCards.exampleMeter()
        #expect(meter.insertCard(GoldenCards.user, keys: Self.keys, now: Self.now).result
                == .creditApplied(units: 150_000, sequences: 42...43))
        // The card is lost; the replacement (generation 2, new serial) carries purchase 44.
        #expect(meter.insertCard(GoldenCards.replacement, keys: Self.keys, now: Self.now + 10).result
                == .creditApplied(units: 50_000, sequences: 44...44))
        #expect(meter.cardGeneration == 2)
        #expect(meter.revokedCardSerials == [GoldenCards.userCardSerial])
        // The old card turns up again: refused, whatever it carries.
        let old = meter.insertCard(GoldenCards.user, keys: Self.keys, now: Self.now + 20)
        #expect(old.result == .refused(.cardRevoked(cardSerial: GoldenCards.userCardSerial)))
        // An old-generation card with a serial the meter never saw is refused as replaced.
        let stray = GoldenCards.issuer.userCard(
            cardSerial: 555, generation: 1, meterSerial: TestKeys.serial, revision: 1, accountNumber: 1,
            unitKind: .wattHours, credit: .none, issueTime: Self.now)
        #expect(meter.insertCard(stray, keys: Self.keys, now: Self.now).result
                == .refused(.cardReplaced(generationInForce: 2)))
        #expect(meter.lastAppliedSequence == 44 && meter.creditUnits == 45_300 + 200_000)
    }

    @Test func aSetupCardRevokesACard() throws {
        var meter = GoldenCards.exampleMeter()
        let revoke = GoldenCards.issuer.setupCard(
            cardSerial: 900_010, revision: 1, issueTime: Self.now, meterSerial: TestKeys.serial,
            setup: .init(revokeCardSerial: GoldenCards.userCardSerial))
        #expect(meter.insertCard(revoke, keys: Self.keys, now: Self.now).result == .setupApplied(newKeyRevision: nil))
        #expect(meter.insertCard(GoldenCards.user, keys: Self.keys, now: Self.now).result
                == .refused(.cardRevoked(cardSerial: GoldenCards.userCardSerial)))
        // The replacement is accepted as the account's card (its credit waits for purchases 42...43).
        #expect(meter.insertCard(GoldenCards.replacement, keys: Self.keys, now: Self.now).result
                == .refused(.sequenceGap(lastApplied: 41)))
        #expect(meter.cardGeneration == 2 && meter.currentCardSerial == 100_002)
        // Another card of the same generation is not.
        let twin = GoldenCards.issuer.userCard(
            cardSerial: 100_003, generation: 2, meterSerial: TestKeys.serial, revision: 1, accountNumber: 1,
            unitKind: .wattHours, credit: .none, issueTime: Self.now)
        #expect(meter.insertCard(twin, keys: Self.keys, now: Self.now).result
                == .refused(.cardRevoked(cardSerial: 100_003)))
    }

    /// Revoking the card in use leaves the meter waiting for the next card, which then becomes the account's card.
    @Test func revokingTheCurrentCardLetsItsSuccessorIn() {
        var meter = GoldenCards.exampleMeter()  // card 100001 (generation 1) in use
        let revoke = GoldenCards.issuer.setupCard(
            cardSerial: 900_011, revision: 1, issueTime: Self.now, meterSerial: TestKeys.serial,
            setup: .init(revokeCardSerial: GoldenCards.userCardSerial))
        _ = meter.insertCard(revoke, keys: Self.keys, now: Self.now)
        #expect(meter.currentCardSerial == nil)
        let successor = GoldenCards.issuer.userCard(
            cardSerial: 100_009, generation: 1, meterSerial: TestKeys.serial, revision: 1, accountNumber: 1,
            unitKind: .wattHours, credit: .init(firstSequence: 42, lastSequence: 42, units: 10), issueTime: Self.now)
        #expect(meter.insertCard(successor, keys: Self.keys, now: Self.now).result
                == .creditApplied(units: 10, sequences: 42...42))
        #expect(meter.currentCardSerial == 100_009)
        #expect(meter.insertCard(GoldenCards.user, keys: Self.keys, now: Self.now).result
                == .refused(.cardRevoked(cardSerial: GoldenCards.userCardSerial)))
    }

    @Test func setupAndCheckCardsAreSignedWithTheToolKeyAndFilledByAnyMeter() throws {
        for serial: UInt32 in [TestKeys.serial, 1, 0xFFFF_FFFE] {
            var meter = PrepaidMeter(serial: serial, kind: .water, issuerID: 1, now: Self.now)
            let check = meter.insertCard(GoldenCards.check, keys: TestKeys.meter(serial), now: Self.now)
            #expect(check.result == .checkRecorded)
            let written = try #require(check.writtenImage)
            #expect(TestKeys.cardIssuer.meterMACVerifies(written) == true)
            #expect(try CardImage(bytes: written).writeBack?.meterSerial == serial)
            let setup = meter.insertCard(GoldenCards.setup, keys: TestKeys.meter(serial), now: Self.now)
            #expect(setup.result == .setupApplied(newKeyRevision: nil))
            #expect(meter.alarmThresholdUnits == 20_000 && meter.cutoffThresholdUnits == 2_000)
            #expect(meter.emergencyCreditUnits == 3_000)
        }
        // A setup card signed with a meter's card key instead of the tool key is refused.
        var meter = GoldenCards.exampleMeter()
        let wrongKey = CardIssuer.sign(GoldenCards.setup, key: Self.keys.cardIssuer)
        #expect(meter.insertCard(wrongKey, keys: Self.keys, now: Self.now).result == .refused(.authenticationFailed))
        // Alarm below cutoff is refused as a whole.
        let bad = GoldenCards.issuer.setupCard(
            cardSerial: 9, revision: 1, issueTime: Self.now,
            setup: .init(thresholds: Thresholds(alarmUnits: 1, cutoffUnits: 2), emergencyCreditUnits: 7))
        #expect(meter.insertCard(bad, keys: Self.keys, now: Self.now).result == .refused(.invalidSetup))
        #expect(meter.emergencyCreditUnits == 0)
    }

    @Test func aKeyChangeMovesTheMeterToTheNewRevisionOnly() throws {
        var meter = GoldenCards.exampleMeter()
        let outcome = meter.insertCard(GoldenCards.keyChange, keys: Self.keys, now: Self.now)
        #expect(outcome.result == .setupApplied(newKeyRevision: 2))
        #expect(meter.keyRevision == 2)
        let newKeys = try #require(outcome.newKeys)
        let expected = TestKeys.meter(revision: 2)
        #expect(newKeys.root.exportBytesForSecureStorage() == expected.root.exportBytesForSecureStorage())
        #expect(newKeys.tool.exportBytesForSecureStorage() == expected.tool.exportBytesForSecureStorage())
        // The write-back is MAC'd with the new key and says revision 2.
        let written = try #require(outcome.writtenImage)
        #expect(try CardImage(bytes: written).writeBack?.meterKeyRevision == 2)
        #expect(TestKeys.cardIssuer.meterMACVerifies(written) == true)
        // Revision 1 cards and commands are refused from now on; revision 2 ones are accepted.
        #expect(meter.insertCard(GoldenCards.user, keys: newKeys, now: Self.now).result
                == .refused(.keyRevisionMismatch(current: 2)))
        let oldCommand = CommandSigner(keys: Self.keys).applyCredit(sequence: 42, units: 1, counter: 1)
        #expect(meter.handle(applyCredit: oldCommand, keys: newKeys, now: Self.now)
                == .failure(Nak(.keyRevisionMismatch, detail: 2)))
        let newCard = GoldenCards.issuer.userCard(
            cardSerial: GoldenCards.userCardSerial, generation: 1, meterSerial: TestKeys.serial, revision: 2,
            accountNumber: 1, unitKind: .wattHours, credit: .init(firstSequence: 42, lastSequence: 43, units: 150_000),
            issueTime: Self.now)
        #expect(meter.insertCard(newCard, keys: newKeys, now: Self.now).result
                == .creditApplied(units: 150_000, sequences: 42...43))
        let newCommand = CommandSigner(keys: expected).applyCredit(sequence: 44, units: 1, counter: 1)
        #expect(meter.handle(applyCredit: newCommand, keys: newKeys, now: Self.now).map(\.outcome)
                == .success(.applied))
        // The same key-change card again (now at revision 2) is refused: it was made with revision 1.
        #expect(meter.insertCard(GoldenCards.keyChange, keys: newKeys, now: Self.now).result
                == .refused(.keyRevisionMismatch(current: 2)))
    }

    @Test func aKeyChangeWithABadCheckOrToAnOlderRevisionIsRefused() {
        var meter = GoldenCards.exampleMeter()
        var change = GoldenCards.issuer.keyChange(serial: TestKeys.serial, from: 1, to: 2)
        change.wrappedRootKey[0] ^= 1
        let tampered = GoldenCards.issuer.setupCard(cardSerial: 1, revision: 1, issueTime: Self.now,
                                                    meterSerial: TestKeys.serial, setup: .init(keyChange: change))
        #expect(meter.insertCard(tampered, keys: Self.keys, now: Self.now).result == .refused(.keyChangeRefused))
        let backwards = GoldenCards.issuer.setupCard(
            cardSerial: 1, revision: 1, issueTime: Self.now, meterSerial: TestKeys.serial,
            setup: .init(keyChange: GoldenCards.issuer.keyChange(serial: TestKeys.serial, from: 1, to: 1)))
        #expect(meter.insertCard(backwards, keys: Self.keys, now: Self.now).result == .refused(.keyChangeRefused))
        let anyMeter = GoldenCards.issuer.setupCard(
            cardSerial: 1, revision: 1, issueTime: Self.now,
            setup: .init(keyChange: GoldenCards.issuer.keyChange(serial: TestKeys.serial, from: 1, to: 2)))
        #expect(meter.insertCard(anyMeter, keys: Self.keys, now: Self.now).result == .refused(.invalidSetup))
        #expect(meter.keyRevision == 1)
    }

    /// Random and mutated images never crash the meter and are never accepted as credit.
    @Test func randomImagesAreRefusedWithoutCrashing() {
        var rng = SeededGenerator(seed: 99)
        var meter = GoldenCards.exampleMeter()
        for i in 0..<3000 {
            var image: [UInt8]
            switch i % 3 {
            case 0:
                let count = Int.random(in: 0...300, using: &rng)
                image = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 1:
                image = GoldenCards.user
                var positions = Set<Int>()
                for _ in 0..<Int.random(in: 1...8, using: &rng) {
                    positions.insert(Int.random(in: 0..<CardImage.writeBackOffset, using: &rng))
                }
                for p in positions { image[p] ^= UInt8.random(in: 1...255, using: &rng) }
            default:
                image = [0x4D, 0x47, 0x01, UInt8.random(in: 0...4, using: &rng)]
                    + (0..<252).map { _ in UInt8.random(in: 0...255, using: &rng) }
            }
            let outcome = meter.insertCard(image, keys: Self.keys, now: Self.now)
            if case .creditApplied = outcome.result {
                Issue.record("random image \(i) applied credit")
            }
        }
        #expect(meter.lastAppliedSequence == 41)
    }
}
