import Foundation

/// SplitMix64: a small seeded generator, so every random test replays from its seed (tests and benchmarks only).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }
    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Runs the peer side of a test on its own thread. Never on a Swift task: the cooperative pool has only as many
/// threads as cores (2 here), and blocking reads in parallel tests could starve a peer task until its deadline.
public final class PeerThread<T: Sendable>: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    // Written by the thread before `done` is signalled, read after waiting on it.
    private var result: Result<T, any Error>?

    public init(_ body: @escaping @Sendable () throws -> T) {
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
    public func value() throws -> T {
        self.done.wait()
        return try self.result!.get()
    }
}
