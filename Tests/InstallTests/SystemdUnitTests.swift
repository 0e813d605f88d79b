import Foundation
import Testing

/// tools/metergw.service: the settings the substation depends on, and systemd's own check where it exists.
@Suite struct SystemdUnitTests {
    /// `[Section]` -> key -> every value given (DeviceAllow= and friends repeat).
    typealias Unit = [String: [String: [String]]]

    static func parse(_ text: String) -> Unit {
        var unit: Unit = [:]
        var section = ""
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast())
                continue
            }
            guard let equals = line.firstIndex(of: "=") else { continue }
            let key = String(line[..<equals])
            unit[section, default: [:]][key, default: []].append(String(line[line.index(after: equals)...]))
        }
        return unit
    }

    static func service() throws -> [String: [String]] {
        try parse(Repository.text("tools/metergw.service"))["Service"] ?? [:]
    }

    @Test func runsTheGatewayAsItsOwnUserInGroupDialout() throws {
        let service = try Self.service()
        #expect(service["ExecStart"] == ["/usr/local/bin/metergw serve --config /etc/metergw/gateway.toml"])
        #expect(service["ExecReload"] == ["/bin/kill -HUP $MAINPID"])
        #expect(service["User"] == ["metergw"])
        #expect(service["SupplementaryGroups"]?.joined(separator: " ").split(separator: " ")
            .contains("dialout") == true)
        #expect(service["Restart"] == ["on-failure"])
        #expect(service["TimeoutStopSec"] == ["15"])
        #expect(service["StateDirectory"] == ["metergw"])
        #expect(service["ConfigurationDirectory"] == ["metergw"])
    }

    @Test func isHardened() throws {
        let service = try Self.service()
        for (key, value) in [
            ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
            ("DevicePolicy", "closed"), ("CapabilityBoundingSet", ""), ("RestrictSUIDSGID", "yes"),
        ] {
            #expect(service[key] == [value], "\(key)=\(value)")
        }
        #expect(Set(service["DeviceAllow"] ?? []) == ["char-ttyUSB rw", "char-ttyACM rw", "char-ttyS rw"])
        let families = (service["RestrictAddressFamilies"] ?? []).flatMap { $0.split(separator: " ") }
        #expect(Set(families) == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"])
        // Nothing that would undo the above.
        #expect(service["PrivateDevices"] == nil, "PrivateDevices=yes would hide the serial ports")
        #expect(service["ReadWritePaths"] == nil, "the state directory is the only writable place")
        let unit = Self.parse(try Repository.text("tools/metergw.service"))
        #expect(unit["Install"]?["WantedBy"] == ["multi-user.target"])
    }

    /// systemd's own parser, where it is installed. It prints what it dislikes and still exits 0, so the test
    /// reads its words; the one thing it may say is that the binary is not installed on this machine.
    static func verify(_ path: String) throws -> [String]? {
        guard let analyze = Programs.find("systemd-analyze") else { return nil }
        let result = try Programs.run(analyze, ["verify", "--man=no", path])
        let absent = "Command /usr/local/bin/metergw is not executable"
        return result.output.split(separator: "\n").map(String.init)
            .filter { !$0.isEmpty && !$0.contains(absent) }
    }

    @Test func systemdAnalyzeVerifyAcceptsTheUnit() throws {
        guard let complaints = try Self.verify(Repository.root.appendingPathComponent("tools/metergw.service").path)
        else {
            print("skipped systemd-analyze verify: systemd-analyze is not installed")
            return
        }
        #expect(complaints.isEmpty, "\(complaints)")
    }

    @Test func systemdAnalyzeVerifyCatchesATypoAndABadValue() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let broken = try Repository.text("tools/metergw.service")
            .replacingOccurrences(of: "ProtectSystem=strict", with: "ProtectSystm=strict")
            .replacingOccurrences(of: "DevicePolicy=closed", with: "DevicePolicy=shut")
        let path = folder.appendingPathComponent("metergw.service").path
        try broken.write(toFile: path, atomically: true, encoding: .utf8)
        guard let complaints = try Self.verify(path) else {
            print("skipped systemd-analyze verify: systemd-analyze is not installed")
            return
        }
        #expect(complaints.contains { $0.contains("ProtectSystm") }, "\(complaints)")
        #expect(complaints.contains { $0.contains("shut") }, "\(complaints)")
    }
}
