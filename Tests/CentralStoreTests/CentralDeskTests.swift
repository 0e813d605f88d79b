import BillingStore
import Foundation
import MetergwTestSupport
import Prepaid
import Testing

@testable import CentralStore

/// The desk on the central store where SQLite's single writer did the ordering: desks selling at once on separate
/// connections (docs/CENTRAL.md "The desk on the central store").
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralDeskTests {
    let url: CentralURL

    init() throws {
        let cluster = try PostgresCluster.shared()
        self.url = try CentralURL(parsing: cluster.url(database: try cluster.createDatabase(prefix: "desk")))
    }

    static let desk = Actor("desk", now: 0x6B06_9C88)

    /// A flat tariff, one account with meter 20251125.
    func setUp(_ db: CentralDatabase) async throws {
        try await db.migrate()
        let flat = try Tariff.flat(name: "flat", currency: .cny, unitKind: .wattHours,
                                   price: Price(majorPerThousandUnits: "0.5283", currency: .cny)!)
        _ = try await db.addTariff(flat, validFrom: 0, utcOffsetSeconds: 28800, by: Self.desk)
        _ = try await db.openAccount(name: "Li Wei", address: nil, phone: nil, number: nil, currency: .cny,
                                     by: Self.desk)
        _ = try await db.addMeter(serial: 20_251_125, kind: .electricity, tariff: "flat", bus: nil, address: nil,
                                  keyRevision: 1, lastApplied: 0, by: Self.desk)
        _ = try await db.assignMeter("20251125", to: "1", by: Self.desk)
    }

    @Test func desksSellingAtOnceTakeEachSequenceOnceAndARepeatedRequestOnce() async throws {
        try await CentralDatabase.with(self.url) { try await self.setUp($0) }
        let url = self.url
        // Two desks, each with its own connection: eight sales each, interleaved by the server, and the same
        // request from both (a double click that reached two desks).
        @Sendable func desk(_ name: String) async throws -> [BillingDatabase.SaleOutcome] {
            try await CentralDatabase.with(url) { db in
                var out: [BillingDatabase.SaleOutcome] = []
                for i in 0..<8 {
                    out.append(try await db.sell(account: "1", amount: Money(minor: 1_000 + Int64(i), .cny),
                                                 requestID: "\(name)-\(i)", mode: .remote, by: Self.desk))
                    if i == 4 {
                        out.append(try await db.sell(account: "1", amount: Money(minor: 777, .cny),
                                                     requestID: "both", mode: .remote, by: Self.desk))
                    }
                }
                return out
            }
        }
        async let a = desk("a")
        async let b = desk("b")
        let all = try await a + b
        let both = all.filter { $0.purchase.requestId == "both" }
        #expect(both.count == 2)
        #expect(Set(both.map { $0.purchase.id }).count == 1, "the repeated request sold twice")
        #expect(both.filter { !$0.repeated }.count == 1)

        let (purchases, detail, movements) = try await CentralDatabase.with(self.url) { db in
            (try await db.purchases(account: "1"), try await db.account("1"), try await db.movements(account: "1"))
        }
        #expect(purchases.count == 17)
        #expect(purchases.map(\.sequence).sorted() == Array(1...17))
        #expect(Set(purchases.map(\.requestId)).count == 17)
        // The balance is the sum of its movements, and each sale's remainder is carried into the next one.
        #expect(detail.account.balanceMinor == movements.reduce(0) { $0 + $1.amountMinor })
        #expect(detail.account.balanceMinor == purchases.max { $0.id! < $1.id! }!.remainderMinor)
        #expect(detail.pendingPurchases == 17)
    }

    @Test func aFailureOfTheCentreIsAStoreErrorThatSaysWhatToDo() async throws {
        let errors: [CentralError] = [
            .unreachable(url: "postgres://desk@127.0.0.1:1/billing", detail: "connection refused"),
            .permissionDenied("permission denied for table account"),
            .schema("the central store's schema is behind this build: run metergw central migrate"),
            .constraint("duplicate key"),
            .server(sqlState: "40P01", message: "deadlock detected"),
        ]
        let mapped = errors.map(\.storeError)
        #expect(mapped.map(\.explanation) == [
            errors[0].description, errors[1].description, errors[2].description,
            "refused by a store constraint: duplicate key",
            "the database is locked by another process (\(errors[4].description)): retry in a moment",
        ])
        guard case .unreachable = mapped[0], case .permissionDenied = mapped[1], case .schema = mapped[2] else {
            Issue.record("mapped to the wrong cases: \(mapped)")
            return
        }
    }

    @Test func aGatewaysLoginCannotWorkTheDesk() async throws {
        try await CentralDatabase.with(self.url) { try await self.setUp($0) }
        let name = "desk-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        _ = try await CentralDatabase.with(self.url) { try await $0.addGateway(name: name, password: "gateway-password-1", now: 1) }
        let gateway = CentralURL(host: self.url.host, port: self.url.port, username: CentralDatabase.login(ofGateway: name),
                                 password: "gateway-password-1", database: self.url.database)
        let refusal = try await CentralDatabase.with(gateway) { db -> StoreError? in
            do {
                _ = try await db.sell(account: "1", amount: Money(minor: 1_000, .cny), requestID: "gw", mode: .remote,
                                      by: Self.desk)
                return nil
            } catch {
                return error as? StoreError
            }
        }
        guard case .permissionDenied(let message) = refusal else {
            Issue.record("a gateway's login sold at the desk: \(String(describing: refusal))")
            return
        }
        #expect(message.contains("permission denied"))
    }
}
