import MetergwTestSupport
import MeterProtocol
import Testing
@testable import Prepaid

/// Long seeded random runs of a small utility: a desk that sells and writes cards, a gateway that sends remote
/// credit over a lossy bus, customers who insert, lose and copy cards, an attacker who replays. After every step
/// and at the end, for every meter: credit + register == the units of exactly the purchases it applied, and every
/// purchase not applied is still pending (queued, or on the customer's card, or owed on a replacement card).
@Suite struct ModelBasedTests {
    static let issuer = TestKeys.cardIssuer

    struct Purchase { var units: UInt32 }

    /// The billing side's view of one meter and its customer.
    struct Account {
        var serial: UInt32
        var meter: PrepaidMeter
        var revision: UInt8 = 1
        var purchases: [Purchase] = []  // purchases[i] has sequence i + 1
        var knownLastApplied: UInt32 = 0
        var remoteQueue: [UInt32] = []
        var counter: UInt32 = 0
        var cardSerial: UInt32
        var generation: UInt16 = 1
        /// The customer's card, nil when lost (a replacement is owed).
        var card: [UInt8]?
        /// Every image this customer's cards ever held: the attacker's copies.
        var copies: [[UInt8]] = []
        /// A remote command whose answer was lost, to be resent with the same bytes.
        var unanswered: ApplyCreditRequest?

        var keys: MeterKeyring { TestKeys.issuer.meter(serial: self.serial, revision: self.revision) }
        var lastSold: UInt32 { UInt32(self.purchases.count) }

        func units(_ range: ClosedRange<UInt32>) -> UInt64 {
            range.reduce(0) { $0 + UInt64(self.purchases[Int($1) - 1].units) }
        }
    }

    struct Stats {
        var sales = 0, cardCredits = 0, remoteCredits = 0, refusals = 0, replays = 0, lost = 0, keyChanges = 0
    }

    static let now = TestKeys.time

    /// The desk writes the customer's card: it reads what the meter wrote back, then puts every purchase the
    /// meter is not known to have applied on the card as one block.
    static func deskWritesCard(_ a: inout Account, at time: UInt32) {
        if let card = a.card, let back = try? CardImage(bytes: card).writeBack,
           issuer.meterMACVerifies(card) == true, back.meterSerial == a.serial {
            a.knownLastApplied = max(a.knownLastApplied, back.lastAppliedSequence)
        }
        let block: CardImage.CreditBlock = a.knownLastApplied >= a.lastSold ? .none
            : .init(firstSequence: a.knownLastApplied + 1, lastSequence: a.lastSold,
                    units: UInt32(a.units((a.knownLastApplied + 1)...a.lastSold)))
        a.card = issuer.userCard(cardSerial: a.cardSerial, generation: a.generation, meterSerial: a.serial,
                                 revision: a.revision, accountNumber: UInt64(a.serial), unitKind: .wattHours,
                                 credit: block, issueTime: time)
        a.copies.append(a.card!)
    }

    static func insert(_ image: [UInt8], into a: inout Account, at time: UInt32, stats: inout Stats) -> Bool {
        let outcome = a.meter.insertCard(image, keys: a.keys, now: time)
        switch outcome.result {
        case .creditApplied: stats.cardCredits += 1
        case .refused: stats.refusals += 1
        default: break
        }
        if let written = outcome.writtenImage {
            a.copies.append(written)
            return image == a.card ? { a.card = written; return true }() : true
        }
        return false
    }

