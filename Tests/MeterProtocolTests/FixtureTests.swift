import Foundation
import Testing
@testable import MeterProtocol

@Suite struct FixtureTests {
    static let docPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../docs/PROTOCOL.md").standardized

    @Test func regenerateWhenAsked() throws {
        guard Fixtures.regenerate else { return }
        for (name, frame) in ProtocolExamples.all { try Fixtures.write(name, frame.encoded()) }
        for (name, bytes) in ErrorExamples.all { try Fixtures.write(name, bytes) }
    }

    /// Every example and error stream has a fixture, and its bytes are what the encoder produces today.
    @Test func fixturesMatchTheExamples() throws {
        let names = Set(try Fixtures.names())
        for (name, frame) in ProtocolExamples.all {
            #expect(names.contains(name), "missing fixture \(name)")
            let fixture = try Fixtures.hex(name)
            #expect(fixture == frame.encoded(), "fixture \(name) differs from the encoder")
        }
        for (name, bytes) in ErrorExamples.all {
            #expect(names.contains(name), "missing fixture \(name)")
            let fixture = try Fixtures.hex(name)
            #expect(fixture == bytes, "fixture \(name) differs from its construction")
        }
    }

    /// Decoding each .hex gives exactly the reviewed .json.
    @Test(arguments: try Fixtures.names())
    func decodesToGoldenJSON(name: String) throws {
        let bytes = try Fixtures.hex(name)
        let expected = try Fixtures.json(name)
        #expect(Fixtures.decodedJSON(bytes) == expected)
    }

    /// Valid examples decode to one frame that re-encodes to the same bytes, with a message (not an error).
    @Test func examplesAreSingleValidFrames() throws {
        for (name, frame) in ProtocolExamples.all {
            let items = FrameDecoder.decodeAll(frame.encoded())
            #expect(items == [.frame(frame, offset: 0)], "\(name)")
            #expect(items.allSatisfy { $0.isValidMessage }, "\(name) payload does not decode")
        }
    }

    /// docs/PROTOCOL.md shows every example's bytes exactly as the fixture holds them.
    @Test func specShowsEveryExample() throws {
        let spec = try String(contentsOf: Self.docPath, encoding: .utf8)
        for (name, frame) in ProtocolExamples.all {
            guard let marker = spec.range(of: "fixture `\(name)`") else {
                Issue.record("docs/PROTOCOL.md has no example for fixture `\(name)`")
                continue
            }
            let after = spec[marker.upperBound...]
            guard let open = after.range(of: "```hex\n"), let close = after[open.upperBound...].range(of: "```")
            else {
                Issue.record("no hex block after fixture `\(name)`")
                continue
            }
            let block = String(after[open.upperBound..<close.lowerBound])
            #expect(parseHex(block) == frame.encoded(), "PROTOCOL.md example \(name) differs from the encoder")
        }
    }
}
