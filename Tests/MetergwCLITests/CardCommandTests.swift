import Foundation
import Testing

/// `metergw decode --card` on the golden card images, and `metergw keys`.
@Suite struct CardCommandTests {
    static let cards = ["user", "user-written-back", "replacement", "check", "setup", "setup-key-change"]

    func card(_ name: String) -> String { CLI.cardFixtures.appendingPathComponent("\(name).hex").path }

    func tempDir() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The published test key, copied with mode 0600 (git keeps the fixture at 0644, which metergw refuses).
    func testKeys() throws -> String {
        let path = try tempDir().appendingPathComponent("test-keys").path
        try FileManager.default.copyItem(atPath: CLI.testKeyFile.path, toPath: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        return path
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    @Test func humanOutputShowsEveryFieldWithUnits() throws {
        let r = try CLI.run(["decode", "--card", "--file", card("user-written-back")])
        #expect(r.status == 0, "\(r.stderr)")
        for line in [
            "card image, 256 B: user card", "cardSerial             100001", "meterSerial            20251125",
            "accountNumber          88001234", "firstSequence          42", "lastSequence           43",
            "units                  150000 Wh (150.000 kWh)", "issueTime              2026-11-25T08:30:00Z",
            "outcome                credit-applied", "register               1234567 Wh (1234.567 kWh)",
            "credit                 195300 Wh (195.300 kWh)", "lastAppliedSequence    43",
            "status                 not checked (no --keys)",
        ] {
            #expect(r.stdout.contains(line), "missing: \(line)")
        }
        let replacement = try CLI.run(["decode", "--card", "--file", card("replacement")])
        #expect(replacement.stdout.contains("user card (replacement, generation 2)"))
        #expect(replacement.stdout.contains("state                  blank"))
        let setup = try CLI.run(["decode", "--card", "--file", card("setup")])
        #expect(setup.stdout.contains("alarmThreshold         20000 units"))
        #expect(setup.stdout.contains("cutoffBehaviour        open-until-card-inserted"))
        #expect(setup.stdout.contains("meterSerial            any"))
    }

    /// Every golden card decodes as one JSON object; with the test key every MAC verifies.
    @Test(arguments: cards) func jsonWithAndWithoutKeys(_ name: String) throws {
        let plain = try CLI.run(["decode", "--card", "--json", "--file", card(name)])
        #expect(plain.status == 0, "\(plain.stderr)")
        let object = try json(plain.stdout)
        #expect(object["type"] as? String == "card")
        #expect(object["length"] as? Int == 256)
        let header = try #require(object["header"] as? [String: Any])
        let type = name.hasPrefix("setup") ? "setup" : name == "check" ? "check" : "user"
        #expect(header["cardType"] as? String == type)
        #expect((object["issuerMAC"] as? [String: Any])?["status"] as? String == "not checked (no --keys)")

        let keys = try testKeys()
        let checked = try CLI.run(["decode", "--card", "--json", "--keys", keys, "--file", card(name)])
        #expect(checked.status == 0, "\(checked.stderr)")
        let verified = try json(checked.stdout)
        #expect((verified["issuerMAC"] as? [String: Any])?["status"] as? String == "verified")
        if name == "user-written-back" {
            #expect((verified["meterMAC"] as? [String: Any])?["status"] as? String == "verified")
            let credit = (verified["writeBack"] as? [String: Any])?["credit"] as? [String: Any]
            #expect(credit?["value"] as? Int == 195_300 && credit?["unit"] as? String == "Wh")
        } else {
            #expect(verified["meterMAC"] == nil)
        }
        // The key never appears in the output.
        #expect(!checked.stdout.contains("000102030405060708090a0b0c0d0e0f"))
    }

    @Test func aNewKeyFileOrACorruptedCardFailsTheMACs() throws {
        let dir = try tempDir()
        let keys = dir.appendingPathComponent("keys").path
        #expect(try CLI.run(["keys", "init", "--file", keys]).status == 0)
        let other = try CLI.run(["decode", "--card", "--keys", keys, "--file", card("user-written-back")])
        #expect(other.status == 65)
        #expect(other.stdout.components(separatedBy: "status                 FAILED").count == 3)

        var hex = try String(contentsOfFile: card("user"), encoding: .utf8).split(whereSeparator: \.isWhitespace)
            .map(String.init)
        hex[40] = hex[40] == "00" ? "01" : "00"  // the credit units
        let corrupted = try CLI.run(["decode", "--card", "--keys", try testKeys()] + hex)
        #expect(corrupted.status == 65)
        #expect(corrupted.stdout.contains("status                 FAILED"))

        let notACard = try CLI.run(["decode", "--card", "7E", "01", "00"])
        #expect(notACard.status == 65)
        #expect(notACard.stderr.contains("not a card image: a card image is 256 bytes, this is 3"))
        let keysWithoutCard = try CLI.run(["decode", "--keys", keys, "7E"])
        #expect(keysWithoutCard.status == 64)
    }

    @Test func keysInitCreatesA0600FileAndRefusesToOverwrite() throws {
        let dir = try tempDir()
        let path = dir.appendingPathComponent("sub/keys").path
        let r = try CLI.run(["keys", "init", "--file", path, "--issuer-id", "42", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let object = try json(r.stdout)
        #expect(object["path"] as? String == path)
        #expect(object["issuerId"] as? Int == 42)
        #expect((object["fingerprint"] as? String)?.count == 16)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let key = try #require(text.split(separator: "\n").first { $0.hasPrefix("system-key ") }?.dropFirst(11))
        #expect(key.count == 64)
        #expect(!r.stdout.contains(key) && !r.stderr.contains(key))

        let again = try CLI.run(["keys", "init", "--file", path])
        #expect(again.status == 1)
        #expect(again.stderr.contains("already exists; refusing to overwrite"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == text)

        let show = try CLI.run(["keys", "show", "--file", path])
        #expect(show.status == 0)
        #expect(show.stdout.contains("issuer id    42"))
        #expect(!show.stdout.contains(key))
    }

    @Test func aKeyFileOthersCanReadIsRefused() throws {
        let path = try testKeys()
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: path)
        let r = try CLI.run(["decode", "--card", "--keys", path, "--file", card("user")])
        #expect(r.status == 77)
        #expect(r.stderr.contains("chmod 600 \(path)"))
        let show = try CLI.run(["keys", "show", "--file", path])
        #expect(show.status == 77)
    }

    @Test func keysInitDefaultsToTheXDGConfigFolder() throws {
        let dir = try tempDir()
        let r = try CLI.run(["keys", "init", "--json"], environment: ["XDG_CONFIG_HOME": dir.path])
        #expect(r.status == 0, "\(r.stderr)")
        let expected = dir.appendingPathComponent("metergw/keys").path
        #expect(try json(r.stdout)["path"] as? String == expected)
        #expect(FileManager.default.fileExists(atPath: expected))
    }
}
