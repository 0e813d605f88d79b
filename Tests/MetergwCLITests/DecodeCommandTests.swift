import Foundation
import MeterProtocol
import Testing

@Suite struct DecodeCommandTests {
    func fixture(_ name: String) -> String { CLI.fixtures.appendingPathComponent("\(name).hex").path }

    @Test func humanOutputShowsFieldsWithUnits() throws {
        let r = try CLI.run(["decode", "--file", fixture("read-status-response")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("@0"))
        #expect(r.stdout.contains("response  READ_STATUS"))
        #expect(r.stdout.contains("addr 5 serial 20251125 seq 2 (56 B)"))
        #expect(r.stdout.contains("register               1234567 Wh (1234.567 kWh)"))
        #expect(r.stdout.contains("meterTime              2026-11-25T08:30:00Z"))
        #expect(r.stdout.contains("1 frame, 0 garbage runs (0 B)"))
    }

    @Test func hexArgumentsDecode() throws {
        let hex = try String(contentsOfFile: fixture("apply-credit-gap-nak"), encoding: .utf8)
        let r = try CLI.run(["decode"] + hex.split(whereSeparator: \.isWhitespace).map(String.init))
        #expect(r.status == 0)
        #expect(r.stdout.contains("nak       APPLY_CREDIT"))
        #expect(r.stdout.contains("code                   sequence-gap"))
        #expect(r.stdout.contains("lastAppliedSequence    42"))
    }

    @Test func garbageIsShownWithOffsetAndReasonAndExits65() throws {
        let r = try CLI.run(["decode", "--file", fixture("error-noise-between-frames")])
        #expect(r.status == 65)
        #expect(r.stdout.contains("@0      garbage   9 B: header check (CRC-8) failed"))
        #expect(r.stdout.contains("@9      request   IDENTIFY"))
        #expect(r.stdout.contains("2 frames, 3 garbage runs (27 B)"))
    }

    @Test func invalidPayloadExits65() throws {
        let r = try CLI.run(["decode", "--file", fixture("error-unknown-command")])
        #expect(r.status == 65)
        #expect(r.stdout.contains("invalid payload: unknown command 0x3F"))
    }

    /// --json: one object per line, each parses, and they match the golden fixture item for item.
    @Test func jsonLinesMatchTheGoldenFixture() throws {
        let r = try CLI.run(["decode", "--json", "--file", fixture("error-noise-between-frames")])
        #expect(r.status == 65)
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let golden = try JSONSerialization.jsonObject(
            with: Data(contentsOf: CLI.fixtures.appendingPathComponent("error-noise-between-frames.json"))) as! [Any]
        #expect(lines.count == golden.count)
        for (line, expected) in zip(lines, golden) {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            #expect(NSDictionary(dictionary: object as! [String: Any]).isEqual(to: expected as! [String: Any]))
        }
    }

    /// Binary on standard input, decoded live, with the same result as the hex file.
    @Test func binaryStandardInput() throws {
        let bytes = parseHex(try String(contentsOfFile: fixture("read-events-response"), encoding: .utf8))!
        let r = try CLI.run(["decode", "--json", "--file", "-"], stdin: Data(bytes + [0x00]))
        #expect(r.status == 65)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(lines.first?.contains("\"command\":\"READ_EVENTS\"") == true)
        #expect(lines.last?.contains("\"type\":\"garbage\",\"offset\":56,\"length\":1") == true)
    }

    @Test func usageAndFileErrors() throws {
        let missing = try CLI.run(["decode", "--file", "/nonexistent/capture.bin"])
        #expect(missing.status == 66)
        #expect(missing.stderr.contains("no such file: /nonexistent/capture.bin"))
        let notHex = try CLI.run(["decode", "7E", "zz"])
        #expect(notHex.status == 64)
        #expect(notHex.stderr.contains("not hex"))
        let nothing = try CLI.run(["decode"])
        #expect(nothing.status == 64)
    }
}
