import Foundation
import MetergwTestSupport
import Prepaid
import SerialPort
import Testing

/// The billing desk's hardware flows, everything through the built `metergw` and `meter-emulator` binaries as a
/// clerk would run them: card sales through the emulated card writer, the card held to the emulated meter, card
/// uploads, replacement, remote top-up over the bus, the ESC/POS receipt printer on a pseudo-terminal, and the
/// process killed with SIGKILL at every step of a card sale and of an upload.
@Suite(.serialized) struct DeskFlowTests {
    /// Tariff "tier": 0.50 CNY/kWh up to 10 000 Wh a month, 1.00 CNY/kWh above; in µfen per Wh.
    static let tier1Price: Int64 = 50_000
    static let tier2Price: Int64 = 100_000
    static let tier1Bound: Int64 = 10_000

    /// Units that `fen` buy from tier position `position` at the "tier" tariff (docs/CARD.md §2.2, by hand).
    static func expectedUnits(fen: Int64, position: Int64) -> Int64 {
        let budget = fen * 1_000_000
        let room = max(0, tier1Bound - position)
        let first = min(room, budget / tier1Price)
        guard first == room else { return first }
        return first + (budget - first * tier1Price) / tier2Price
    }

    /// One emulator (meter at address 1, card writer at 100) and one billing database, in a fresh folder.
    final class Desk {
        let dir: URL
        let emulator: EmulatorProcess
        let db: String

        /// `emulatorArguments` add to the emulator's command line (e.g. `--faults`).
        init(emulatorArguments: [String] = []) throws {
            self.dir = try EmulatorProcess.makeDirectory()
            self.emulator = try EmulatorProcess(
                directory: self.dir,
                arguments: ["--meters", "1", "--card-writer", "--state",
                            self.dir.appendingPathComponent("state.json").path] + emulatorArguments)
            self.db = self.dir.appendingPathComponent("billing.sqlite").path
        }

        deinit { self.emulator.terminate() }

        var bus: String { self.emulator.link }
        var keys: String { self.emulator.keyFile }
        var meterSerial: UInt32 { self.emulator.serial(ofAddress: 1) }
        func file(_ name: String) -> String { self.dir.appendingPathComponent(name).path }

        @discardableResult
        func run(_ arguments: [String], crashAt: String? = nil, now: String? = nil) throws -> CLI.Result {
            var env = ["METERGW_DB": self.db, "USER": "clerk"]
            if let crashAt { env["METERGW_CRASH_AT"] = crashAt }
            if let now { env["METERGW_NOW"] = now }
            return try CLI.run(arguments, environment: env)
        }

        func json(_ arguments: [String]) throws -> [String: Any] {
            let r = try self.run(arguments + ["--json"])
            #expect(r.status == 0, "\(arguments): \(r.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                                "\(arguments): \(r.stdout) \(r.stderr)")
        }

        /// `meter-emulator ARGS --link BUS`, through its control socket.
        @discardableResult
        func emulate(_ arguments: [String]) throws -> String {
            let (status, text) = try EmulatorProcess.command(arguments + ["--link", self.bus])
            #expect(status == 0 && text.contains("\"ok\":true"), "\(arguments): \(text)")
            return text
        }

        /// Tiered tariff, account 1 with the emulator's meter (at bus address 1).
        func setUp() throws {
            for args in [["tariff", "add", "--name", "tier", "--tier", "10000:0.50", "--tier", "1.00",
                          "--valid-from", "2020-01-01"],
                         ["account", "add", "--name", "Li Wei"],
                         ["meter", "add", String(self.meterSerial), "--tariff", "tier", "--address", "1"],
                         ["meter", "assign", String(self.meterSerial), "--account", "1"]] {
                let r = try self.run(args)
                #expect(r.status == 0, "\(args): \(r.stderr)")
            }
        }

