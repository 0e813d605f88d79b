import BillingStore
import CentralStore
import Foundation
import Gateway
import KeyStore
import MeterBus
import MeterProtocol
import Prepaid

/// `metergw topup --remote`: a store purchase delivered over the bus (docs/STORE.md "Remote top-up"), by the same
/// ``CreditDelivery`` the gateway's credit queue uses: the meter's last applied sequence is read first, always,
/// and only what it does not have is sent, in sequence order. On the central store (`--url`) it delivers the
/// centre's purchases of a meter no gateway serves; a meter a gateway serves is refused before anything is sold
/// (its gateway numbers and delivers its credit).
struct RemoteTopup {
    let command: Topup

    func run() throws {
        switch try self.command.desk.choice() {
        case .sqlite:
            let db = try self.command.desk.store.open()
            try self.deliver(desk: db, ledger: db, central: nil)
        case .central(let url):
            let db = try Blocking.run { try await CentralDatabase.connect(url) }
            defer { Blocking.wait { await db.close() } }
            try Blocking.run { try await db.requireCurrentSchema() }
            try self.deliver(desk: db, ledger: CentralCreditLedger(db: db), central: db)
        }
    }

    private func deliver(desk: any BillingDesk, ledger: any CreditLedger, central: CentralDatabase?) throws {
        let actor = self.command.desk.actor
        let account = self.command.account!
        let detail = try Blocking.run { try await desk.account(account) }
        guard let meter = detail.meter else { throw StoreCLI.error(.accountHasNoMeter(detail.account.id!)) }
        if let central, let gateway = try Blocking.run({ try await central.servingGateway(meter: "id:\(meter.id!)") }) {
            throw StoreCLI.error(.deliveredByGateway(serial: meter.serial, gateway: gateway))
        }
        let address = self.command.meter?.address
            ?? meter.address.map { .bus(UInt8($0), serial: UInt32(meter.serial)) } ?? .serial(UInt32(meter.serial))

        // The purchase to deliver: a new sale, or the latest queued one.
        var sold: BillingDatabase.SaleOutcome?
        if let amount = self.command.amount {
            let money = try StoreCLI.run { try Amount.parse(amount, currency: StoreCurrency.named(detail.account.currency)) }
            let requestID = self.command.requestId ?? UUID().uuidString.lowercased()
            sold = try Blocking.run {
                try await desk.sell(account: account, amount: money, requestID: requestID, mode: .remote, by: actor)
            }
            CrashHook.reach("topup-sold")
        }
        let accountID = String(detail.account.id!)
        let all = try Blocking.run { try await desk.purchases(account: accountID) }
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
            store: ledger, keys: keys, operatorName: actor.name, now: { StoreCLI.now },
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

        let targetID = target.id!
        let final = try Blocking.run { try await desk.purchase(targetID) }
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

/// The central store as `CreditDelivery`'s synchronous ledger: each call waits for the async one on the command's
/// single connection (the command line only waits; the bus is its own).
struct CentralCreditLedger: CreditLedger {
    let db: CentralDatabase

    func purchases(meterID: Int64) throws(StoreError) -> [Purchase] {
        try self.wait { [db] () async throws(StoreError) in try await db.purchases(meterID: meterID) }
    }

    func markApplied(meter reference: String, upTo sequence: UInt32, source: String, by actor: Actor)
        throws(StoreError) -> [Purchase]
    {
        try self.wait { [db] () async throws(StoreError) in
            try await db.markApplied(meter: reference, upTo: sequence, source: source, by: actor)
        }
    }

    /// The centre's own purchases are the desk's: one the meter refuses stays queued for the desk to decide (as a
    /// gateway's own desk sale does), so there is never an order to refuse back. Nothing is written.
    func refuseCentralPurchase(_ id: Int64, reason: String, by actor: Actor) throws(StoreError) -> Int64? { nil }

    private func wait<T: Sendable>(_ body: @escaping @Sendable () async throws(StoreError) -> T) throws(StoreError)
        -> T
    {
        try Blocking.wait { () async -> Result<T, StoreError> in
            do throws(StoreError) { return .success(try await body()) } catch { return .failure(error) }
        }.get()
    }
}
