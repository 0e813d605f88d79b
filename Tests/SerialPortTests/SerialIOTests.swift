import MetergwTestSupport
import Foundation
import Testing

@testable import SerialPort

/// Deadline-bound I/O over real pseudo-terminals. Deadlines here are failure guards, not measurements: the only
/// timing asserted is that a timeout did not come before its deadline.
@Suite("Serial I/O over pseudo-terminals")
struct SerialIOTests {
    static let mebibyte = 1 << 20

    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(state: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Writes `data` in random chunk sizes on `writer` while `reader` reads it in random sizes.
    static func transfer(
        _ data: [UInt8],
        from writer: some SerialTransport,
        to reader: some SerialTransport,
        seed: UInt64
    ) throws -> [UInt8] {
        let peer = PeerThread {
            var generator = SeededGenerator(state: seed)
            var offset = 0
            while offset < data.count {
                let size = min(Int.random(in: 1...4096, using: &generator), data.count - offset)
                try writer.write(data[offset..<(offset + size)], deadline: guardDeadline(60))
                offset += size
            }
        }
        var generator = SeededGenerator(state: seed ^ 0xFFFF)
        var received: [UInt8] = []
        received.reserveCapacity(data.count)
        let deadline = guardDeadline(60)
        while received.count < data.count {
            let wanted = min(Int.random(in: 1...8192, using: &generator), data.count - received.count)
            received += try reader.read(upTo: wanted, deadline: deadline)
        }
        try peer.value()
        return received
    }

    @Test func oneMebibyteFromControllerToPort() throws {
        try withPortOnPair { pair, port throws in
            _ = try port.configure(LineSettings(baudRate: 115200))
            let data = Self.randomBytes(Self.mebibyte, seed: 0x5EED_0001)
            let received = try Self.transfer(data, from: pair, to: port, seed: 41)
            #expect(received.count == data.count)
            #expect(received == data)
        }
    }

    @Test func oneMebibyteFromPortToController() throws {
        try withPortOnPair { pair, port throws in
            _ = try port.configure(LineSettings(baudRate: 115200))
            let data = Self.randomBytes(Self.mebibyte, seed: 0x5EED_0002)
            let received = try Self.transfer(data, from: port, to: pair, seed: 42)
            #expect(received.count == data.count)
            #expect(received == data)
        }
    }

    @Test func readTimesOutAtTheDeadline() throws {
        try withPortOnPair { pair, port throws in
            let deadline = ContinuousClock.now + .milliseconds(50)
            #expect(throws: SerialError.timeout(operation: "read", path: port.path, partial: [])) {
                try port.read(upTo: 16, deadline: deadline)
            }
            #expect(ContinuousClock.now >= deadline)
            // The controller side times out the same way.
            let controllerDeadline = ContinuousClock.now + .milliseconds(50)
            #expect(throws: SerialError.timeout(operation: "read", path: pair.path, partial: [])) {
                try pair.read(upTo: 16, deadline: controllerDeadline)
            }
            #expect(ContinuousClock.now >= controllerDeadline)
        }
    }

    @Test func queuedBytesAreReturnedEvenPastTheDeadline() throws {
        try withPortOnPair { pair, port throws in
            try pair.write([1, 2, 3], deadline: guardDeadline())
            // Wait until they arrived, then read with a deadline already in the past.
            #expect(try port.readExactly(1, deadline: guardDeadline()) == [1])
            #expect(try port.readExactly(2, deadline: .now - .seconds(1)) == [2, 3])
        }
    }

    @Test func readExactlyTimeoutCarriesThePartialBytes() throws {
        try withPortOnPair { pair, port throws in
            try pair.write([0xA1, 0xA2, 0xA3], deadline: guardDeadline())
            let deadline = ContinuousClock.now + .seconds(1)
            do {
                _ = try port.readExactly(10, deadline: deadline)
                Issue.record("readExactly returned without 10 bytes")
            } catch {
                guard case SerialError.timeout(_, let path, let partial) = error else {
                    Issue.record("unexpected error \(error)")
                    return
                }
                #expect(path == port.path)
                #expect(partial == [0xA1, 0xA2, 0xA3])
                #expect(ContinuousClock.now >= deadline)
            }
        }
    }

    @Test func readUntilSilenceReturnsABurst() throws {
        try withPortOnPair { pair, port throws in
            // 300 baud: one character is 33 ms, so 30 character times is a 1 s silence, far above scheduling noise.
            _ = try port.configure(LineSettings(baudRate: 300))
            let first = Self.randomBytes(40, seed: 7)
            let second = Self.randomBytes(25, seed: 8)
            let peer = PeerThread {
                try pair.write(first, deadline: guardDeadline())
                Thread.sleep(forTimeInterval: 0.01)
                try pair.write(second, deadline: guardDeadline())
            }
            let burst = try port.readUntilSilence(characterTimes: 30, maxBytes: 1000, deadline: guardDeadline(20))
            try peer.value()
            #expect(burst == first + second)
            // Nothing more came: the next burst times out.
            #expect {
                try port.readUntilSilence(characterTimes: 3.5, maxBytes: 1000, deadline: .now + .milliseconds(50))
            } throws: { error in
                guard case SerialError.timeout(_, _, let partial) = error else { return false }
                return partial.isEmpty
            }
        }
    }

    @Test func readUntilSilenceStopsAtMaxBytes() throws {
        try withPortOnPair { pair, port throws in
            try pair.write(Array(0..<100), deadline: guardDeadline())
            var received: [UInt8] = []
            while received.count < 100 {
                let chunk = try port.readUntilSilence(characterTimes: 3.5, maxBytes: 30, deadline: guardDeadline())
                #expect(chunk.count <= 30)
                received += chunk
            }
            #expect(received == Array(0..<100))
        }
    }

    @Test func controllerReadsUntilSilenceToo() throws {
        try withPortOnPair { pair, port throws in
            pair.lineSettings = LineSettings(baudRate: 300)
            let request: [UInt8] = [0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B]
            try port.write(request, deadline: guardDeadline())
            #expect(try pair.readUntilSilence(characterTimes: 30, maxBytes: 256, deadline: guardDeadline()) == request)
        }
    }

    @Test func flushDiscardsQueuedInput() throws {
        try withPortOnPair { pair, port throws in
            try pair.write([9, 9, 9], deadline: guardDeadline())
            // Wait until the bytes are queued on the port, then discard them.
            _ = try port.readExactly(1, deadline: guardDeadline())
            try port.flush(.input)
            try port.flush(.both)
            try pair.write([7], deadline: guardDeadline())
            #expect(try port.readExactly(1, deadline: guardDeadline()) == [7])
        }
    }

    @Test func closingTheControllerRemovesThePort() throws {
        let pair = try PseudoTerminalPair()
        let port = try SerialPort.open(pair.subordinatePath)
        defer { try? port.close() }
        try pair.close()
        #expect(throws: SerialError.removed(path: port.path)) {
            try port.read(upTo: 16, deadline: guardDeadline())
        }
        #expect(throws: SerialError.removed(path: port.path)) {
            try port.write([1], deadline: guardDeadline())
        }
        // Closing a port whose device is gone succeeds: there is nothing to restore.
        try port.close()
    }

    @Test func controllerSeesTheSubordinateGoWhenItHoldsNone() throws {
        let pair = try PseudoTerminalPair(holdSubordinate: false)
        defer { try? pair.close() }
        let port = try SerialPort.open(pair.subordinatePath)
        try port.write([5], deadline: guardDeadline())
        #expect(try pair.readExactly(1, deadline: guardDeadline()) == [5])
        try port.close()
        #expect(throws: SerialError.removed(path: pair.path)) {
            try pair.read(upTo: 16, deadline: guardDeadline())
        }
    }

    @Test func controllerWithAHeldSubordinateJustWaits() throws {
        let pair = try PseudoTerminalPair()
        defer { try? pair.close() }
        let port = try SerialPort.open(pair.subordinatePath)
        try port.close()
        // No client, but the pair holds the subordinate: a plain timeout, not a hang-up.
        #expect(throws: SerialError.timeout(operation: "read", path: pair.path, partial: [])) {
            try pair.read(upTo: 16, deadline: .now + .milliseconds(20))
        }
    }
}
