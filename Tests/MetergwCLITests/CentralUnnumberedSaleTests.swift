import Foundation
import MetergwTestSupport
import Testing

/// A remote sale at the centre for a meter a gateway serves has no sequence until that gateway numbers it
/// (docs/CENTRAL.md): the desk's outputs say so (JSON null, "-" in the list, the receipt's words), never a
/// sequence 0 that no meter could apply.
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralUnnumberedSaleTests {
    let url: String

    init() throws {
        let cluster = try PostgresCluster.shared()
        self.url = cluster.url(database: try cluster.createDatabase(prefix: "unnumbered"))
    }

    func ok(_ arguments: [String], environment: [String: String]? = nil) throws -> CLI.Result {
        let r = try CLI.run(arguments + ["--url", self.url], environment: environment)
        #expect(r.status == 0, "\(arguments): \(r.stderr)")
        return r
    }

    @Test func aSaleTheGatewayHasNotNumberedShowsNoSequence() throws {
        #expect(try CLI.run(["central", "migrate", "--url", self.url]).status == 0)
        _ = try self.ok(["central", "gateway", "add", "north"],
                        environment: ["METERGW_GATEWAY_PASSWORD": "north-gateway-password"])
        _ = try self.ok(["tariff", "add", "--name", "flat", "--price", "0.5", "--valid-from", "2026-01-01"])
        _ = try self.ok(["account", "add", "--name", "Li Wei"])
        _ = try self.ok(["meter", "add", "20251125", "--tariff", "flat"])
        _ = try self.ok(["meter", "assign", "20251125", "--account", "1"])
        _ = try self.ok(["central", "gateway", "assign", "20251125", "--gateway", "north"])

        let sold = try self.ok(["sell", "--account", "1", "--amount", "10.00", "--remote", "--request-id", "r-1",
                                "--json"])
        let sale = try #require(try JSONSerialization.jsonObject(with: Data(sold.stdout.utf8)) as? [String: Any])
        #expect(sale["state"] as? String == "queued", "\(sale)")
        #expect(sale["sequence"] is NSNull, "\(sale)")

        let list = try self.ok(["purchase", "list"])
        let row = try #require(list.stdout.split(separator: "\n").dropFirst().first)
        #expect(row.split(separator: " ", omittingEmptySubsequences: true).prefix(4) == ["1", "1", "-", "queued"],
                "\(list.stdout)")

        let receipt = try self.ok(["report", "receipt", "1"])
        #expect(receipt.stdout.contains("given by the meter's gateway"), "\(receipt.stdout)")
    }
}
