import Foundation
import MetergwTestSupport
import Testing

/// `topup --remote --url` (docs/CENTRAL.md "Remote credit for a meter no gateway serves"): the centre's queued
/// purchases of a meter that no gateway serves, delivered over a real emulated bus by the same `CreditDelivery` as
/// on SQLite, exactly once across SIGKILLs at `topup-sold` and `topup-sent`; a meter a gateway serves is refused
/// before anything is sold, and such a meter cannot go under a gateway while the centre's credit is queued.
@Suite(.serialized, .enabled(if: PostgresCluster.shouldRun, "\(PostgresCluster.unavailableReason ?? "")"))
struct TopupURLTests {
    let cluster: PostgresCluster
    let url: String
    let dir: URL
    let emulator: EmulatorProcess

    init() throws {
        self.cluster = try PostgresCluster.shared()
        self.url = self.cluster.url(database: try self.cluster.createDatabase(prefix: "topupurl"))
        self.dir = try EmulatorProcess.makeDirectory()
        // Two meters: 1 no gateway serves, 2 under a gateway.
        self.emulator = try EmulatorProcess(
            directory: self.dir,
            arguments: ["--meters", "2", "--state", self.dir.appendingPathComponent("state.json").path])
    }

    @discardableResult
    func run(_ arguments: [String], crashAt: String? = nil) throws -> CLI.Result {
        var env = ["METERGW_CENTRAL_URL": self.url, "USER": "technician",
                   "METERGW_GATEWAY_PASSWORD": "gateway-topup-password"]
        if let crashAt { env["METERGW_CRASH_AT"] = crashAt }
        return try CLI.run(arguments, environment: env)
    }

    func json(_ arguments: [String]) throws -> [String: Any] {
        let r = try self.run(arguments + ["--json"])
        #expect(r.status == 0, "\(arguments): \(r.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                            "\(arguments): \(r.stdout) \(r.stderr)")
    }

    func purchaseStates(account: String) throws -> [String] {
        let r = try self.run(["purchase", "list", "--account", account, "--json", "--url", self.url])
        let all = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        return all.map { $0["state"] as? String ?? "?" }
    }

    func emulatorLastApplied(_ address: Int) throws -> Int? {
        let text = try EmulatorProcess.command(["status", "--link", self.emulator.link]).output
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let meters = object?["devices"] as? [[String: Any]] ?? []
        return meters.first { $0["address"] as? Int == address }?["lastAppliedSequence"] as? Int
    }

    @Test func theCentresCreditForAnUnservedMeterIsDeliveredOnceAcrossKills() throws {
        let (one, two) = (self.emulator.serial(ofAddress: 1), self.emulator.serial(ofAddress: 2))
        let gateway = "topup-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        for args in [["central", "migrate"],
                     ["tariff", "add", "--name", "tier", "--tier", "10000:0.50", "--tier", "1.00",
                      "--valid-from", "2020-01-01"],
                     ["account", "add", "--name", "Li Wei"], ["account", "add", "--name", "Wang Fang"],
                     ["meter", "add", String(one), "--tariff", "tier", "--address", "1"],
                     ["meter", "add", String(two), "--tariff", "tier", "--address", "2"],
                     ["meter", "assign", String(one), "--account", "1"],
                     ["meter", "assign", String(two), "--account", "2"],
                     ["central", "gateway", "add", gateway],
                     ["central", "gateway", "assign", String(two), "--gateway", gateway]] {
            let r = try self.run(args + ["--url", self.url])
            #expect(r.status == 0, "\(args): \(r.stderr)")
        }
        let bus = ["--port", self.emulator.link, "--keys", self.emulator.keyFile, "--url", self.url]

        // Sold at the centre's desk: numbered here, and it says who delivers it.
        let sold = try self.run(["sell", "--account", "1", "--amount", "10.00", "--remote", "--request-id", "c-1",
                                 "--url", self.url])
        #expect(sold.status == 0, "\(sold.stderr)")
        #expect(sold.stdout.contains("no gateway serves meter \(one)") && sold.stdout.contains("topup --remote --url"))
        let soldJSON = try self.json(["sell", "--account", "1", "--amount", "10.00", "--remote", "--request-id",
                                      "c-1", "--url", self.url])
        let delivery = soldJSON["delivery"] as? [String: Any]
        #expect(delivery?["gateway"] is NSNull && delivery?["deliveredBy"] as? String == "metergw topup --remote --url")
        #expect(soldJSON["sequence"] as? Int == 1 && soldJSON["state"] as? String == "queued")

