import Foundation
import MeterProtocol

/// Golden files: `Fixtures/frames/NAME.hex` (input) and `NAME.json` (what decoding it must give).
enum Fixtures {
    /// Set METERGW_REGENERATE_FIXTURES=1 to rewrite the files from the examples (then review the diff).
    static var regenerate: Bool { ProcessInfo.processInfo.environment["METERGW_REGENERATE_FIXTURES"] == "1" }

    static let sourceDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/frames")

    static var directory: URL {
        Bundle.module.resourceURL!.appendingPathComponent("Fixtures/frames")
    }

    static func names() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".hex") }
            .map { String($0.dropLast(4)) }
            .sorted()
    }

    static func hex(_ name: String) throws -> [UInt8] {
        let text = try String(contentsOf: directory.appendingPathComponent("\(name).hex"), encoding: .utf8)
        guard let bytes = parseHex(text) else { throw FixtureError.badHex(name) }
        return bytes
    }

    static func json(_ name: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent("\(name).json"), encoding: .utf8)
    }

    /// The decoded form of a stream, as the golden .json holds it.
    static func decodedJSON(_ bytes: [UInt8]) -> String {
        let items = FrameDecoder.decodeAll(bytes).map { item -> JSONValue in
            if case .skipped(let offset, let count, _) = item {
                return item.jsonObject(skippedBytes: bytes[offset..<(offset + count)])
            }
            return item.jsonObject()
        }
        return JSONValue.array(items).pretty() + "\n"
    }

    /// Hex as written in fixtures and in the spec: 16 bytes a line.
    static func hexText(_ bytes: [UInt8]) -> String {
        stride(from: 0, to: bytes.count, by: 16).map { hexString(bytes[$0..<min($0 + 16, bytes.count)]) }
            .joined(separator: "\n") + "\n"
    }

    static func write(_ name: String, _ bytes: [UInt8]) throws {
        try FileManager.default.createDirectory(at: sourceDirectory, withIntermediateDirectories: true)
        try hexText(bytes).write(to: sourceDirectory.appendingPathComponent("\(name).hex"), atomically: true,
                                 encoding: .utf8)
        try decodedJSON(bytes).write(to: sourceDirectory.appendingPathComponent("\(name).json"), atomically: true,
                                     encoding: .utf8)
    }

    enum FixtureError: Error { case badHex(String) }
}
