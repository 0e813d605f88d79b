import BillingStore
import Foundation
import KeyStore
import MeterBus
import MeterProtocol
import Prepaid

/// `metergw topup --remote`: a store purchase delivered over the bus (docs/STORE.md "Remote top-up").
///
/// The meter's last applied sequence is read first, always: it confirms what the meter already has (a lost answer,
/// a crash after sending), and nothing is sent for those. The rest goes in sequence order, one signed APPLY_CREDIT
/// each (a cancelled purchase is a void: zero units), and each "applied" or "already applied" is marked applied.
struct RemoteTopup {
    let command: Topup

    func run() throws {
        let db = try self.command.store.open()
        let actor = self.command.store.actor
        let account = self.command.account!
        let detail = try StoreCLI.run { try db.account(account) }
        guard let meter = detail.meter else { throw StoreCLI.error(.accountHasNoMeter(detail.account.id!)) }
        let address = self.command.meter?.address
            ?? meter.address.map { .bus(UInt8($0), serial: UInt32(meter.serial)) } ?? .serial(UInt32(meter.serial))

        // The purchase to deliver: a new sale, or the latest queued one.
        var sold: BillingDatabase.SaleOutcome?
        if let amount = self.command.amount {
            let money = try StoreCLI.run { try Amount.parse(amount, currency: StoreCurrency.named(detail.account.currency)) }
            let requestID = self.command.requestId ?? UUID().uuidString.lowercased()
            sold = try StoreCLI.run { try db.sell(account: account, amount: money, requestID: requestID, mode: .remote, by: actor) }
            CrashHook.reach("topup-sold")
        }
        let all = try StoreCLI.run { try db.purchases(account: String(detail.account.id!)) }
            .filter { $0.meterId == meter.id }.sorted { $0.sequence < $1.sequence }
        guard let target = sold?.purchase ?? all.last(where: { $0.state == .queued }) else {
            throw CLIError(.notFound, "account \(account) has no queued purchase: give --amount to sell one")
        }
        guard target.mode == .remote else {
            throw CLIError(.refused, "purchase \(target.id!) is a card purchase: it travels on the card")
        }

        let keys = try KeyFileOption.load(self.command.keys)
        let session = try self.command.bus.session()
        defer { session.close() }
        let driver = NativeDriver(session: session)

        // 1. What the meter has: confirm it, send nothing for it.
        var state = try BusFailure.map { () throws(BusError) in try driver.readSequence(address) }
        var confirmed = try StoreCLI.run {
            try db.markApplied(meter: String(meter.serial), upTo: state.lastAppliedPurchase, source: "reading", by: actor)
        }
        // 2. The rest, in sequence order, up to the target.
        var counter = (state.lastCommandCounter ?? 0) &+ 1
        let revision = UInt8(clamping: state.keyRevision ?? 1)
        var sent: [(Purchase, Bool)] = []
        for p in all where Int64(state.lastAppliedPurchase) < p.sequence && p.sequence <= target.sequence {
            let units: UInt32
            switch p.state {
            case .queued: units = UInt32(p.units)
            case .cancelled: units = 0  // a void keeps the meter's sequence without a gap
            case .applied: continue
            case .created, .written:
                throw CLIError(.refused, "purchase \(p.id!) (sequence \(p.sequence)) is on the customer's card and "
                               + "the meter needs it first: insert the card into the meter (or upload it at the "
                               + "desk), then run this again; purchase \(target.id!) stays queued")
            }
            let signer = KeyFileSigner(keys: keys, revision: revision, counter: counter)
            counter &+= 1
            do {
                let outcome = try BusFailure.map { () throws(BusError) in
                    try driver.applyCredit(address, purchaseSequence: UInt32(p.sequence), units: units, signer: signer)
                }
                CrashHook.reach("topup-sent")
                confirmed += try StoreCLI.run {
                    try db.markApplied(meter: String(meter.serial), upTo: UInt32(p.sequence), source: "remote", by: actor)
                }
                sent.append((p, outcome.applied))
            } catch let error as CLIError where error.status == .noAnswer || error.status == .ioError
                || error.status == .dataError
            {
                // The answer was lost: the meter may or may not have applied it. Read, never resend blindly.
                let after = try? BusFailure.map { () throws(BusError) in try driver.readSequence(address) }
                guard let after, Int64(after.lastAppliedPurchase) >= p.sequence else {
                    throw CLIError(error.status, "\(error.message)\nthe answer to purchase \(p.id!) (sequence "
                                   + "\(p.sequence)) was lost and the meter "
                                   + (after == nil ? "could not be read" : "has not applied it")
                                   + ": it stays queued; run the same command again (it reads the meter's last "
                                   + "applied sequence before sending anything)")
                }
                state = after
                confirmed += try StoreCLI.run {
                    try db.markApplied(meter: String(meter.serial), upTo: UInt32(p.sequence), source: "reading", by: actor)
                }
                sent.append((p, true))
            }
        }

        let final = try StoreCLI.run { try db.purchase(target.id!) }
        if self.command.bus.json {
            var object = StoreCLI.purchaseJSON(final, repeated: sold?.repeated)
            if case .object(var members) = object {
                members.append(("meter", .int(meter.serial)))
                members.append(("sent", .array(sent.map { p, applied in
                    .object([("purchase", .int(p.id!)), ("sequence", .int(p.sequence)),
                             ("outcome", .string(applied ? "applied" : "already-applied"))])
                })))
                members.append(("confirmed", .array(confirmed.map { .int($0.id!) })))
                object = .object(members)
            }
            Output.line(object.rendered())
        } else {
            for (p, applied) in sent {
                Output.line("meter \(meter.serial): purchase \(p.id!) (sequence \(p.sequence), \(p.units) "
                            + "\(p.unitSymbol)) " + (applied ? "applied" : "was already applied"))
            }
            for p in confirmed where !sent.contains(where: { $0.0.id == p.id }) {
                Output.line("meter \(meter.serial): purchase \(p.id!) (sequence \(p.sequence)) confirmed applied")
            }
            Output.line("purchase \(final.id!): \(final.state.rawValue)")
        }
    }
}