    static func gatewaySends(_ a: inout Account, rng: inout SeededGenerator, stats: inout Stats) {
        let request: ApplyCreditRequest
        if let pending = a.unanswered {
            request = pending  // a retry: the same bytes
        } else {
            guard let sequence = a.remoteQueue.first else { return }
            a.counter += 1
            request = CommandSigner(keys: a.keys).applyCredit(
                sequence: sequence, units: a.purchases[Int(sequence) - 1].units, counter: a.counter)
        }
        let lost = UInt8.random(in: 0..<10, using: &rng)
        if lost == 0 { a.unanswered = request; return }  // request lost on the bus: the meter saw nothing
        let result = a.meter.handle(applyCredit: request, keys: a.keys, now: now)
        if lost == 1 { a.unanswered = request; return }  // answer lost: the meter acted, the gateway does not know
        a.unanswered = nil
        switch result {
        case .success(let r):
            if r.outcome == .applied { stats.remoteCredits += 1 }
            a.knownLastApplied = max(a.knownLastApplied, r.lastAppliedSequence)
            a.remoteQueue.removeAll { $0 <= r.lastAppliedSequence }
        case .failure(let nak):
            if nak.knownCode == .sequenceGap { a.knownLastApplied = max(a.knownLastApplied, nak.detail) }
            if nak.knownCode == .keyRevisionMismatch || nak.knownCode == .replayedCommand {
                // A stale command (a key change or another command since): read the meter and sign anew.
                a.knownLastApplied = max(a.knownLastApplied, a.meter.lastSequence.lastAppliedSequence)
                a.counter = max(a.counter, a.meter.lastSequence.lastCommandCounter)
            }
            a.remoteQueue.removeAll { $0 <= a.knownLastApplied }
        }
    }

