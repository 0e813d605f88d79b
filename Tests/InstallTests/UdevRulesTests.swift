import Foundation
import Testing

@Suite struct UdevRulesTests {
    typealias Kind = UdevRuleLinter.Kind

    static let ruleFiles = ["udev/60-metergw.rules", "udev/61-metergw-access.rules"]

    @Test func theRepositoryHoldsBothRuleFiles() throws {
        #expect(try Repository.files(in: "udev", suffix: ".rules") == Self.ruleFiles)
    }

    @Test(arguments: ruleFiles) func ourRulesPassTheLint(file: String) throws {
        let problems = UdevRuleLinter.lint(try Repository.text(file), file: file)
        #expect(problems.isEmpty, "\(problems.map(\.description).joined(separator: "\n"))")
    }

    @Test func theNamingFileTagsEverySupportedAdapterAndNamesItBySerial() throws {
        let (rules, _) = UdevRuleLinter.lintSyntax(try Repository.text("udev/60-metergw.rules"), file: "60")
        let tagged = rules.filter { $0.assignments.contains(.init(key: "ENV", attribute: "ID_METERGW", op: "=",
                                                                    value: "1")) }
        let vendors = tagged.compactMap { rule in rule.assignments.first { $0.attribute == "idVendor" }?.value }
        #expect(Set(vendors) == ["0403", "1a86", "10c4", "067b"])
        let links = rules.flatMap(\.assignments).filter { $0.key == "SYMLINK" }
        #expect(links.map(\.op) == ["+="])
        #expect(links.first?.value.hasPrefix("metergw/") == true)
        // The serial number comes from the USB attribute, read on the adapter's own device.
        let serial = rules.first { $0.assignments.contains { $0.attribute == "ID_METERGW_SERIAL" && $0.op == "=" } }
        #expect(serial?.assignments.contains { $0.attribute == "serial" && $0.key == "ATTRS" } == true)
        #expect(serial?.assignments.contains { $0.attribute == "idVendor" && $0.key == "ATTRS" } == true)
    }

    @Test func theAccessFileGrantsDialoutAndSetsTheFTDILatencyByAttribute() throws {
        let (rules, _) = UdevRuleLinter.lintSyntax(try Repository.text("udev/61-metergw-access.rules"), file: "61")
        let all = rules.flatMap(\.assignments)
        #expect(all.contains(.init(key: "GROUP", attribute: nil, op: "=", value: "dialout")))
        #expect(all.contains(.init(key: "MODE", attribute: nil, op: "=", value: "0660")))
        #expect(all.contains(.init(key: "TAG", attribute: nil, op: "+=", value: "systemd")))
        #expect(all.contains(.init(key: "ATTR", attribute: "device/latency_timer", op: "=", value: "1")))
        #expect(!all.contains { $0.key == "RUN" })
    }

    // MARK: The lint rejects real mistakes

    /// A minimal good file; each bad case below changes one thing in it.
    static let good = """
        # comment
        ACTION!="add|change", GOTO="t_end"
        SUBSYSTEM!="tty", GOTO="t_end"
        ATTRS{idVendor}=="0403", \\
            ENV{ID_METERGW}="1", SYMLINK+="metergw/$attr{serial}"
        ENV{ID_METERGW}=="1", GROUP="dialout", MODE="0660", TAG+="systemd", ATTR{device/latency_timer}="1"
        LABEL="t_end"
        """

    @Test func theGoodExamplePasses() {
        #expect(UdevRuleLinter.lint(Self.good, file: "good").isEmpty)
    }

    struct Bad: Sendable, CustomStringConvertible {
        var name: String
        /// Replacements made in the good example, in order.
        var edits: [Edit]
        var expected: Kind
        var description: String { name }

        struct Edit: Sendable {
            var replace: String
            var with: String
        }

        init(_ name: String, _ replace: String, _ with: String, _ expected: Kind) {
            self.init(name, [Edit(replace: replace, with: with)], expected)
        }

        init(_ name: String, _ edits: [Edit], _ expected: Kind) {
            self.name = name
            self.edits = edits
            self.expected = expected
        }
    }

