import Foundation
import Testing

/// tools/install, run as an operator would, into a staging root (--prefix) so the test never touches the system.
@Suite struct InstallScriptTests {
    static var script: String { Repository.root.appendingPathComponent("tools/install").path }

    static func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("install-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    static func install(_ arguments: [String]) throws -> ProcessResult {
        try Programs.run("/bin/bash", [script] + arguments)
    }

    /// Every regular file under a folder, by path relative to it.
    static func files(under folder: URL) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: folder.path)
        var found: [String] = []
        while let path = enumerator?.nextObject() as? String {
            var isFolder: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: folder.appendingPathComponent(path).path,
                                                        isDirectory: &isFolder)
            if exists && !isFolder.boolValue { found.append(path) }
        }
        return found.sorted()
    }

    static let installed = [
        "etc/systemd/system/metergw.service", "etc/udev/rules.d/60-metergw.rules",
        "etc/udev/rules.d/61-metergw-access.rules", "usr/local/bin/metergw",
    ]

    @Test func dryRunPrintsEveryStepAndWritesNothing() throws {
        let root = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let result = try Self.install(["--dry-run", "--prefix", root.path])
        #expect(result.status == 0, "\(result.output)")
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.contains("would run: swift build -c release --static-swift-stdlib --scratch-path .build-static "
                               + "--product metergw"), "\(lines)")
        for path in Self.installed {
            let step = lines.first { $0.hasPrefix("would run: install -D -m") && $0.hasSuffix(" \(root.path)/\(path)") }
            #expect(step != nil, "\(path) in \(lines)")
        }
        #expect(lines.contains("would run: install -d -m 0755 \(root.path)/etc/metergw"))
        #expect(lines.contains { $0.hasPrefix("skipped: user metergw") })
        #expect(lines.contains { $0.hasPrefix("skipped: reloading") })
        #expect(Self.files(under: root).isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: root.path).isEmpty)
    }

    @Test func installsIntoAStagingRootIdempotentlyAndUninstalls() throws {
        let root = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        // Any executable stands in for the release build; the script copies it as it is.
        let binary = root.deletingLastPathComponent().appendingPathComponent("\(root.lastPathComponent)-metergw")
        try "#!/bin/sh\necho metergw\n".write(to: binary, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: binary.path)
        defer { try? FileManager.default.removeItem(at: binary) }

        let first = try Self.install(["--prefix", root.path, "--binary", binary.path])
        #expect(first.status == 0, "\(first.output)")
        #expect(Self.files(under: root) == Self.installed)
        for (path, source, mode) in [
            ("usr/local/bin/metergw", binary.path, 0o755),
            ("etc/systemd/system/metergw.service", Repository.root.appendingPathComponent("tools/metergw.service").path,
             0o644),
            ("etc/udev/rules.d/60-metergw.rules", Repository.root.appendingPathComponent("udev/60-metergw.rules").path,
             0o644),
        ] {
            let target = root.appendingPathComponent(path).path
            #expect(FileManager.default.contentsEqual(atPath: target, andPath: source), "\(path)")
            let attributes = try FileManager.default.attributesOfItem(atPath: target)
            #expect((attributes[.posixPermissions] as? Int) == mode, "\(path)")
        }
        var isFolder: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("etc/metergw").path,
                                               isDirectory: &isFolder) && isFolder.boolValue)

        // The second run finds everything in place and changes nothing.
        let second = try Self.install(["--prefix", root.path, "--binary", binary.path])
        #expect(second.status == 0, "\(second.output)")
        let lines = second.output.split(separator: "\n").map(String.init)
        #expect(!lines.contains { $0.hasPrefix("+ ") }, "\(lines)")
        for path in Self.installed { #expect(lines.contains("unchanged: \(root.path)/\(path)"), "\(path)") }

        // A changed file is replaced, and only that one.
        try "#!/bin/sh\necho metergw 2\n".write(to: binary, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: binary.path)
        let upgrade = try Self.install(["--prefix", root.path, "--binary", binary.path])
        let changes = upgrade.output.split(separator: "\n").filter { $0.hasPrefix("+ ") }
        #expect(changes.count == 1 && changes.first?.contains("usr/local/bin/metergw") == true, "\(upgrade.output)")

        let removal = try Self.install(["--uninstall", "--prefix", root.path])
        #expect(removal.status == 0, "\(removal.output)")
        #expect(Self.files(under: root).isEmpty)
        // The configuration folder is the operator's: uninstalling keeps it.
        #expect(FileManager.default.fileExists(atPath: root.appendingPathComponent("etc/metergw").path))
    }

    /// Relative paths mean where the operator stands, though the script works from the checkout.
    @Test func relativePathsAreTheCallersNotTheCheckouts() throws {
        let here = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: here) }
        try "#!/bin/sh\n".write(to: here.appendingPathComponent("metergw"), atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755],
                                              ofItemAtPath: here.appendingPathComponent("metergw").path)
        let result = try Programs.run("/bin/bash", [Self.script, "--prefix", "stage", "--binary", "metergw"],
                                      directory: here)
        #expect(result.status == 0, "\(result.output)")
        #expect(Self.files(under: here.appendingPathComponent("stage")) == Self.installed)
    }

    @Test func refusesWhatItCannotDo() throws {
        let root = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: root) }
        let unknown = try Self.install(["--prefix", root.path, "--frobnicate"])
        #expect(unknown.status == 64)
        #expect(unknown.output.contains("unknown argument '--frobnicate'"))
        let missing = try Self.install(["--prefix", root.path, "--binary", root.appendingPathComponent("nope").path])
        #expect(missing.status == 66)
        #expect(missing.output.contains("is not an executable file"))
        #expect(Self.files(under: root).isEmpty)
    }
}
