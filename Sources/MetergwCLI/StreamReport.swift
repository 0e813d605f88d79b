import MeterProtocol
#if canImport(Glibc)
import Glibc
#endif

/// Decodes a byte stream as it comes (a file, standard input, a port, a trace) and prints each frame or garbage
/// run once it is known, for `decode` and `sniff` alike.
struct StreamReport {
    let json: Bool
    private var decoder = FrameDecoder()
    /// The bytes the decoder still holds, kept to print skipped runs.
    private var window: [UInt8] = []
    private var windowOffset = 0
    /// Time of the bytes being fed, printed before each item when set (sniff, traces).
    private var time: Duration?
    private(set) var frames = 0
    private(set) var invalidFrames = 0
    private(set) var garbageRuns = 0
    private(set) var garbageBytes = 0

    init(json: Bool) { self.json = json }

    var clean: Bool { self.garbageRuns == 0 && self.invalidFrames == 0 }

    /// A whole capture: decoded as one stream, so garbage runs read the same as in the golden files.
    mutating func decodeAll(_ bytes: [UInt8]) {
        self.window += bytes
        self.decoder.append(bytes)
        self.decoder.finish()
        self.drain()
    }

    mutating func decodeLive(fd: Int32) throws {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError(.ioError, "reading standard input failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return }
            self.feed(buffer[0..<n], at: nil)
        }
    }

    /// Bytes that arrived at `time` (since the start), or without a time.
    mutating func feed(_ bytes: ArraySlice<UInt8>, at time: Duration?) {
        self.time = time
        self.window += bytes
        self.decoder.append(bytes)
        self.drain()
    }

    /// The line went silent at `time`: a frame begun before it will not be completed (PROTOCOL.md §2.4).
    mutating func silence(at time: Duration?) {
        guard self.decoder.bufferedByteCount > 0 else { return }
        self.time = time
        self.decoder.finish()
        self.drain()
        self.decoder.resume()
    }

    /// Replays a recorded trace: its chunks at their times, with the recorded silences.
    mutating func replay(_ trace: BusTrace) {
        let abort = max(trace.line.characterTime * 40, .milliseconds(50))
        var previous: Duration?
        for chunk in trace.chunks {
            if let previous, chunk.time - previous >= abort { self.silence(at: previous + abort) }
            self.feed(chunk.bytes[...], at: chunk.time)
            previous = chunk.time
        }
    }

    mutating func finish(summary: Bool) {
        self.decoder.finish()
        self.drain()
        guard summary, !self.json else { return }
        Output.line(self.summary)
    }

    var summary: String {
        var text = "\(self.frames) frame\(self.frames == 1 ? "" : "s")"
        if self.invalidFrames > 0 { text += ", \(self.invalidFrames) with an invalid payload" }
        text += ", \(self.garbageRuns) garbage run\(self.garbageRuns == 1 ? "" : "s") (\(self.garbageBytes) B)"
        return text
    }

    private mutating func drain() {
        while let item = self.decoder.next() {
            var skipped: ArraySlice<UInt8>?
            switch item {
            case .frame:
                self.frames += 1
                if !item.isValidMessage { self.invalidFrames += 1 }
            case .skipped(let offset, let count, _):
                self.garbageRuns += 1
                self.garbageBytes += count
                let start = offset - self.windowOffset
                skipped = self.window[start..<(start + count)]
            }
            let stamp = self.time.map { FrameFormatter.decimal(Int64($0.microseconds / 1000), scale: 3) }
            if self.json {
                guard case .object(var members) = item.jsonObject(skippedBytes: skipped) else { continue }
                if let stamp { members.insert(("time", .string(stamp)), at: 0) }
                Output.line(JSONValue.object(members).rendered())
            } else {
                for line in FrameFormatter.lines(for: item, bytes: skipped, timestamp: stamp.map { $0.padding(9) }) {
                    Output.line(line)
                }
            }
        }
        // Keep only what the decoder still holds, so a long live decode does not grow without bound.
        let drop = self.window.count - self.decoder.bufferedByteCount
        if drop > 0 {
            self.window.removeFirst(drop)
            self.windowOffset += drop
        }
    }
}

extension Duration {
    /// Whole microseconds, rounded down; integer arithmetic only.
    var microseconds: Int64 {
        let (seconds, attoseconds) = self.components
        return seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }
}
