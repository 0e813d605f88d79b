import Foundation
import MetergwTestSupport
import Testing

/// The billing store's desk commands, run as a separate process on a real SQLite file: human and `--json` output,
/// exit statuses, and sales killed with SIGKILL at every named step (`METERGW_CRASH_AT`, docs/STORE.md).
@Suite struct StoreCommandTests {
    /// 2026-11-25T08:30:00Z.
    static let now = "1795595400"

    struct Desk {
        let db: String

        init() throws {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-store-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            self.db = dir.appendingPathComponent("billing.sqlite").path
        }

        @discardableResult
        func run(_ arguments: [String], crashAt: String? = nil) throws -> CLI.Result {
            var env = ["METERGW_DB": self.db, "METERGW_NOW": StoreCommandTests.now, "USER": "clerk"]
            if let crashAt { env["METERGW_CRASH_AT"] = crashAt }
            return try CLI.run(arguments, environment: env)
        }

        func json(_ arguments: [String]) throws -> [String: Any] {
            let r = try self.run(arguments + ["--json"])
            #expect(r.status == 0, "\(arguments): \(r.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        }

        /// Tariff "flat" at 0.5283 yuan/kWh, account 1 (Li Wei) with meter 20251125.
        func setUp() throws {
            for args in [["tariff", "add", "--name", "flat", "--price", "0.5283", "--valid-from", "2026-01-01"],
                         ["account", "add", "--name", "Li Wei"],
                         ["meter", "add", "20251125", "--tariff", "flat"],
                         ["meter", "assign", "20251125", "--account", "1"]] {
                let r = try self.run(args)
                #expect(r.status == 0, "\(args): \(r.stderr)")
            }
        }
    }

    @Test func accountAddPrintsTheNewAccountWithItsID() throws {
        let desk = try Desk()
        let account = try desk.json(["account", "add", "--name", "Wang Fang"])
        #expect(account["id"] as? Int == 1 && account["number"] as? Int == 10_000_001)
        #expect(account["name"] as? String == "Wang Fang" && account["state"] as? String == "open")
        #expect((account["balance"] as? [String: Any])?["text"] as? String == "0.00")
        let human = try desk.run(["account", "add", "--name", "Zhang San"])
        #expect(human.stdout == "opened account 2 (number 10000002): Zhang San\n")
        let list = try desk.run(["account", "list"])
        #expect(list.stdout.contains("10000002   open    0.00 CNY") && list.stdout.contains("Zhang San"))
    }

