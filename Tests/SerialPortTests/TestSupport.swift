import Foundation
import Testing

@testable import SerialPort

/// Runs the peer side of a test on its own thread. Never on a Swift task: the cooperative pool has only as many
/// threads as cores (2 here), and blocking reads in parallel tests could starve a peer task until its deadline.
final class PeerThread<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    // Written by the thread before `done` is signalled, read after waiting on it.
    private var result: Result<T, any Error>?

    init(_ body: @escaping @Sendable () throws -> T) {
        let thread = Thread { [self] in
            do {
                self.result = .success(try body())
            } catch {
                self.result = .failure(error)
            }
            self.done.signal()
        }
        thread.start()
    }

    /// Waits for the thread (its own deadlines bound the wait) and returns its result.
    func value() throws -> T {
        self.done.wait()
        return try self.result!.get()
    }
}

/// A deadline that only guards against a hung test; never used to measure anything.
func guardDeadline(_ seconds: Int = 10) -> ContinuousClock.Instant {
    .now + .seconds(seconds)
}

/// SplitMix64: a small seeded generator, so a failing random transfer can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
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
