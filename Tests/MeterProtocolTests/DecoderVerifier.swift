import MetergwTestSupport
import Testing
@testable import MeterProtocol

/// Feeds a byte stream to `FrameDecoder` in many ways and checks that the same frames come out each time, at the
/// same stream offsets, and that the same bytes are reported as skipped (after swift-nio's
/// ByteToMessageDecoderVerifier).
struct DecoderVerifier {
    struct Outcome: Equatable, CustomStringConvertible {
        var frames: [(Frame, Int)]
        /// Stream offsets of every skipped byte (runs may be split differently by chunking).
        var skipped: Set<Int>

        static func == (a: Outcome, b: Outcome) -> Bool {
            a.frames.map(\.0) == b.frames.map(\.0) && a.frames.map(\.1) == b.frames.map(\.1) && a.skipped == b.skipped
        }

        var description: String {
            "frames at \(self.frames.map(\.1)) \(self.frames.map { Command.name(of: $0.0.command) }), "
                + "\(self.skipped.count) skipped bytes"
        }
    }

    /// Decodes `bytes` delivered as `chunks` (sizes that sum to the byte count).
    static func decode(_ bytes: [UInt8], chunks: [Int]) -> Outcome {
        var decoder = FrameDecoder()
        var outcome = Outcome(frames: [], skipped: [])
        var position = 0
        func drain() {
            while let item = decoder.next() {
                switch item {
                case .frame(let f, let offset): outcome.frames.append((f, offset))
                case .skipped(let offset, let count, _): outcome.skipped.formUnion(offset..<(offset + count))
                }
            }
        }
        for size in chunks {
            decoder.append(bytes[position..<(position + size)])
            position += size
            drain()
        }
        precondition(position == bytes.count)
        decoder.finish()
        drain()
        return outcome
    }

    static func randomChunks(_ count: Int, using rng: inout SeededGenerator) -> [Int] {
        var chunks: [Int] = []
        var left = count
        while left > 0 {
            let size = Int.random(in: 1...max(1, min(left, 40)), using: &rng)
            chunks.append(size)
            left -= size
        }
        return chunks
    }

    /// Checks one stream: whole, one byte at a time, and split at random points, all give `expected`.
    static func verify(_ bytes: [UInt8], expected: Outcome, label: String, seed: UInt64) {
        #expect(decode(bytes, chunks: bytes.isEmpty ? [] : [bytes.count]) == expected, "\(label): whole")
        #expect(decode(bytes, chunks: Array(repeating: 1, count: bytes.count)) == expected, "\(label): bytewise")
        var rng = SeededGenerator(seed: seed)
        for round in 0..<8 {
            let chunks = randomChunks(bytes.count, using: &rng)
            #expect(decode(bytes, chunks: chunks) == expected, "\(label): random split round \(round)")
        }
    }

    /// Every case alone, all concatenated, and each behind random leading garbage.
    static func verifyAll(_ cases: [(name: String, bytes: [UInt8])]) {
        var all: [UInt8] = []
        var allExpected = Outcome(frames: [], skipped: [])
        var rng = SeededGenerator(seed: 0x5EED)
        for (index, c) in cases.enumerated() {
            let expected = decode(c.bytes, chunks: c.bytes.isEmpty ? [] : [c.bytes.count])
            verify(c.bytes, expected: expected, label: c.name, seed: UInt64(index))

            // Leading garbage: random bytes, sometimes with start markers among them.
            let garbage = (0..<Int.random(in: 1...64, using: &rng)).map { _ in
                Bool.random(using: &rng) ? UInt8.random(in: 0...255, using: &rng) : Frame.startMarker
            }
            let shifted = Outcome(
                frames: expected.frames.map { ($0.0, $0.1 + garbage.count) },
                skipped: Set(expected.skipped.map { $0 + garbage.count }).union(0..<garbage.count))
            verify(garbage + c.bytes, expected: shifted, label: "\(c.name) behind garbage", seed: UInt64(index) + 100)

            allExpected.frames += expected.frames.map { ($0.0, $0.1 + all.count) }
            allExpected.skipped.formUnion(expected.skipped.map { $0 + all.count })
            all += c.bytes
        }
        // Concatenation can only join skipped runs, never lose or invent a frame.
        let concatenated = decode(all, chunks: [all.count])
        #expect(concatenated.frames.map(\.1) == allExpected.frames.map(\.1), "concatenated: frame offsets")
        #expect(concatenated.frames.map(\.0) == allExpected.frames.map(\.0), "concatenated: frames")
        verify(all, expected: concatenated, label: "all concatenated", seed: 999)
    }
}

@Suite struct DecoderTests {
    static var cases: [(name: String, bytes: [UInt8])] {
        ProtocolExamples.all.map { ($0.name, $0.frame.encoded()) } + ErrorExamples.all
    }

    @Test func verifierOverEveryCase() {
        DecoderVerifier.verifyAll(Self.cases)
    }

    @Test func goodFrameInsideGarbageIsFound() {
        let frame = ProtocolExamples.all[3].frame
        // A false start whose "header" swallows the real frame: the decoder must back off one byte and find it.
        var stream: [UInt8] = [0x7E, 0x01, 0x00, 0x05]
        stream += frame.encoded()
        let items = FrameDecoder.decodeAll(stream)
        #expect(items == [.skipped(offset: 0, count: 4, reason: .headerCheckMismatch), .frame(frame, offset: 4)])
    }

    @Test func oversizeLengthIsGarbageNotAWait() {
        var header: [UInt8] = [0x7E, 0x01, 0x00, 0x05, 0, 0, 0, 1, 0, 0x02, 0xFF, 0xFF]
        header.append(CRC8.checksum(header))
        var decoder = FrameDecoder()
        decoder.append(header)
        // Without finish(): the length alone tells it is garbage, no waiting for 65 kB.
        #expect(decoder.next() == .skipped(offset: 0, count: 13, reason: .lengthTooLarge))
        #expect(decoder.next() == nil)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func needMoreKeepsAtMostOneFrame() {
        let bytes = ProtocolExamples.all[3].frame.encoded()
        var decoder = FrameDecoder()
        decoder.append(bytes.dropLast())
        #expect(decoder.next() == nil)
        #expect(decoder.bufferedByteCount == bytes.count - 1)
        decoder.append(bytes.suffix(1))
        #expect(decoder.next() == .frame(ProtocolExamples.all[3].frame, offset: 0))
    }

    @Test func truncatedAtEndIsReported() {
        let bytes = Array(ProtocolExamples.all[3].frame.encoded().prefix(20))
        #expect(FrameDecoder.decodeAll(bytes) == [.skipped(offset: 0, count: 20, reason: .truncated)])
    }

    @Test func resetDropsBufferedBytesButKeepsOffsets() {
        let frame = ProtocolExamples.all[0].frame
        var decoder = FrameDecoder()
        decoder.append(frame.encoded().prefix(5))
        #expect(decoder.next() == nil)
        decoder.reset()
        decoder.append(frame.encoded())
        #expect(decoder.next() == .frame(frame, offset: 5))
    }
}
