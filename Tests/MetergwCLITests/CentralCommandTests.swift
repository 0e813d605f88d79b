import Foundation
import MetergwTestSupport
import Testing

/// `metergw central` against a real PostgreSQL cluster (MetergwTestSupport.PostgresCluster).
@Suite(.enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct CentralCommandTests {
    let cluster: PostgresCluster
    let url: String

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.url = self.cluster.url(database: try self.cluster.createDatabase(prefix: "cli"))
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func migrateTwiceThenAddAndListGateways() throws {
        let first = try CLI.run(["central", "migrate", "--url", self.url, "--json"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(try self.json(first.stdout)["applied"] as? [String] == ["c1-central", "c2-ingest"])
        // Again, by the environment variable: nothing to do.
        let second = try CLI.run(["central", "migrate"], environment: ["METERGW_CENTRAL_URL": self.url])
        #expect(second.status == 0 && second.stdout.contains("schema up to date"), "\(second.stderr)")

        let name = "cli-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let passwordFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(name).pw")
        try "a-long-gateway-password\n".write(to: passwordFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: passwordFile) }
        let added = try CLI.run(["central", "gateway", "add", name, "--password-file", passwordFile.path,
                                 "--url", self.url, "--json"])
        #expect(added.status == 0, "\(added.stderr)")
        #expect(try self.json(added.stdout)["login"] as? String == "metergw_gw_" + name.replacing("-", with: "_"))
        // The same name again is refused by the store's rules, with its own exit status.
        let twice = try CLI.run(["central", "gateway", "add", name, "--url", self.url],
                                environment: ["METERGW_GATEWAY_PASSWORD": "another-long-password"])
        #expect(twice.status == 76, "\(twice.stderr)")
        let list = try CLI.run(["central", "gateway", "list", "--url", self.url, "--json"])
        let gateways = try #require(try self.json(list.stdout)["gateways"] as? [[String: Any]])
        #expect(gateways.map { $0["name"] as? String } == [name])
        #expect(gateways.first?["ackedSequence"] as? Int == 0)
    }

    @Test func errorsSayWhatHappenedWithDistinctStatuses() throws {
        let unreachable = try CLI.run(["central", "migrate", "--url", "postgres://u:p@127.0.0.1:1/db"])
        #expect(unreachable.status == 69 && unreachable.stderr.contains("cannot reach"), "\(unreachable.stderr)")
        #expect(!unreachable.stderr.contains("u:p@"), "the password leaked into the message")
        let malformed = try CLI.run(["central", "migrate", "--url", "mysql://u@h/db"])
        #expect(malformed.status == 64 && malformed.stderr.contains("scheme"), "\(malformed.stderr)")
        let missing = try CLI.run(["central", "migrate"], environment: ["METERGW_CENTRAL_URL": ""])
        #expect(missing.status != 0)
        let wrongPassword = self.url.replacing(self.cluster.adminPassword, with: "wrong")
        let refused = try CLI.run(["central", "gateway", "list", "--url", wrongPassword])
        #expect(refused.status == 77 && refused.stderr.contains("refused the login"), "\(refused.stderr)")
    }
}
