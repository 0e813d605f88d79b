import BillingStore
import Foundation
import Gateway
import KeyStore
import MeterBus
import MeterProtocol
import Prepaid

/// `metergw topup --remote`: a store purchase delivered over the bus (docs/STORE.md "Remote top-up"), by the same
/// ``CreditDelivery`` the gateway's credit queue uses: the meter's last applied sequence is read first, always,
/// and only what it does not have is sent, in sequence order.
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

        // Read the meter's last applied sequence, confirm what it has, send the rest in order (CreditDelivery).
        let delivery = CreditDelivery(
            store: db, keys: keys, operatorName: actor.name, now: { StoreCLI.now },
            crashHook: { point in if point == "credit-answered" { CrashHook.reach("topup-sent") } })
        let outcome: CreditDelivery.Outcome
        do {
            outcome = try delivery.deliver(meter: meter, address: address, upTo: target.sequence, driver: driver)
        } catch {
            switch error {
            case .bus(let bus): throw CLIError(bus: bus)
            case .store(let store): throw StoreCLI.error(store)
            case .cardPurchaseFirst:
                throw CLIError(.refused, "\(error.description); purchase \(target.id!) stays queued, run this again "
                               + "afterwards")
            case .answerLost(_, _, let cause):
                throw CLIError(CLIError(bus: cause).status, error.description.replacingOccurrences(
                    of: "the next delivery reads", with: "run the same command again: it reads"))
            case .noRemoteCredit:
                throw CLIError(.usage, error.description)
            case .centralOrderRefused:
                throw CLIError(.refused, error.description)
            }
        }
        let sent = outcome.sent.map { ($0.purchase, $0.applied) }
        let confirmed = outcome.confirmed

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