        /// A blank card (every byte FF) into the writer's slot.
        func insertBlankCard() throws {
            let blank = self.file("blank.bin")
            try Data(repeating: 0xFF, count: 256).write(to: URL(fileURLWithPath: blank))
            try self.emulate(["card", "insert", "--file", blank])
        }

        /// The card in the writer, as it is now.
        func cardInWriter() throws -> CardImage {
            let out = self.file("shown-\(UUID().uuidString.prefix(6)).bin")
            try self.emulate(["card", "show", "--out", out])
            return try CardImage(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: out))))
        }

        /// Takes the card out of the writer, holds it to meter 1, and puts what the meter wrote back in the writer.
        func carryCardToMeterAndBack(_ name: String) throws -> CardImage {
            let card = self.file("\(name).bin")
            let back = self.file("\(name)-back.bin")
            try self.emulate(["card", "remove", "--out", card])
            try self.emulate(["card", "insert", "--device", "1", "--file", card, "--out", back])
            try self.emulate(["card", "insert", "--file", back])
            return try CardImage(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: back))))
        }

        func sellByCard(_ amount: String, _ requestID: String, crashAt: String? = nil) throws -> CLI.Result {
            try self.run(["sell", "--account", "1", "--amount", amount, "--writer", self.bus, "--keys", self.keys,
                          "--request-id", requestID, "--json"], crashAt: crashAt)
        }

        func purchases() throws -> [[String: Any]] {
            let r = try self.run(["purchase", "list", "--json"])
            return try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]])
        }

        func expectCheckClean(_ context: String) throws {
            let check = try self.run(["db", "check"])
            #expect(check.status == 0, "\(context): \(check.stdout) \(check.stderr)")
        }
    }

    static func object(_ r: CLI.Result) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                     "\(r.status): \(r.stdout) \(r.stderr)")
    }

    /// Open account, sell onto a card, the meter loads it, consumption runs, the card comes back, the upload
    /// confirms the purchase and records the consumption, and the second sale starts at the new tier position.
    @Test func theWholeDeskFlowOverTheEmulatedWriterAndMeter() throws {
        let desk = try Desk()
        try desk.setUp()
        try desk.insertBlankCard()

        let first = try desk.sellByCard("10.00", "sale-1")
        #expect(first.status == 0, "\(first.stderr)")
        let sale1 = try Self.object(first)
        #expect(sale1["state"] as? String == "written" && sale1["sequence"] as? Int == 1)
        #expect(sale1["tierPosition"] as? Int == 0)
        #expect((sale1["units"] as? [String: Any])?["count"] as? Int == Int(Self.expectedUnits(fen: 1000, position: 0)))
        let onCard = try desk.cardInWriter()
        #expect(onCard.meterSerial == desk.meterSerial && onCard.generation == 1 && onCard.cardSerial == 100_001)
        #expect(onCard.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1, units: 15_000))
        #expect(onCard.writeBack == nil)

        // The customer holds the card to the meter: it loads the credit and writes its register back.
        let loaded = try desk.carryCardToMeterAndBack("visit-1")
        #expect(loaded.writeBack?.lastAppliedSequence == 1 && loaded.writeBack?.unitsApplied == 15_000)
        let upload1 = try Self.object(try desk.run(["card", "upload", "--port", desk.bus, "--keys", desk.keys,
                                                    "--json"]))
        #expect(upload1["outcome"] as? String == "credit-applied" && upload1["applied"] as? [Int] == [1])
        let r1 = try #require(upload1["register"] as? Int)

        // A second later (readings are per second) the meter has run 8000 Wh; the card goes to the meter again.
        Thread.sleep(forTimeInterval: 1.2)
        try desk.emulate(["consume", "--device", "1", "8000"])
        let back = try desk.carryCardToMeterAndBack("visit-2")
        #expect(back.writeBack?.outcome == .alreadyApplied)
        let upload2 = try Self.object(try desk.run(["card", "upload", "--port", desk.bus, "--keys", desk.keys,
                                                    "--json"]))
        #expect(upload2["repeated"] as? Bool == false && upload2["applied"] as? [Int] == [])
        let r2 = try #require(upload2["register"] as? Int)
        #expect(r2 - r1 >= 8000)
        let again = try Self.object(try desk.run(["card", "upload", "--port", desk.bus, "--keys", desk.keys,
                                                  "--json"]))
        #expect(again["repeated"] as? Bool == true)

        let listed = try desk.purchases()
        #expect(listed.map { $0["state"] as? String } == ["applied"])

        // The second sale starts at the new tier position: the rest of tier 1, then tier 2.
        let second = try desk.sellByCard("10.00", "sale-2")
        #expect(second.status == 0, "\(second.stderr)")
        let sale2 = try Self.object(second)
        let position = Int64(r2 - r1)
        #expect(sale2["tierPosition"] as? Int == Int(position))
        let units = Self.expectedUnits(fen: 1000, position: position)
        #expect(units < 15_000)
        #expect((sale2["units"] as? [String: Any])?["count"] as? Int == Int(units))
        #expect(sale2["sequence"] as? Int == 2 && sale2["state"] as? String == "written")
        let card2 = try desk.cardInWriter()
        #expect(card2.credit == CardImage.CreditBlock(firstSequence: 2, lastSequence: 2, units: UInt32(units)))
        #expect(card2.cardSerial == 100_001 && card2.writeBack == nil)
        try desk.expectCheckClean("after the desk flow")
    }

    /// Two purchases before the customer reaches the meter travel as one credit block; the meter loads both.
    @Test func aCardWithUnappliedCreditCarriesTheNewPurchaseInItsBlock() throws {
        let desk = try Desk()
        try desk.setUp()
        try desk.insertBlankCard()
        #expect(try desk.sellByCard("2.00", "a").status == 0)
        #expect(try desk.sellByCard("3.00", "b").status == 0)
        let card = try desk.cardInWriter()
        #expect(card.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 2, units: 4_000 + 6_000))
        let back = try desk.carryCardToMeterAndBack("both")
        #expect(back.writeBack?.lastAppliedSequence == 2 && back.writeBack?.unitsApplied == 10_000)
        let upload = try Self.object(try desk.run(["card", "upload", "--port", desk.bus, "--keys", desk.keys,
                                                   "--json"]))
        #expect(upload["applied"] as? [Int] == [1, 2])
        try desk.expectCheckClean("two purchases on one card")
    }

    /// Another meter's card in the writer is refused before anything is sold; no card at all is a clear error.
    @Test func noCardOrAnotherMetersCardSellsNothing() throws {
        let desk = try Desk()
        try desk.setUp()
        let none = try desk.sellByCard("10.00", "x")
        #expect(none.status == 66 && none.stderr.contains("no card in the writer"), "\(none.stderr)")
        let foreign = desk.file("foreign.bin")
        let issuer = CardIssuer(keys: try desk.emulator.keys)
        let image = issuer.userCard(cardSerial: 555, generation: 1, meterSerial: desk.meterSerial &+ 1, revision: 1,
                                    accountNumber: 1, unitKind: .wattHours, credit: .none, issueTime: 0)
        try Data(image).write(to: URL(fileURLWithPath: foreign))
        try desk.emulate(["card", "insert", "--file", foreign])
        let refused = try desk.sellByCard("10.00", "x")
        #expect(refused.status == 76 && refused.stderr.contains("belongs to meter"), "\(refused.stderr)")
        #expect(try desk.purchases().isEmpty)
    }

    /// SIGKILL at every step of a card sale: the store checks clean, and the retry with the same request id
    /// completes the sale once, with the credit block on the card exactly once.
    @Test(arguments: ["after-validate", "after-insert", "after-commit", "card-sold", "card-planned", "card-written",
                      "card-verified", "card-marked"])
    func aCardSaleKilledAtAnyStepIsCompletedOnceByItsRetry(_ point: String) throws {
        let desk = try Desk()
        try desk.setUp()
        try desk.insertBlankCard()
        let killed = try desk.sellByCard("10.00", "crash-1", crashAt: point)
        #expect(killed.status == 9, "\(point): the hook did not fire: \(killed.status) \(killed.stderr)")
        try desk.expectCheckClean("after SIGKILL at \(point)")
        let before = try desk.purchases()
        #expect(before.count <= 1)
        if let p = before.first {
            // Sold but maybe not marked: never `written` unless the card was read back first.
            #expect(p["state"] as? String == (point == "card-marked" ? "written" : "created"), "\(point)")
        }
        let retry = try desk.sellByCard("10.00", "crash-1")
        #expect(retry.status == 0, "\(point): \(retry.stderr)")
        let sale = try Self.object(retry)
        #expect(sale["id"] as? Int == 1 && sale["sequence"] as? Int == 1 && sale["state"] as? String == "written")
        #expect(try desk.purchases().count == 1)
        let card = try desk.cardInWriter()
        #expect(card.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1, units: 15_000), "\(point)")
        // The meter loads it once.
        let back = try desk.carryCardToMeterAndBack("crash")
        #expect(back.writeBack?.unitsApplied == 15_000)
        let account = try desk.json(["account", "show", "1"])
        #expect((account["movements"] as? [Any])?.count == 2)
        try desk.expectCheckClean("after the retry at \(point)")
    }

    /// SIGKILL at every step of a card upload: the retry records the upload once and confirms the purchase once.
    @Test(arguments: ["upload-read", "before-commit", "after-commit", "upload-recorded"])
    func aCardUploadKilledAtAnyStepRecordsOnceOnRetry(_ point: String) throws {
        let desk = try Desk()
        try desk.setUp()
        try desk.insertBlankCard()
        #expect(try desk.sellByCard("10.00", "u-1").status == 0)
        _ = try desk.carryCardToMeterAndBack("upload")
        let upload = ["card", "upload", "--port", desk.bus, "--keys", desk.keys, "--json"]
        let killed = try desk.run(upload, crashAt: point)
        #expect(killed.status == 9, "\(point): the hook did not fire: \(killed.status) \(killed.stderr)")
        try desk.expectCheckClean("after SIGKILL at \(point)")
        let retry = try Self.object(try desk.run(upload))
        let committed = point == "after-commit" || point == "upload-recorded"
        #expect(retry["repeated"] as? Bool == committed, "\(point)")
        #expect(retry["applied"] as? [Int] == (committed ? [] : [1]), "\(point)")
        #expect(try desk.purchases().map { $0["state"] as? String } == ["applied"])
        let third = try Self.object(try desk.run(upload))
        #expect(third["repeated"] as? Bool == true && third["applied"] as? [Int] == [])
        try desk.expectCheckClean("after the retried upload at \(point)")
    }

    /// A replacement card carries the unapplied purchase with the next generation; the meter loads it once.
    @Test func aReplacementCardCarriesUnappliedCredit() throws {
        let desk = try Desk()
        try desk.setUp()
        try desk.insertBlankCard()
        #expect(try desk.sellByCard("10.00", "r-1").status == 0)
        // The customer loses the card; a new blank one goes into the writer.
        try desk.emulate(["card", "remove", "--out", desk.file("lost.bin")])
        try desk.insertBlankCard()
        let replaced = try desk.json(["card", "replace", "--account", "1", "--port", desk.bus, "--keys", desk.keys])
        #expect(replaced["card"] as? Int == 100_002 && replaced["generation"] as? Int == 2)
        let card = try desk.cardInWriter()
        #expect(card.generation == 2 && card.credit == CardImage.CreditBlock(firstSequence: 1, lastSequence: 1,
                                                                                units: 15_000))
        let back = try desk.carryCardToMeterAndBack("replacement")
        #expect(back.writeBack?.unitsApplied == 15_000 && back.writeBack?.lastAppliedSequence == 1)
        // The lost card, found again, is refused by the meter now.
        let lostBack = desk.file("lost-back.bin")
        try desk.emulate(["card", "insert", "--device", "1", "--file", desk.file("lost.bin"), "--out", lostBack])
        let lost = try CardImage(bytes: Array(try Data(contentsOf: URL(fileURLWithPath: lostBack))))
        #expect(lost.writeBack?.outcome == .refused)
        let upload = try Self.object(try desk.run(["card", "upload", "--port", desk.bus, "--keys", desk.keys,
                                                   "--json"]))
        #expect(upload["applied"] as? [Int] == [1])
        try desk.expectCheckClean("after the replacement")
    }

    /// `topup --remote` sells, reads the meter's last applied sequence, delivers over the bus and confirms; killed
    /// after sending, the rerun reads the meter and confirms without sending again.
    @Test func remoteTopupDeliversOverTheBusAndReconcilesAfterACrash() throws {
        let desk = try Desk()
        try desk.setUp()
        let base = ["topup", "--remote", "--account", "1", "--port", desk.bus, "--keys", desk.keys]
        let first = try desk.json(base + ["--amount", "10.00", "--request-id", "t-1"])
        #expect(first["state"] as? String == "applied" && first["sequence"] as? Int == 1)
        #expect((first["sent"] as? [[String: Any]])?.first?["outcome"] as? String == "applied")

        let killed = try desk.run(base + ["--amount", "5.00", "--request-id", "t-2"], crashAt: "topup-sent")
        #expect(killed.status == 9, "\(killed.stderr)")
        try desk.expectCheckClean("after SIGKILL after sending")
        #expect(try desk.purchases().map { $0["state"] as? String } == ["applied", "queued"])
        let rerun = try desk.json(base + ["--amount", "5.00", "--request-id", "t-2"])
        #expect(rerun["state"] as? String == "applied" && rerun["repeated"] as? Bool == true)
        #expect((rerun["sent"] as? [Any])?.isEmpty == true, "the rerun must not send again: \(rerun)")
        #expect(rerun["confirmed"] as? [Int] == [2])
        let status = try desk.emulate(["status"])
        #expect(status.contains("\"lastAppliedSequence\":2"))
        // The low-level form still works.
        let low = try desk.run(["topup", "--meter", "1", "--units", "1", "--seq", "2", "--port", desk.bus,
                                "--keys", desk.keys])
        #expect(low.status == 0 && low.stdout.contains("already applied"), "\(low.stderr)")
        try desk.expectCheckClean("after remote top-ups")
    }

    /// `--printer PORT` writes the receipt's ESC/POS bytes; the other end of a pseudo-terminal gets them byte for
    /// byte: initialise, centred bold title, the receipt's lines, feed, partial cut.
    @Test func theReceiptGoesToASerialESCPOSPrinterByteForByte() throws {
        let desk = try Desk()
        try desk.setUp()
        let printer = try PseudoTerminalPair()
        let r = try desk.run(["sell", "--account", "1", "--amount", "10.00", "--remote", "--request-id", "p-1",
                              "--printer", printer.subordinatePath], now: "1795595400")
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "metergw prepaid receipt")
        var expected: [UInt8] = [0x1B, 0x40, 0x1B, 0x61, 0x01, 0x1B, 0x45, 0x01]
        expected += Array("metergw prepaid receipt".utf8) + [0x0A, 0x1B, 0x45, 0x00, 0x1B, 0x61, 0x00]
        for line in lines.dropFirst() { expected += Array(line.utf8) + [0x0A] }
        expected += [0x1B, 0x64, 0x04, 0x1D, 0x56, 0x42, 0x00]
        #expect(lines.contains("units       15000 Wh (15.000 kWh)"))
        let printed = try printer.readExactly(expected.count, deadline: .now + .seconds(10))
        #expect(printed == expected)
        let extra = (try? printer.read(upTo: 64, deadline: .now + .milliseconds(200))) ?? []
        #expect(extra.isEmpty, "bytes after the cut: \(extra)")
    }
}
