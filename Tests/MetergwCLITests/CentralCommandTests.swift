import BillingStore
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
        #expect(try self.json(first.stdout)["applied"] as? [String]
                    == ["c1-central", "c2-ingest", "c3-downlink", "c4-refusals", "c5-desk",
                        "c6-delivery"])
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

    @Test func syncSendsTheOutboxAndStatusShowsTheBacklog() throws {
        #expect(try CLI.run(["central", "migrate", "--url", self.url]).status == 0)
        let name = "sync-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let password = "gateway-sync-password"
        let added = try CLI.run(["central", "gateway", "add", name, "--url", self.url],
                                environment: ["METERGW_GATEWAY_PASSWORD": password])
        #expect(added.status == 0, "\(added.stderr)")
        // The centre's desk adds the tariff and the meter, and places the meter under this gateway.
        for args in [["tariff", "add", "--name", "flat", "--price", "0.5283", "--valid-from", "2026-01-01"],
                     ["meter", "add", "20251125", "--tariff", "flat"]] {
            let r = try CLI.run(args + ["--url", self.url])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let usage = try CLI.run(["central", "gateway", "assign", "20251125", "--url", self.url])
        #expect(usage.status == 64 && usage.stderr.contains("give --gateway NAME or --none"), "\(usage.stderr)")
        let nobody = try CLI.run(["central", "gateway", "assign", "20251125", "--gateway", "no-such-gateway",
                                  "--url", self.url])
        #expect(nobody.status == 76 && nobody.stderr.contains("no gateway no-such-gateway"), "\(nobody.stderr)")
        let noMeter = try CLI.run(["central", "gateway", "assign", "20251125", "424242", "--gateway", name,
                                   "--url", self.url])
        #expect(noMeter.status == 76 && noMeter.stderr.contains("no meter with serial 424242"), "\(noMeter.stderr)")
        let assigned = try CLI.run(["central", "gateway", "assign", "20251125", "--gateway", name,
                                    "--operator", "ops", "--url", self.url, "--json"])
        #expect(assigned.status == 0, "\(assigned.stderr)")
        let change = try #require((try self.json(assigned.stdout)["meters"] as? [[String: Any]])?.first)
        // All or nothing: the refused command before did not place 20251125 either.
        #expect(change["serial"] as? Int == 20_251_125 && change["gateway"] as? String == name)
        #expect(change["previous"] is NSNull, "\(change)")
        let unchanged = try CLI.run(["central", "gateway", "assign", "20251125", "--gateway", name,
                                     "--url", self.url])
        #expect(unchanged.stdout == "meter 20251125: served by \(name) (unchanged)\n", "\(unchanged.stdout)")

        // The gateway's store: the same meter, and readings as the poller stores them.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name).sqlite").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        for args in [["tariff", "add", "--name", "flat", "--price", "0.5283", "--valid-from", "2026-01-01"],
                     ["meter", "add", "20251125", "--tariff", "flat"]] {
            let r = try CLI.run(args + ["--db", path])
            #expect(r.status == 0, "\(r.stderr)")
        }
        let store = try BillingDatabase.open(path: path)
        let meter = try #require(try store.meterIDs()[20_251_125])
        let readings = (0..<250).map { ReadingInput(meterID: meter, time: Int64($0) * 900, register: Int64($0)) }
        try store.insertReadings(readings, by: Actor("poller", now: 0))
        let before = try self.json(try CLI.run(["sync", "status", "--db", path, "--json"]).stdout)
        #expect(before["backlog"] as? Int == 250)

        var gatewayURL = URLComponents(string: self.url)!
        gatewayURL.user = "metergw_gw_" + name.replacing("-", with: "_")
        gatewayURL.password = nil
        let run = try CLI.run(["sync", "run", "--db", path, "--url", gatewayURL.string!, "--batch", "100", "--json"],
                              environment: ["PGPASSWORD": password])
        #expect(run.status == 0, "\(run.stderr)")
        let sent = try self.json(run.stdout)
        #expect(sent["readings"] as? Int == 250 && sent["batches"] as? Int == 3)
        let after = try self.json(try CLI.run(["sync", "status", "--db", path, "--json"]).stdout)
        #expect(after["backlog"] as? Int == 0 && after["ackedSequence"] as? Int == 250)
        // Again: nothing waits, nothing is sent twice.
        let again = try self.json(try CLI.run(["sync", "run", "--db", path, "--url", gatewayURL.string!, "--json"],
                                              environment: ["PGPASSWORD": password]).stdout)
        #expect(again["readings"] as? Int == 0 && again["batches"] as? Int == 0)
        // The wrong password: refused, typed, and the error is kept for status.
        let refused = try CLI.run(["sync", "run", "--db", path, "--url", gatewayURL.string!],
                                  environment: ["PGPASSWORD": "wrong-password"])
        #expect(refused.status == 77, "\(refused.stderr)")
    
        // Remote credit sold at the centre: the gateway's meter has no account here, so the gateway refuses the
        // order, and the refusal is a conflict for a person, never a lost sale.
        let sold = try CLI.run(["central", "sell", "--url", self.url, "--meter", "20251125", "--units", "1000",
                                "--amount", "5.00", "--request-id", "centre-1", "--json"])
        #expect(sold.status == 0, "\(sold.stderr)")
        #expect(try self.json(sold.stdout)["state"] as? String == "pending")
        let repeated = try CLI.run(["central", "sell", "--url", self.url, "--meter", "20251125", "--units", "1000",
                                    "--amount", "5.00", "--request-id", "centre-1", "--json"])
        #expect(try self.json(repeated.stdout)["repeated"] as? Bool == true)
        let unknown = try CLI.run(["central", "sell", "--url", self.url, "--meter", "99", "--units", "1",
                                   "--amount", "1.00"])
        #expect(unknown.status == 76 && unknown.stderr.contains("no meter with serial 99"), "\(unknown.stderr)")
        let round = try CLI.run(["sync", "run", "--db", path, "--url", gatewayURL.string!, "--json"],
                                environment: ["PGPASSWORD": password])
        #expect(round.status == 0, "\(round.stderr)")
        #expect(try self.json(round.stdout)["ordersRefused"] as? Int == 1)
        let orders = try self.json(try CLI.run(["central", "orders", "--url", self.url, "--json"]).stdout)
        let order = try #require((orders["orders"] as? [[String: Any]])?.first)
        #expect(order["state"] as? String == "refused" && order["refusal"] as? String == "no-account")
        let conflicts = try CLI.run(["central", "conflicts", "--url", self.url])
        #expect(conflicts.status == 0 && conflicts.stdout.contains("order-refused")
                && conflicts.stdout.contains("no-account"), "\(conflicts.stdout)")
        let listed = try self.json(try CLI.run(["central", "conflicts", "list", "--url", self.url, "--json"]).stdout)
        let conflictID = try #require((listed["conflicts"] as? [[String: Any]])?.first?["id"] as? Int)
        let resolved = try CLI.run(["central", "conflicts", "resolve", String(conflictID), "--resolution",
                                    "refunded at the counter", "--url", self.url])
        #expect(resolved.status == 0, "\(resolved.stderr)")
        #expect(try CLI.run(["central", "conflicts", "--url", self.url]).stdout.contains("no open conflicts"))
        let twice = try CLI.run(["central", "conflicts", "resolve", String(conflictID), "--resolution", "again",
                                 "--url", self.url])
        #expect(twice.status == 76, "\(twice.stderr)")
        // The centre's view of every gateway: acknowledged, backlog as last reported, lag, open orders.
        let status = try CLI.run(["sync", "status", "--url", self.url, "--json"])
        #expect(status.status == 0, "\(status.stderr)")
        let row = try #require((try self.json(status.stdout)["gateways"] as? [[String: Any]])?.first)
        #expect(row["name"] as? String == name && row["ackedSequence"] as? Int == 251 && row["backlog"] as? Int == 0
                && row["openOrders"] as? Int == 0)
        // Its rounds reached the centre: when it was last heard from, and no error.
        #expect(row["lastRoundAt"] is Int && row["lagSeconds"] is Int && row["lastError"] is NSNull, "\(row)")
        let table = try CLI.run(["sync", "status", "--url", self.url])
        #expect(table.stdout.contains(name) && table.stdout.contains("open orders"), "\(table.stdout)")
    }
}