    /// The ledger: exactly-once and nothing lost.
    static func checkLedger(_ a: Account) {
        let applied = a.meter.lastAppliedSequence
        #expect(applied <= a.lastSold, "meter \(a.serial) applied a purchase never sold")
        let credited = Int64(a.meter.registerUnits) + a.meter.creditUnits
        #expect(credited == Int64(applied == 0 ? 0 : a.units(1...applied)),
                "meter \(a.serial): credit + register differs from the units of purchases 1...\(applied)")
        #expect(a.knownLastApplied <= applied)
        guard applied < a.lastSold else { return }
        let cardBlock = a.card.flatMap { try? CardImage(bytes: $0) }?.credit
        for sequence in (applied + 1)...a.lastSold {
            let onCard = cardBlock.map { !$0.isEmpty && $0.firstSequence <= sequence && sequence <= $0.lastSequence }
            // Still pending: queued for the gateway, on the customer's card, or owed on a replacement card.
            let pending = a.remoteQueue.contains(sequence) || onCard == true || a.card == nil
            #expect(pending, "meter \(a.serial): purchase \(sequence) is neither applied nor pending")
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64]) func randomUtilityRun(seed: UInt64) {
        var rng = SeededGenerator(seed: 0xA11CE + seed)
        var stats = Stats()
        var accounts = (0..<3).map { i -> Account in
            let serial = 30_000_000 + UInt32(i) * 7919
            return Account(serial: serial, meter: PrepaidMeter(serial: serial, kind: .electricity, issuerID: 1,
                                                               now: Self.now),
                           cardSerial: 500_000 + UInt32(i) * 1000)
        }
        for i in accounts.indices { Self.deskWritesCard(&accounts[i], at: Self.now) }
        var time = Self.now
        for _ in 0..<1500 {
            time += UInt32.random(in: 1...3600, using: &rng)
            let i = Int.random(in: 0..<accounts.count, using: &rng)
            var a = accounts[i]
            switch UInt8.random(in: 0..<100, using: &rng) {
            case 0..<18:  // a sale at the desk onto the card (a lost card gets its replacement)
                a.purchases.append(Purchase(units: UInt32.random(in: 1...200_000, using: &rng)))
                stats.sales += 1
                if a.card == nil { a.generation += 1; a.cardSerial += 1 }
                Self.deskWritesCard(&a, at: time)
            case 18..<30:  // a remote sale
                a.purchases.append(Purchase(units: UInt32.random(in: 1...200_000, using: &rng)))
                a.remoteQueue.append(a.lastSold)
                stats.sales += 1
            case 30..<45: Self.gatewaySends(&a, rng: &rng, stats: &stats)
            case 45..<62:  // the customer inserts the card
                if let card = a.card { _ = Self.insert(card, into: &a, at: time, stats: &stats) }
            case 62..<75: a.meter.consume(units: UInt64.random(in: 0...150_000, using: &rng), now: time)
            case 75..<79:  // the card is lost
                if a.card != nil { a.card = nil; stats.lost += 1 }
            case 79..<85:  // the customer visits the desk with the card (or for a replacement)
                if a.card == nil { a.generation += 1; a.cardSerial += 1 }
                Self.deskWritesCard(&a, at: time)
            case 85..<92:  // an attacker inserts an old copy of any card, into this meter
                let owner = accounts[Int.random(in: 0..<accounts.count, using: &rng)]
                let pool = owner.serial == a.serial ? a.copies : owner.copies
                if let copy = pool.randomElement(using: &rng) {
                    stats.replays += 1
                    let before = a.meter.lastAppliedSequence
                    _ = Self.insert(copy, into: &a, at: time, stats: &stats)
                    if a.meter.lastAppliedSequence != before {
                        // Only a block that was really next can load, and then it is the genuine next purchases.
                        #expect(a.meter.lastAppliedSequence <= a.lastSold)
                    }
                }
            case 92..<96:  // an attacker replays an old command with a fresh-looking counter it cannot sign
                var forged = CommandSigner(keys: a.keys).applyCredit(sequence: a.meter.lastAppliedSequence + 1,
                                                                     units: 999_999, counter: a.counter + 1)
                forged.auth.mac[Int.random(in: 0..<8, using: &rng)] ^= 0x01
                #expect(a.meter.handle(applyCredit: forged, keys: a.keys, now: time)
                        == .failure(Nak(.authenticationFailed)))
            case 96..<97:  // a key change by setup card at the meter
                if a.revision < 250 {
                    let card = Self.issuer.setupCard(
                        cardSerial: 900_000, revision: a.revision, issueTime: time, meterSerial: a.serial,
                        setup: .init(keyChange: Self.issuer.keyChange(serial: a.serial, from: a.revision,
                                                                      to: a.revision + 1)))
                    let outcome = a.meter.insertCard(card, keys: a.keys, now: time)
                    #expect(outcome.result == .setupApplied(newKeyRevision: a.revision + 1))
                    a.revision += 1
                    stats.keyChanges += 1
                }
            default:  // the customer tries the card in a neighbour's meter
                var other = accounts[(i + 1) % accounts.count]
                if let card = a.card, other.serial != a.serial {
                    let before = other.meter
                    #expect(!Self.insert(card, into: &other, at: time, stats: &stats))
                    #expect(other.meter.lastAppliedSequence == before.lastAppliedSequence)
                    #expect(other.meter.creditUnits == before.creditUnits)
                    accounts[(i + 1) % accounts.count] = other
                }
            }
            accounts[i] = a
            for account in accounts { Self.checkLedger(account) }
        }
        // Deliver everything: desk visits, card insertions and the gateway until nothing is pending.
        for i in accounts.indices {
            var a = accounts[i]
            for _ in 0..<20 where a.meter.lastAppliedSequence < a.lastSold || !a.remoteQueue.isEmpty {
                time += 60
                if a.card == nil { a.generation += 1; a.cardSerial += 1 }
                Self.deskWritesCard(&a, at: time)
                _ = Self.insert(a.card!, into: &a, at: time, stats: &stats)
                Self.deskWritesCard(&a, at: time)  // reads the write-back
                for _ in 0..<5 { Self.gatewaySends(&a, rng: &rng, stats: &stats) }
            }
            #expect(a.meter.lastAppliedSequence == a.lastSold, "meter \(a.serial) did not get every purchase")
            #expect(a.lastSold > 0)
            #expect(Int64(a.meter.registerUnits) + a.meter.creditUnits == Int64(a.units(1...a.lastSold)))
            Self.checkLedger(a)
            accounts[i] = a
        }
        // The run exercised what it is meant to.
        #expect(stats.sales > 300)
        #expect(stats.cardCredits > 20 && stats.remoteCredits > 20)
        #expect(stats.refusals > 20 && stats.replays > 50 && stats.lost > 5)
    }
}
