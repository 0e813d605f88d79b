import Foundation
import Testing
@testable import KeyStore
@testable import Prepaid

@Suite struct KeyFileTests {
    func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("metergw-keys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
    }

    @Test func createMakesA0600FileAndLoadReadsItBack() throws {
        let dir = try tempDir()
        let path = dir + "/nested/metergw/keys"
        let keys = try KeyFile.create(at: path, issuerID: 7)
        #expect(try mode(path) == 0o600)
        #expect(try mode(dir + "/nested/metergw") == 0o700)
        let loaded = try KeyFile.load(from: path)
        #expect(loaded.issuerID == 7)
        #expect(loaded.systemKey.exportBytesForKeyFile() == keys.systemKey.exportBytesForKeyFile())
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.hasPrefix("metergw-keys v1\n"))
        #expect(text.contains("issuer-id 7\n"))
    }

    @Test func createRefusesToOverwrite() throws {
        let path = try tempDir() + "/keys"
        _ = try KeyFile.create(at: path, issuerID: 1)
        let before = try String(contentsOfFile: path, encoding: .utf8)
        #expect(throws: KeyFileError.exists(path: path)) { try KeyFile.create(at: path, issuerID: 1) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == before)
    }

    @Test func loadRefusesAFileOthersCanRead() throws {
        let path = try tempDir() + "/keys"
        _ = try KeyFile.create(at: path, issuerID: 1)
        for bad in [0o640, 0o604, 0o644, 0o660] {
            chmod(path, mode_t(bad))
            let error = #expect(throws: KeyFileError.self) { try KeyFile.load(from: path) }
            #expect(error == .tooOpen(path: path, mode: UInt32(bad)))
            #expect(error?.explanation.contains("chmod 600 \(path)") == true)
        }
        chmod(path, 0o400)
        #expect(throws: Never.self) { try KeyFile.load(from: path) }
    }

    @Test func malformedFilesNameTheLineButNeverTheKey() throws {
        let secret = String(repeating: "ab", count: 31) + "zz"
        let error = #expect(throws: KeyFileError.self) {
            try KeyFile.parse("metergw-keys v1\nissuer-id 1\nsystem-key \(secret)\n")
        }
        #expect(error == .malformed(path: "", line: 3, reason: "system-key must appear once, as 64 hex digits"))
        #expect(error?.explanation.contains("abab") == false)
        #expect(throws: KeyFileError.self) { try KeyFile.parse("something else\n") }
        #expect(throws: KeyFileError.self) { try KeyFile.parse("metergw-keys v1\nissuer-id 1\n") }
        #expect(throws: KeyFileError.self) { try KeyFile.load(from: "/nonexistent/metergw/keys") }
        let ok = try KeyFile.parse("# comment\nmetergw-keys v1\n\nissuer-id 1\nsystem-key "
                                   + String(repeating: "00", count: 32) + "\n")
        #expect(ok.issuerID == 1)
    }

    @Test func defaultPathFollowsXDG() {
        #expect(KeyFile.defaultPath(xdgConfigHome: "/x/cfg", home: "/home/u") == "/x/cfg/metergw/keys")
        #expect(KeyFile.defaultPath(xdgConfigHome: nil, home: "/home/u") == "/home/u/.config/metergw/keys")
        #expect(KeyFile.defaultPath(xdgConfigHome: "relative", home: "/home/u") == "/home/u/.config/metergw/keys")
        #expect(KeyFile.defaultPath(xdgConfigHome: nil, home: nil) == nil)
    }

    /// The test key file fixture (used by the CLI tests) holds the published test key.
    @Test func theTestKeyFixture() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/keys/test-keys")
        let keys = try KeyFile.parse(try String(contentsOf: url, encoding: .utf8))
        #expect(keys.issuerID == 1)
        #expect(keys.systemKey.exportBytesForKeyFile() == Array(0..<32))
    }
}
