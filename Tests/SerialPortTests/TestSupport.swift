import MetergwTestSupport
import Foundation
import Testing

@testable import SerialPort

/// A deadline that only guards against a hung test; never used to measure anything.
func guardDeadline(_ seconds: Int = 10) -> ContinuousClock.Instant {
    .now + .seconds(seconds)
}

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
struct TemporaryDirectory {
    let path: String

    init() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("serialport-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        self.path = url.path
    }

    func cleanup() {
        try? FileManager.default.removeItem(atPath: self.path)
    }
}

/// A pseudo-terminal pair with a SerialPort open on its subordinate, both closed at the end of `body`.
func withPortOnPair<T>(
    holdSubordinate: Bool = true,
    _ body: (PseudoTerminalPair, SerialPort) throws -> T
) throws -> T {
    let pair = try PseudoTerminalPair(holdSubordinate: holdSubordinate)
    defer { try? pair.close() }
    let port = try SerialPort.open(pair.subordinatePath)
    defer { try? port.close() }
    return try body(pair, port)
}

/// This process's name as /proc/self/comm has it (what DeviceHolder reports).
func ownProgramName() throws -> String {
    try String(contentsOfFile: "/proc/self/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
}