    @Test func sellRemotePrintsAnExactReceiptAndIsIdempotent() throws {
        let desk = try Desk()
        try desk.setUp()
        let r = try desk.run(["sell", "--account", "1", "--amount", "100.00", "--remote", "--request-id", "r-1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout == """
            metergw prepaid receipt
            purchase    1
            time        2026-11-25 16:30:00 +08:00
            account     10000001 Li Wei
            meter       20251125 (electricity)
            sequence    1
            paid        100.00 CNY
            units       189286 Wh (189.286 kWh)
            value       100.00 CNY
            remainder   0.00 CNY (kept on the account)
            delivery    queued: the gateway sends it to the meter
            request id  r-1
            operator    clerk

            """)
        let again = try desk.json(["sell", "--account", "1", "--amount", "100.00", "--remote", "--request-id", "r-1"])
        #expect(again["id"] as? Int == 1 && again["repeated"] as? Bool == true)
        #expect((again["units"] as? [String: Any])?["count"] as? Int == 189_286)
        let conflict = try desk.run(["sell", "--account", "1", "--amount", "50.00", "--remote", "--request-id", "r-1"])
        #expect(conflict.status == 76 && conflict.stderr.contains("already used for purchase 1"))
        let check = try desk.run(["db", "check"])
        #expect(check.status == 0 && check.stdout == "ok: integrity and every invariant hold\n")
    }

    @Test(arguments: [
        (["--amount", "100.001", "--remote"], Int32(64), "CNY has 2 decimal places"),
        (["--amount", "0", "--remote"], 64, "must be more than zero"),
        (["--amount=-5.00", "--remote"], 64, "must be more than zero"),
        (["--amount", "10", "--remote", "--account", "9"], 66, "no account 9"),
        (["--amount", "10"], 64, "exactly one of --remote or --writer"),
        (["--amount", "10", "--writer", "/dev/null", "--keys", "/nonexistent/keys"], 66, "no key file at"),
    ])
    func badSalesAreTypedErrors(_ extra: [String], _ status: Int32, _ message: String) throws {
        let desk = try Desk()
        try desk.setUp()
        let args = extra.contains("--account") ? ["sell"] + extra : ["sell", "--account", "1"] + extra
        let r = try desk.run(args)
        #expect(r.status == status, "\(r.stderr)")
        #expect(r.stderr.contains(message), "\(r.stderr)")
        let purchases = try desk.run(["purchase", "list", "--json"])
        #expect(purchases.stdout == "[]\n")
    }

    @Test func closedAccountsRefuseSalesAndCancelRefunds() throws {
        let desk = try Desk()
        try desk.setUp()
        _ = try desk.run(["sell", "--account", "1", "--amount", "10.00", "--remote", "--request-id", "x"])
        let pending = try desk.run(["account", "close", "1"])
        #expect(pending.status == 76 && pending.stderr.contains("not yet applied"))
        let cancel = try desk.run(["purchase", "cancel", "1"])
        #expect(cancel.stdout == "purchase 1 cancelled: 10.00 CNY back on the account\n")
        let closed = try desk.json(["account", "close", "1", "--payout"])
        #expect(closed["state"] as? String == "closed")
        let sale = try desk.run(["sell", "--account", "1", "--amount", "10.00", "--remote"])
        #expect(sale.status == 76 && sale.stderr.contains("account 1 is closed"))
        #expect(try desk.run(["db", "check"]).status == 0)
    }

    @Test func dbCheckFailsOnABrokenInvariantAndBackupMakesACheckedCopy() throws {
        let desk = try Desk()
        try desk.setUp()
        _ = try desk.run(["sell", "--account", "1", "--amount", "10.00", "--remote", "--request-id", "x"])
        let copy = desk.db + ".backup"
        let backup = try desk.run(["db", "backup", copy])
        #expect(backup.status == 0 && backup.stdout == "backed up to \(copy) (checked)\n")
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        sqlite.arguments = ["python3", "-c", """
            import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("UPDATE account SET balanceMinor = 7"); \
            c.commit()
            """, desk.db]
        try sqlite.run()
        sqlite.waitUntilExit()
        let check = try desk.run(["db", "check", "--json"])
        #expect(check.status == 65)
        #expect(check.stdout.contains("\"invariant\":\"balance-equals-movements\""))
        let original = try CLI.run(["db", "check", "--db", copy])
        #expect(original.status == 0)
    }

    /// A sale killed at every step: afterwards the store checks clean, holds at most one purchase for the request,
    /// and the retry with the same request id completes it exactly once.
    @Test(arguments: ["after-validate", "after-sequence", "after-insert", "after-movements", "before-commit",
                      "after-commit"])
    func aSaleKilledAtAnyStepIsCompletedOnceByItsRetry(_ point: String) throws {
        let desk = try Desk()
        try desk.setUp()
        let args = ["sell", "--account", "1", "--amount", "100.00", "--remote", "--request-id", "crash-1"]
        let killed = try desk.run(args, crashAt: point)
        #expect(killed.status == 9, "the hook did not fire: \(killed.status) \(killed.stderr)")
        #expect(killed.stdout.isEmpty)
        let check = try desk.run(["db", "check"])
        #expect(check.status == 0, "\(check.stdout)")
        let before = try desk.run(["purchase", "list", "--json"]).stdout
        #expect(before == "[]\n" || point == "after-commit", "\(point) left \(before)")
        let retry = try desk.json(args)
        #expect(retry["id"] as? Int == 1 && retry["sequence"] as? Int == 1)
        #expect(retry["repeated"] as? Bool == (point == "after-commit"))
        let again = try desk.json(args)
        #expect(again["repeated"] as? Bool == true)
        let account = try desk.json(["account", "show", "1"])
        #expect((account["movements"] as? [Any])?.count == 2)
        #expect(try desk.run(["db", "check"]).status == 0)
    }

    @Test func paymentsImportOnceAndReportsPrintExactSums() throws {
        let desk = try Desk()
        try desk.setUp()
        let csv = desk.db + ".csv"
        try """
            date,reference,account,amount,currency,purpose
            2026-11-24,BK-1,1,100.00,CNY,topup
            2026-11-24,BK-2,1,5.00,CNY,credit

            """.write(toFile: csv, atomically: true, encoding: .utf8)
        let first = try desk.run(["payments", "import", csv])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout == """
            line 2 BK-1: purchase 1 queued
            line 3 BK-2: credited 500 minor units to the account
            2 imported, 0 refused

            """)
        let again = try desk.run(["payments", "import", csv])
        #expect(again.status == 76 && again.stdout.contains("BK-1: REFUSED, bank reference BK-1 was imported before"))
        let sales = try desk.run(["report", "sales", "--from", "2026-11-01", "--to", "2026-11-30", "--by", "month",
                                  "--csv"])
        #expect(sales.stdout == """
            period,account,purchases,paid,value,fixedCharges,units,currency
            2026-11,,1,100.00,100.00,0.00,189286,CNY

            """)
        let statement = try desk.json(["report", "statement", "--account", "1", "--month", "2026-11"])
        #expect((statement["closingBalance"] as? [String: Any])?["text"] as? String == "5.00")
        #expect((statement["deposits"] as? [String: Any])?["minor"] as? Int == 10500)
        let reprint = try desk.run(["report", "receipt", "1"])
        #expect(reprint.stdout.contains("request id  bank:BK-1"))
        #expect(try desk.run(["db", "check"]).status == 0)
    }

    /// Two clerks import the same bank file at once, from two processes on one database: every payment is imported
    /// exactly once, by one of them, and the other refuses it as a duplicate.
    @Test func paymentsImportRunTwiceAtOnceImportsEachPaymentOnce() throws {
        let desk = try Desk()
        try desk.setUp()
        #expect(try desk.run(["account", "add", "--name", "No meter"]).status == 0)
        let count = 300
        var csv = "date,reference,account,amount,currency,purpose\n"
        for i in 1...count {
            // Top-ups become queued purchases for account 1's meter, credits go on account 2's balance.
            csv += i % 3 == 0 ? "2026-11-24,BK-\(i),2,1.\(i % 100 < 10 ? "0" : "")\(i % 100),CNY,credit\n"
                : "2026-11-24,BK-\(i),1,\(i).00,CNY,topup\n"
        }
        let file = desk.db + ".csv"
        try csv.write(toFile: file, atomically: true, encoding: .utf8)
        let clerks = (0..<2).map { _ in PeerThread { try desk.run(["payments", "import", file]) } }
        let results = try clerks.map { try $0.value() }
        var imported: [String: Int] = [:]
        for r in results {
            #expect([0, 76].contains(r.status), "\(r.status): \(r.stderr)")
            let lines = r.stdout.split(separator: "\n")
            #expect(lines.count == count + 1, "\(r.stdout) \(r.stderr)")
            for line in lines where !line.contains("REFUSED") && line.hasPrefix("line ") {
                let reference = String(line.split(separator: " ")[2].dropLast())
                imported[reference, default: 0] += 1
            }
            for line in lines where line.contains("REFUSED") {
                #expect(line.contains("was imported before"), "\(line)")
            }
        }
        #expect(imported.count == count && imported.values.allSatisfy { $0 == 1 }, "\(imported)")
        // How the two shared the work (both at once, or one after the other) varies: it is shown, not asserted.
        print("payments import at once: \(results.map { $0.stdout.split(separator: "\n").last ?? "" })")
        let list = try desk.run(["purchase", "list", "--json"])
        let purchases = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(purchases.count == count - count / 3, "one queued purchase per top-up")
        #expect(try desk.run(["db", "check"]).status == 0)
        // Once more, after both: everything is a duplicate.
        let again = try desk.run(["payments", "import", file])
        #expect(again.status == 76 && again.stdout.hasSuffix("0 imported, \(count) refused\n"), "\(again.stdout)")
    }
}
