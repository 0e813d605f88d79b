import Foundation
import MeterProtocol
import MetergwTestSupport
import Testing

/// The technician's commands against meter-emulator, both as separate processes on a real pseudo-terminal.
@Suite(.serialized) struct BusCommandTests {
    static func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    func emulator(_ arguments: [String]) throws -> EmulatorProcess {
        try EmulatorProcess(directory: try EmulatorProcess.makeDirectory(), arguments: arguments)
    }

    /// 32 meters with random 32-bit serials, found with collisions resolved and far fewer requests than addresses.
    @Test func scanFindsThirtyTwoMeters() throws {
        let emu = try self.emulator(["--meters", "32"])
        defer { emu.terminate() }
        let r = try CLI.run(["scan", "--port", emu.link, "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try Self.json(r.stdout)
        let meters = report["meters"] as? [[String: Any]] ?? []
        let found = Set(meters.compactMap { $0["serial"] as? Int })
        let expected = Set((1...32).map { Int(emu.serial(ofAddress: $0)) })
        #expect(found == expected)
        #expect(meters.allSatisfy { $0["credit"] is Int && $0["relay"] as? String == "closed" })
        let requests = report["requests"] as? Int ?? 0
        #expect(requests > 0 && requests < 10 * 32, "\(requests) requests for 32 meters")
        #expect((report["collisions"] as? Int ?? 0) > 0)
        let human = try CLI.run(["scan", "--port", emu.link])
        #expect(human.status == 0)
        #expect(human.stdout.contains("ADDR  SERIAL") && human.stdout.contains("32 meters found with"))
    }

    @Test func readShowsRegistersClockAndEvents() throws {
        let emu = try self.emulator(["--meters", "2"])
        defer { emu.terminate() }
        let r = try CLI.run(["read", "--port", emu.link, "--meter", "2", "--events"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("meter 2") && r.stdout.contains("electricity meter MGW-PM1 emulated"))
        #expect(r.stdout.contains("credit") && r.stdout.contains("Wh"))
        #expect(r.stdout.contains("meter clock") && r.stdout.contains("power-up"))
        let j = try Self.json(try CLI.run(["read", "--port", emu.link, "--meter", String(emu.serial(ofAddress: 1)),
                                           "--json"]).stdout)
        #expect(j["address"] as? Int == 1 && j["unit"] as? String == "Wh" && j["clockDriftSeconds"] is Int)
        let missing = try CLI.run(["read", "--port", emu.link, "--meter", "9", "--retries", "1", "--timeout", "100"])
        #expect(missing.status == 69)
        #expect(missing.stderr.contains("no answer from meter 9") && missing.stderr.contains("after 2 tries"))
    }

    @Test func signedCommandsRelayThresholdsClockAlarmsAndTopup() throws {
        let emu = try self.emulator(["--meters", "1"])
        defer { emu.terminate() }
        let base = ["--port", emu.link, "--meter", "1", "--keys", emu.keyFile]
        let open = try CLI.run(["relay", "open"] + base)
        #expect(open.status == 0 && open.stdout.contains("relay open (remote-command)"), "\(open.stderr)")
        let close = try CLI.run(["relay", "close", "--json"] + base)
        #expect(try Self.json(close.stdout)["relay"] as? String == "closed")
        let thresholds = try CLI.run(["thresholds", "--alarm", "30000", "--cutoff", "3000", "--json"] + base)
        #expect(try Self.json(thresholds.stdout)["alarm"] as? Int == 30000)
        let clock = try CLI.run(["clock", "sync", "--json"] + base)
        #expect(try Self.json(clock.stdout)["driftSeconds"] is Int)
        let all = try CLI.run(["clock", "sync", "--all", "--port", emu.link])
        #expect(all.status == 0 && all.stdout.contains("within 300 s"))
        let ack = try CLI.run(["alarms", "ack"] + base)
        #expect(ack.status == 0 && ack.stdout.contains("alarms still set"))

        let first = try CLI.run(["topup", "--units", "1000", "--seq", "1", "--json"] + base)
        #expect(try Self.json(first.stdout)["outcome"] as? String == "applied")
        let again = try CLI.run(["topup", "--units", "1000", "--seq", "1"] + base)
        #expect(again.status == 0 && again.stdout.contains("already applied"))
        let gap = try CLI.run(["topup", "--units", "1000", "--seq", "5"] + base)
        #expect(gap.status == 76 && gap.stderr.contains("sequence gap"))

        // Signed with another issuer's keys: refused, and said so.
        let stranger = try EmulatorProcess.makeDirectory().appendingPathComponent("keys").path
        let forged = try CLI.run(["relay", "open", "--port", emu.link, "--meter", "1", "--keys", stranger])
        #expect(forged.status == 76 && forged.stderr.contains("refused"))
    }

    /// A credit whose answer the bus loses is retried with the same bytes and applied exactly once.
    @Test func lostCreditAnswerIsAppliedOnce() throws {
        let emu = try self.emulator(["--meters", "1", "--faults", "meter1:drop=0.5", "--seed", "11"])
        defer { emu.terminate() }
        let base = ["--port", emu.link, "--meter", "1", "--keys", emu.keyFile, "--retries", "8"]
        let before = try Self.json(try CLI.run(["read", "--json"] + base.filter { $0 != emu.keyFile && $0 != "--keys" })
            .stdout)
        for seq in 1...4 {
            let r = try CLI.run(["topup", "--units", "1000", "--seq", String(seq), "--json"] + base)
            #expect(r.status == 0, "seq \(seq): \(r.stderr)")
        }
        let after = try Self.json(try CLI.run(["read", "--json"] + base.filter { $0 != emu.keyFile && $0 != "--keys" })
            .stdout)
        #expect(after["lastAppliedSequence"] as? Int == 4)
        let added = (after["credit"] as? Int ?? 0) - (before["credit"] as? Int ?? 0)
        // 4000 Wh added, less what the meter used meanwhile (a few Wh at most): never 5000 or more.
        #expect(added > 3_900 && added <= 4_000, "credit changed by \(added)")
    }

    /// Faults give the right answer after retries or the right error, never a wrong value.
    @Test func faultsGiveAnswersOrTypedErrors() throws {
        func read(_ faults: String, _ extra: [String] = []) throws -> CLI.Result {
            let emu = try self.emulator(["--meters", "1", "--faults", faults, "--seed", "3"])
            defer { emu.terminate() }
            return try CLI.run(["read", "--port", emu.link, "--meter", "1", "--json", "--timeout", "300"] + extra)
        }
        for ok in ["echo", "noise@6", "burst@16ms", "split@20ms", "corrupt=0.5", "drop=0.5"] {
            let r = try read(ok, ["--retries", "6"])
            #expect(r.status == 0, "\(ok): \(r.stderr)")
            #expect((try? Self.json(r.stdout))?["unit"] as? String == "Wh", "\(ok)")
        }
        let corrupt = try read("corrupt")
        #expect(corrupt.status == 65 && corrupt.stderr.contains("damaged"))
        let drop = try read("drop")
        #expect(drop.status == 69 && drop.stderr.contains("no answer from meter 1"))
        let truncated = try read("truncate")
        #expect(truncated.status == 65 && truncated.stderr.contains("damaged"), "\(truncated.stderr)")
        let late = try read("delay@2s", ["--retries", "1"])
        #expect(late.status == 69, "\(late.stderr)")
        let mute = try read("mute@60s")
        #expect(mute.status == 69)
        let wrong = try read("wrong-address")
        #expect(wrong.status == 69 && wrong.stderr.contains("answered instead"))
        // IDENTIFY is answered, then the adapter is gone: reported as such, never as a silent meter.
        let vanish = try read("vanish@0", ["--retries", "1"])
        #expect(vanish.status == 74 && vanish.stderr.contains("went away"), "\(vanish.stderr)")
    }

    @Test func cardWriterStatusReadWriteErase() throws {
        let emu = try self.emulator(["--meters", "1", "--card-writer"])
        defer { emu.terminate() }
        let none = try CLI.run(["card", "read", "--port", emu.link])
        #expect(none.status == 66 && none.stderr.contains("no card in the writer"))
        let blank = emu.directory.appendingPathComponent("blank.bin")
        try Data(repeating: 0xFF, count: 256).write(to: blank)
        try EmulatorProcess.command(["card", "insert", "--link", emu.link, "--file", blank.path])
        let status = try Self.json(try CLI.run(["card", "status", "--port", emu.link, "--json"]).stdout)
        #expect(status["cardPresent"] as? Bool == true && status["media"] as? String == "memory-256")
        let card = CLI.cardFixtures.appendingPathComponent("check.hex")
        let image = parseHex(try String(contentsOf: card, encoding: .utf8))!
        let file = emu.directory.appendingPathComponent("check.bin")
        try Data(image).write(to: file)
        let write = try CLI.run(["card", "write", "--port", emu.link, "--file", file.path])
        #expect(write.status == 0 && write.stdout.contains("identical"), "\(write.stderr)")
        let read = try CLI.run(["card", "read", "--port", emu.link, "--json"])
        #expect(read.status == 0 && read.stdout.contains("\"cardType\":\"check\""), "\(read.stderr)")
        let erase = try CLI.run(["card", "erase", "--port", emu.link])
        #expect(erase.status == 0 && erase.stdout.contains("erased"))
        let after = try CLI.run(["card", "read", "--port", emu.link])
        #expect(after.status == 65)  // all FF: not a card image any more
    }

    @Test func doctorChecksAPort() throws {
        let emu = try self.emulator(["--meters", "1"])
        defer { emu.terminate() }
        let r = try CLI.run(["doctor", "--port", emu.link, "--json"])
        #expect(r.status == 0, "\(r.stdout) \(r.stderr)")
        let findings = try Self.json(r.stdout)["findings"] as? [[String: Any]] ?? []
        let checks = findings.compactMap { $0["check"] as? String }
        #expect(checks == ["exists", "permission", "holders", "line settings", "RS-485", "adapter", "echo", "answers"])
        #expect(findings.last?["status"] as? String == "ok")
        let missing = try CLI.run(["doctor", "--port", "/dev/ttyUSB-none"])
        #expect(missing.status == 1 && missing.stdout.contains("does not exist") && missing.stdout.contains("fix:"))
    }
}
