import BillingStore
import Foundation
import MetergwTestSupport
import PostgresNIO
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// Refusals after acceptance flow up (c4-refusals, v6-refusals), and the centre's view of a gateway's sync is true
/// after it recovers with nothing to send (docs/CENTRAL.md "Refusals", "Sync status and metrics").
extension DownlinkTests {
    @Test func aCentralOrderCancelledAtTheGatewayIsRefusedAtTheCentreForAPerson() async throws {
        let north = self.name("north")
        let serial: UInt32 = 41_000_001
        try await self.centre([north: [serial]])
        let store = try self.gatewayStore([serial])
        let sync = OutboxSync(store: store, central: self.gatewayURL(north))
        let sold = try await self.sell(serial, units: 3_000, request: "cancel-me")
        _ = try await sync.drain(now: { 200 })
        #expect(try await self.order("cancel-me").state == "accepted")

        let account = try store.meter(String(serial)).accountId!
        let balance = try store.account(String(account)).account.balanceMinor
        let purchase = try #require(try store.purchases().first)
        _ = try store.cancel(purchase: purchase.id!, by: Actor("clerk", now: 300))
        // The money was paid at the centre: it goes back there, not onto the local balance.
        #expect(try store.account(String(account)).account.balanceMinor == balance)
        #expect(try store.check().isEmpty)
        #expect(try store.centralOrders().map(\.refusal) == [BillingDatabase.cancelledAtGateway])

        _ = try await sync.drain(now: { 400 })
        let order = try await self.order("cancel-me")
        #expect(order.state == "refused")
        #expect(order.refusal == "cancelled-at-gateway")
        let conflicts = try await CentralDatabase.with(self.admin) { try await $0.conflicts() }
        #expect(conflicts.count == 1)
        #expect(conflicts.first?.kind == "order-refused")
        #expect(conflicts.first?.meterSerial == Int64(serial))
        #expect(conflicts.first?.detail.contains("\"order\": \(sold.id)") == true, "\(conflicts)")
        #expect(conflicts.first?.detail.contains("cancelled-at-gateway") == true)
        // Resending changes nothing: one refusal, one conflict.
        _ = try await sync.drain(now: { 500 })
        #expect(try await CentralDatabase.with(self.admin) { try await $0.conflicts(all: true) }.count == 1)
        #expect(try await self.order("cancel-me").state == "refused")
        #expect(try store.syncState().backlog == 0)
    }

    @Test func theCentreShowsALastErrorUntilTheNextSuccessfulRoundEvenAnEmptyOne() async throws {
        let south = self.name("south")
        let serial: UInt32 = 41_000_002
        try await self.centre([south: [serial]])
        let store = try self.gatewayStore([serial])
        let sync = OutboxSync(store: store, central: self.gatewayURL(south))
        _ = try await self.sell(serial, units: 1_000, request: "something-to-send")
        _ = try await sync.drain(now: { 1_000 })
        let acked = try store.syncState().ackedSequence
        #expect(acked > 0)
        func gateway() async throws -> CentralGateway {
            try await CentralDatabase.with(self.admin) { try await $0.gateways() }.first { $0.name == south }!
        }
        #expect(try await gateway().lastRoundAt == 1_000)
        #expect(try await gateway().lastError == nil)

        // The centre is restored from an older backup: it has lost what it acknowledged. The gateway sends
        // nothing, and both sides say why.
        try await CentralDatabase.with(self.admin) { db in
            try await db.connection.execute(PostgresQuery(unsafeSQL: """
                UPDATE gateway_sync SET acked_sequence = 0
                WHERE gateway_id = (SELECT id FROM gateway WHERE name = '\(south)')
                """), logger: db.logger)
        }
        await #expect(throws: OutboxSync.Failure.self) { _ = try await sync.drain(now: { 2_000 }) }
        let failing = try await gateway()
        #expect(failing.lastError?.contains("acknowledges outbox entries up to 0") == true, "\(failing)")
        #expect(failing.lastRoundAt == 1_000)
        #expect(try store.syncState().lastError != nil)

        // Put right at the centre; the next round has nothing to send and clears both.
        try await CentralDatabase.with(self.admin) { db in
            try await db.connection.execute(PostgresQuery(unsafeSQL: """
                UPDATE gateway_sync SET acked_sequence = \(acked)
                WHERE gateway_id = (SELECT id FROM gateway WHERE name = '\(south)')
                """), logger: db.logger)
        }
        let run = try await sync.drain(now: { 3_000 })
        #expect(run.batches == 0)
        let recovered = try await gateway()
        #expect(recovered.lastError == nil)
        #expect(recovered.lastRoundAt == 3_000)
        #expect(recovered.lastContactAt == 3_000)
        #expect(recovered.reportedBacklog == 0)
        #expect(try store.syncState().lastError == nil)
    }
}
