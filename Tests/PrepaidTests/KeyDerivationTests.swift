import Foundation
import MeterProtocol
import Testing
@testable import Prepaid

@Suite struct KeyDerivationTests {
    /// The test vector published in docs/CARD.md §3.4 (checked independently with Python's hmac module).
    static let vector: [(String, String)] = [
        ("K_root", "15 49 5D B6 9F 9C 1B 6D"),
        ("K_card-issuer", "05 6C BE 4A 8F C6 BF 89"),
        ("K_meter-writeback", "31 5A FA 05 BF 8E EF 85"),
        ("K_command", "2C 6D 41 8C BF 26 68 68"),
        ("K_key-change", "40 79 7B CA 9E 6A 82 35"),
        ("K_tool", "49 AF 8C 9D 48 07 14 4E"),
        ("fingerprint", "75 EE 0F 1F DD 0D 45 D3"),
        ("APPLY_CREDIT MAC", "63 FC 85 40 DF 8F AA BA"),
    ]

    @Test func theTestVector() {
        let k = TestKeys.meter()
        let actual: [String: [UInt8]] = [
            "K_root": k.root.key.prefixForTestVector(8),
            "K_card-issuer": k.cardIssuer.prefixForTestVector(8),
            "K_meter-writeback": k.writeBack.prefixForTestVector(8),
            "K_command": k.command.prefixForTestVector(8),
            "K_key-change": k.keyChange.prefixForTestVector(8),
            "K_tool": k.tool.key.prefixForTestVector(8),
            "fingerprint": TestKeys.systemKey.fingerprint,
            "APPLY_CREDIT MAC":
                CommandSigner(keys: k).applyCredit(sequence: 42, units: 100_000, counter: 1004).auth.mac,
        ]
        for (name, hex) in Self.vector { #expect(actual[name].map { hexString($0) } == hex, "\(name)") }
    }

    /// docs/CARD.md shows the same numbers.
    @Test func theDocumentShowsTheVector() throws {
        let doc = try String(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("docs/CARD.md"),
            encoding: .utf8)
        for (name, hex) in Self.vector { #expect(doc.contains(hex), "docs/CARD.md lacks \(name) \(hex)") }
        #expect(doc.contains("7E 01 00 05 01 35 01 F5 07 07 00 15 CC 00 00 00"))
        #expect(doc.contains("03 EC 01 63 FC 85 40 DF 8F AA BA 78 FA"))
    }

    @Test func keysDifferPerMeterRevisionPurposeAndIssuer() {
        let a = TestKeys.meter(1)
        let b = TestKeys.meter(2)
        let a2 = TestKeys.meter(1, revision: 2)
        let all = [a.root.key, a.cardIssuer, a.writeBack, a.command, a.keyChange, b.root.key, b.command,
                   a2.root.key, a2.command, a.tool.key, a2.tool.key,
                   IssuerKeys(systemKey: TestKeys.systemKey, issuerID: 2).tool(revision: 1).key]
            .map { $0.prefixForTestVector(32) }
        #expect(Set(all).count == all.count)
        // The tool key is the same for every meter of the issuer at a revision.
        #expect(a.tool.exportBytesForSecureStorage() == b.tool.exportBytesForSecureStorage())
        #expect(SystemKey(bytes: [1, 2, 3]) == nil)
        let g1 = SystemKey.generate().exportBytesForKeyFile()
        let g2 = SystemKey.generate().exportBytesForKeyFile()
        #expect(g1.count == 32 && g1 != g2)
    }

    /// No key type shows its bytes in description, debugDescription, reflection or dump.
    @Test func keysAreRedacted() {
        let k = TestKeys.meter()
        let secrets = [TestKeys.systemKey.exportBytesForKeyFile(), k.root.exportBytesForSecureStorage(),
                       k.tool.exportBytesForSecureStorage(), k.command.prefixForTestVector(32)]
            .map { hexString($0, separator: "").lowercased() }
        let prefixes = secrets.map { String($0.prefix(8)) } + ["0001020304"]
        var texts = [String(describing: TestKeys.systemKey), String(reflecting: TestKeys.systemKey),
                     String(describing: TestKeys.issuer), String(reflecting: k), String(describing: k.root),
                     String(describing: k.tool), "\(k)"]
        var dumped = ""
        dump(k, to: &dumped)
        dump(TestKeys.issuer, to: &dumped)
        texts.append(dumped)
        for text in texts {
            #expect(text.contains("redacted"))
            let lower = text.lowercased().replacingOccurrences(of: " ", with: "")
            for p in prefixes { #expect(!lower.contains(p), "\(text) shows key bytes") }
            // Decimal byte lists (as a default Mirror of [UInt8] would print) do not appear either.
            #expect(!text.contains("0, 1, 2, 3"))
        }
    }
}