    static let badCases: [Bad] = [
        Bad("world-writable 0666", #"MODE="0660""#, #"MODE="0666""#, .worldAccessibleMode("0666")),
        Bad("others may write", #"MODE="0660""#, #"MODE="0662""#, .worldAccessibleMode("0662")),
        Bad("others may read", #"MODE="0660""#, #"MODE="664""#, .worldAccessibleMode("664")),
        Bad("mode not octal", #"MODE="0660""#, #"MODE="rw-rw----""#, .badMode("rw-rw----")),
        Bad("RUN of /bin/sh", #"TAG+="systemd""#, #"RUN+="/bin/sh -c 'echo 1 > /sys$devpath/device/latency_timer'""#,
            .shellInRun("/bin/sh -c 'echo 1 > /sys$devpath/device/latency_timer'")),
        Bad("RUN of bash by name", #"TAG+="systemd""#, #"RUN+="bash /usr/local/bin/x""#,
            .shellInRun("bash /usr/local/bin/x")),
        Bad("RUN of a shell through env", #"TAG+="systemd""#, #"RUN{program}+="/usr/bin/env dash -c true""#,
            .shellInRun("/usr/bin/env dash -c true")),
        Bad("no ACTION guard", #"ACTION!="add|change", GOTO="t_end""#, "", .missingActionGuard),
        Bad("no SUBSYSTEM guard", #"SUBSYSTEM!="tty", GOTO="t_end""#, "", .missingSubsystemGuard),
        Bad("a guard that does something before jumping", #"SUBSYSTEM!="tty", GOTO"#,
            #"SUBSYSTEM!="tty", MODE="0660", GOTO"#, .missingSubsystemGuard),
        Bad("GOTO without its LABEL", #"LABEL="t_end""#, #"LABEL="t_ned""#, .missingLabel("t_end")),
        Bad("LABEL before its GOTO",
            [.init(replace: #"LABEL="t_end""#, with: ""), .init(replace: "# comment", with: #"LABEL="t_end""#)],
            .missingLabel("t_end")),
        Bad("the same LABEL twice", #"LABEL="t_end""#, "LABEL=\"t_end\"\nLABEL=\"t_end\"", .duplicateLabel("t_end")),
        Bad("unknown key", #"TAG+="systemd""#, #"PERMISSIONS="0660""#, .unknownKey("PERMISSIONS")),
        Bad("lower-case key", #"TAG+="systemd""#, #"tag+="systemd""#,
            .syntax(#"expected a KEY at "tag+="systemd", ATTR""#)),
        Bad("an assignment where a match is meant", #"ATTRS{idVendor}=="0403""#, #"ATTRS{idVendor}="0403""#,
            .operatorNotAllowed(key: "ATTRS", op: "=")),
        Bad("a match where an assignment is meant", #"GROUP="dialout""#, #"GROUP=="dialout""#,
            .operatorNotAllowed(key: "GROUP", op: "==")),
        Bad("NAME+= (udev never appends names)", #"SYMLINK+="#, #"NAME+="#, .operatorNotAllowed(key: "NAME", op: "+=")),
        Bad("an operator udev does not have", #"SUBSYSTEM!="tty""#, #"SUBSYSTEM=!"tty""#,
            .syntax("the value of SUBSYSTEM must be in double quotes")),
        Bad("an unquoted value", #"MODE="0660""#, #"MODE=0660"#, .syntax("the value of MODE must be in double quotes")),
        Bad("single quotes", #"GROUP="dialout""#, #"GROUP='dialout'"#,
            .syntax("the value of GROUP must be in double quotes")),
        Bad("an unclosed quote", #"latency_timer}="1""#, #"latency_timer}="1"#,
            .syntax("the value of ATTR has no closing quote")),
        Bad("a missing comma", #"GROUP="dialout", MODE"#, #"GROUP="dialout" MODE"#,
            .syntax(#"expected a comma after GROUP="dialout" at "MODE="0660", TAG+="s""#)),
        Bad("a trailing comma", #"latency_timer}="1""#, #"latency_timer}="1","#, .syntax("the line ends with a comma")),
        Bad("ENV without a name", #"ENV{ID_METERGW}=="1", GROUP"#, #"ENV=="1", GROUP"#,
            .attributeRequired(key: "ENV")),
        Bad("an attribute on a key that takes none", #"GROUP="dialout""#, #"GROUP{x}="dialout""#,
            .attributeNotAllowed(key: "GROUP")),
        Bad("a lost line continuation", "\"0403\", \\\n", "\"0403\",\n", .syntax("the line ends with a comma")),
    ]

    @Test(arguments: badCases) func theLintRejects(_ bad: Bad) {
        var text = Self.good
        for edit in bad.edits {
            #expect(text.contains(edit.replace), "the case must change the good example")
            text = text.replacingOccurrences(of: edit.replace, with: edit.with)
        }
        let problems = UdevRuleLinter.lint(text, file: "bad")
        #expect(problems.map(\.kind).contains(bad.expected),
                "\(bad.name): got \(problems.map(\.description))")
    }

    @Test func problemsCarryTheirLineNumber() {
        let text = Self.good.replacingOccurrences(of: #"MODE="0660""#, with: #"MODE="0666""#)
        #expect(UdevRuleLinter.lint(text, file: "f").map(\.description)
                == [#"f:6: MODE "0666" gives other users access; use 0660 and a group"#])
    }

    /// The grammar must not be stricter than udev: it accepts the rules that this machine's udev ships.
    @Test func theSyntaxCheckAcceptsTheSystemsOwnRules() throws {
        let folders = ["/usr/lib/udev/rules.d", "/lib/udev/rules.d"]
        guard let folder = folders.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            print("skipped: no system udev rules on this machine (\(folders.joined(separator: ", ")))")
            return
        }
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".rules") }
        #expect(!files.isEmpty)
        for name in files {
            let text = try String(contentsOfFile: "\(folder)/\(name)", encoding: .utf8)
            let (_, problems) = UdevRuleLinter.lintSyntax(text, file: name)
            #expect(problems.isEmpty, "\(problems.map(\.description))")
        }
    }

    /// systemd 254 and later check rules themselves with `udevadm verify`; older ones and containers skip.
    @Test func udevadmVerifyAcceptsOurRules() throws {
        guard let udevadm = Programs.find("udevadm") else {
            print("skipped udevadm verify: udevadm is not installed (the udev package; absent in containers)")
            return
        }
        let probe = try Programs.run(udevadm, ["verify", "--help"])
        guard probe.status == 0 else {
            print("skipped udevadm verify: this udevadm has no verify command (systemd 254 and later)")
            return
        }
        let paths = Self.ruleFiles.map { Repository.root.appendingPathComponent($0).path }
        let result = try Programs.run(udevadm, ["verify", "--resolve-names=never"] + paths)
        #expect(result.status == 0, "\(result.output)")
    }
}
