import BillingStore
import Foundation
import Gateway
import KeyStore
import MetergwTestSupport
import PostgresNIO
import Prepaid
import StoreSync
import Testing

@testable import CentralStore

/// A meter that refuses centrally sold credit (its emulator holds another key file, so every signed command fails
/// authentication): `metergw serve` cancels the purchase, the refusal reaches the centre as a `refused` order with
/// the meter's reason and an `order-refused` conflict, and the meter never gets that credit; a meter beside it
/// with the right key gets its own order once (docs/CENTRAL.md "Refusals").
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralRefusalTests {
    @Test func aMeterRefusingCentralCreditBecomesARefusedOrderAndAConflictAtTheCentre() async throws {
        let cluster = try PostgresCluster.shared()
        let database = try cluster.createDatabase(prefix: "refusal")
        let admin = try CentralURL(parsing: cluster.url(database: database))
        let name = "refusing-\(database.replacing("_", with: "-"))"
        let password = "\(name)-central-password"
        let login = CentralDatabase.login(ofGateway: name)

        let site = try Site()
        let good = try site.addBus("good", meters: 1)
        let otherKeys = site.file("other-keys")
        _ = try KeyFile.create(at: otherKeys, issuerID: 7)
        // The last --keys wins: this meter derives its keys from another system key than the gateway signs with.
        let wrong = try site.addBus("wrongkey", meters: 1, arguments: ["--keys", otherKeys])
        let goodSerial = good.serial(ofAddress: 1)
        let wrongSerial = wrong.serial(ofAddress: 1)
        try await CentralDatabase.with(admin) { db in
            try await db.migrate()
            try await db.benchmarkFixture(meterSerials: [goodSerial, wrongSerial])
            _ = try await db.addGateway(name: name, password: password, now: 0)
            try await db.assign(meterSerials: [goodSerial, wrongSerial], toGateway: name, by: Actor("test", now: 0))
        }
        let config = try site.writeConfiguration()
        let passwordFile = site.file("central.password")
        try password.write(toFile: passwordFile, atomically: true, encoding: .utf8)
        try ("\n[central]\nurl = \"postgres://\(login)@127.0.0.1:\(cluster.port)/\(database)\"\n"
             + "password_file = \"\(passwordFile)\"\ninterval = \"1s\"\n").appendLine(toFile: config)
        let before = (good: try site.emulated("good")[1]!, wrong: try site.emulated("wrongkey")[1]!)
        let wrongAccount = try site.store.meter(String(wrongSerial)).accountId!
        let balance = try site.store.account(String(wrongAccount)).account.balanceMinor

        let gateway = try GatewayProcess(config: config, logPath: site.file("gateway.log"))
        defer { gateway.kill() }
        func sell(_ serial: UInt32, _ units: UInt64, _ request: String) async throws {
            try await CentralDatabase.with(admin) { db in
                _ = try await db.sellRemote(meterSerial: serial, units: units, amount: .fen(1_500), requestID: request,
                                            operator: "centre", now: 1)
            }
        }
        try await sell(wrongSerial, 3_000, "refused-1")
        try await sell(goodSerial, 2_000, "applied-1")
        try await Centre.eventually("refused-1 refused and applied-1 applied\n\(gateway.log)") {
            let refused = await Centre.orderState(admin, "refused-1")
            let applied = await Centre.orderState(admin, "applied-1")
            return refused == "refused" && applied == "applied"
        }
        // A later order for the refusing meter: the void that would keep its sequence whole is refused too, so
        // this order is refused in its turn instead of waiting forever.
        try await sell(wrongSerial, 1_000, "refused-2")
        try await Centre.eventually("refused-2 refused\n\(gateway.log)") {
            await Centre.orderState(admin, "refused-2") == "refused"
        }
        #expect(gateway.log.contains("central credit refused by the meter"))
        #expect(gateway.terminate() == 0)

        let orders = try await CentralDatabase.with(admin) { try await $0.remoteOrders() }
        for request in ["refused-1", "refused-2"] {
            let order = try #require(orders.first { $0.requestID == request })
            #expect(order.refusal == "meter-refused:authentication-failed", "\(order)")
        }
        let conflicts = try await CentralDatabase.with(admin) { try await $0.conflicts() }
        #expect(conflicts.map(\.kind) == ["order-refused", "order-refused"], "\(conflicts)")
        #expect(conflicts.allSatisfy { $0.meterSerial == Int64(wrongSerial) && $0.gateway == name })
        for request in ["refused-1", "refused-2"] {
            #expect(conflicts.contains { $0.detail.contains(request) && $0.detail.contains("authentication-failed") })
        }

        // The meters: the refusing one got nothing, the other exactly its order.
        let after = (good: try site.emulated("good")[1]!, wrong: try site.emulated("wrongkey")[1]!)
        func total(_ m: [String: Any]) -> Int64 { (m["credit"] as! Int64) + (m["register"] as! Int64) }
        #expect(total(after.wrong) == total(before.wrong))
        #expect(after.wrong["lastAppliedSequence"] as? Int == 0)
        #expect(total(after.good) - total(before.good) == 2_000)
        #expect(after.good["lastAppliedSequence"] as? Int == 1)

        // The gateway: both purchases cancelled, the money back to the centre (the local balance unmoved).
        let wrongMeter = try site.store.meter(String(wrongSerial)).id!
        let refused = try site.store.purchases().filter { $0.meterId == wrongMeter }
        #expect(refused.count == 2 && refused.allSatisfy { $0.state == .cancelled })
        #expect(try site.store.account(String(wrongAccount)).account.balanceMinor == balance)
        #expect(try site.store.centralOrders().compactMap(\.refusal)
                    == ["meter-refused:authentication-failed", "meter-refused:authentication-failed"])
        #expect(try site.store.check().isEmpty)
    }
}