        // Its gateway may not take the meter while that credit is queued.
        let assign = try self.run(["central", "gateway", "assign", String(one), "--gateway", gateway, "--url", self.url])
        #expect(assign.status == 76 && assign.stderr.contains("topup --remote --url"), "\(assign.stderr)")

        // Delivered: the latest queued purchase (no --amount).
        let first = try self.json(["topup", "--remote", "--account", "1"] + bus)
        #expect(first["state"] as? String == "applied" && first["sequence"] as? Int == 1)
        #expect((first["sent"] as? [[String: Any]])?.first?["outcome"] as? String == "applied")

        // Killed after the meter's answer, before the centre recorded it: the rerun confirms, sends nothing.
        let killedSent = try self.run(["topup", "--remote", "--account", "1", "--amount", "5.00", "--request-id",
                                       "c-2"] + bus, crashAt: "topup-sent")
        #expect(killedSent.status == 9, "\(killedSent.stderr)")
        #expect(try self.purchaseStates(account: "1") == ["applied", "queued"])
        #expect(try self.emulatorLastApplied(1) == 2)
        let rerunSent = try self.json(["topup", "--remote", "--account", "1", "--amount", "5.00", "--request-id",
                                       "c-2"] + bus)
        #expect(rerunSent["state"] as? String == "applied" && rerunSent["repeated"] as? Bool == true)
        #expect((rerunSent["sent"] as? [Any])?.isEmpty == true, "the rerun must not send again: \(rerunSent)")
        #expect(rerunSent["confirmed"] as? [Int] == [2])

        // Killed after the sale, before anything was sent: the rerun sends it, once.
        let killedSold = try self.run(["topup", "--remote", "--account", "1", "--amount", "3.00", "--request-id",
                                       "c-3"] + bus, crashAt: "topup-sold")
        #expect(killedSold.status == 9, "\(killedSold.stderr)")
        #expect(try self.purchaseStates(account: "1") == ["applied", "applied", "queued"])
        #expect(try self.emulatorLastApplied(1) == 2)
        let rerunSold = try self.json(["topup", "--remote", "--account", "1", "--amount", "3.00", "--request-id",
                                       "c-3"] + bus)
        #expect(rerunSold["repeated"] as? Bool == true && rerunSold["state"] as? String == "applied")
        #expect((rerunSold["sent"] as? [[String: Any]])?.map { $0["sequence"] as? Int } == [3])
        #expect(try self.emulatorLastApplied(1) == 3)
        let meter = try self.json(["meter", "show", String(one), "--url", self.url])
        #expect(meter["lastAppliedSequence"] as? Int == 3, "\(meter)")

        // Nothing queued any more; then the meter may go under the gateway.
        let nothing = try self.run(["topup", "--remote", "--account", "1"] + bus)
        #expect(nothing.status == 66 && nothing.stderr.contains("no queued purchase"), "\(nothing.stderr)")

        // A meter the gateway serves: refused before anything is sold or sent.
        let served = try self.run(["topup", "--remote", "--account", "2", "--amount", "1.00", "--request-id", "g-1"]
                                  + bus)
        #expect(served.status == 76, "\(served.stderr)")
        #expect(served.stderr.contains("served by gateway \(gateway)") && served.stderr.contains("sync status --url"))
        #expect(try self.purchaseStates(account: "2").isEmpty)
        #expect(try self.emulatorLastApplied(2) == 0)
        // Sold at the desk instead, it names the gateway that delivers it, and says nothing of topup.
        let gatewaySale = try self.run(["sell", "--account", "2", "--amount", "1.00", "--remote", "--request-id",
                                        "g-1", "--url", self.url])
        #expect(gatewaySale.status == 0 && !gatewaySale.stdout.contains("no gateway serves"), "\(gatewaySale.stderr)")
        let gatewayJSON = try self.json(["sell", "--account", "2", "--amount", "1.00", "--remote", "--request-id",
                                         "g-1", "--url", self.url])
        #expect((gatewayJSON["delivery"] as? [String: Any])?["gateway"] as? String == gateway)
        #expect(gatewayJSON["repeated"] as? Bool == true)

        let moved = try self.run(["central", "gateway", "assign", String(one), "--gateway", gateway, "--url", self.url])
        #expect(moved.status == 0, "\(moved.stderr)")
    }
}
