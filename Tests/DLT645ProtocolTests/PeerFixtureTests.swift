import Foundation
import Testing
@testable import DLT645Protocol

/// Frames captured from the dlt645 package (Tests/InteropTests, METERGW_REGENERATE_FIXTURES=1): every frame decodes
/// with the FE preamble skipped and our encoder produces it byte for byte; the library's deviations show in them.
@Suite struct PeerFixtureTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/peers")

    static func frames(_ name: String) throws -> [(String, DLT645Frame)] {
        let data = try Data(contentsOf: folder.appendingPathComponent(name + ".json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let list = try #require(object["frames"] as? [[String: String]])
        var out: [(String, DLT645Frame)] = []
        for entry in list {
            let (direction, hex) = try #require(entry.first)
            let bytes = hex.split(separator: " ").compactMap { UInt8($0, radix: 16) }
            for item in DLT645Decoder.decodeAll(bytes) {
                guard case .frame(let frame, _) = item else {
                    Issue.record("\(name): \(item) in \(hex)")
                    continue
                }
                let preamble = bytes.prefix { $0 == 0xFE }.count
                if DLT645Decoder.decodeAll(bytes).count == 1 {
                    #expect(frame.encoded(preamble: preamble) == bytes, "\(hex)")
                }
                out.append((direction, frame))
            }
        }
        return out
    }

    @Test func dlt645MasterFrames() throws {
        let frames = try Self.frames("dlt645-master")
        let requests = frames.filter { $0.0 == "tx" }.map(\.1)
        // Told "785634120000", the library sends 78 56 34 12 00 00: the meter 000012345678 in standard order.
        #expect(requests.first?.address == DLT645Address("000012345678"))
        #expect(requests.first.flatMap { DataIdentifier(wire: $0.data[...]) } == .forwardActiveTotal)
        #expect(requests.contains { $0.function == .readAddress && $0.address == .wildcard })
        // Its broadcast time is in natural order (YY MM DD hh mm ss), not the standard's ss mm hh DD MM YY.
        let time = try #require(requests.first { $0.function == .broadcastTime })
        #expect(time.address == .broadcast && time.data.count == 6 && time.data[0] >= 0x20)
        let answers = frames.filter { $0.0 == "rx" }.map(\.1)
        #expect(answers.first.flatMap(DLT645Read.answer).map { Array($0.1) } == [0x56, 0x34, 0x12, 0x00])
        #expect(answers.contains { $0.isAbnormal && $0.data == [DLT645ErrorWord.noDataRequested.rawValue] })
    }

    @Test func dlt645SlaveFrames() throws {
        let frames = try Self.frames("dlt645-slave")
        let answers = frames.filter { $0.0 == "tx" }.map(\.1)
        // The slave's own address goes high byte first: 00 00 12 34 56 78 for 000012345678.
        #expect(answers.first?.address == DLT645Address(wire: [0x00, 0x00, 0x12, 0x34, 0x56, 0x78]))
        #expect(answers.first.flatMap(DLT645Read.answer).map { Array($0.1) } == [0x56, 0x34, 0x12, 0x00])
        // Asked at the standard address, it answers anyway, abnormally ("other error"), from the address asked.
        let abnormal = try #require(answers.first { $0.isAbnormal })
        #expect(abnormal.data == [DLT645ErrorWord.other.rawValue])
        #expect(abnormal.address == DLT645Address("000012345678"))
    }
}
