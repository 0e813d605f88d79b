import ArgumentParser
import MeterProtocol
import SerialPort

/// `metergw sniff`: a passive monitor that prints every frame on a bus as it passes.
struct Sniff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch a bus passively and print every frame with its time and decoded fields.",
        discussion: """
            Never transmits. Each line starts with the seconds since the sniff began. Bytes that are not valid \
            frames are shown as garbage with the reason; a frame cut short is reported once the line has been \
            silent for the abort time (40 character times, at least 50 ms; docs/PROTOCOL.md §8).
            Stops after --count frames or --duration seconds, or on Ctrl-C.
            """)

    @OptionGroup var portOptions: PortOptions

    @Flag(help: "Print one JSON object per frame or garbage run, with a \"time\" field in seconds.")
    var json = false

    @Option(help: "Stop after this many frames.")
    var count: Int?

    @Option(help: "Stop after this many seconds.")
    var duration: Double?

    func validate() throws {
        if let count = self.count, count <= 0 { throw ValidationError("--count must be positive") }
        if let duration = self.duration, duration <= 0 { throw ValidationError("--duration must be positive") }
    }

    func run() throws {
        let port = try self.portOptions.open()
        defer { try? port.close() }
        let settings = port.settings
        let clock = ContinuousClock()
        let start = clock.now
        let end = self.duration.map { start + .milliseconds(Int64($0 * 1000)) }
        // Abort time of PROTOCOL.md §8: after this much silence a partial frame is reported as truncated.
        let abort = max(settings.characterTime * 40, .milliseconds(50))
        if !self.json { Output.error("metergw: sniffing \(port.path) at \(settings), Ctrl-C to stop") }

        var decoder = FrameDecoder()
        var window: [UInt8] = []
        var windowOffset = 0
        var frames = 0
        var garbage = 0

        func emit(_ item: DecodedItem, at time: Duration) {
            var skipped: ArraySlice<UInt8>?
            switch item {
            case .frame: frames += 1
            case .skipped(let offset, let count, _):
                garbage += 1
                skipped = window[(offset - windowOffset)..<(offset - windowOffset + count)]
            }
            let seconds = FrameFormatter.decimal(Int64(time / .milliseconds(1)), scale: 3)
            if self.json {
                guard case .object(var members) = item.jsonObject(skippedBytes: skipped) else { return }
                members.insert(("time", .string(seconds)), at: 0)
                Output.line(JSONValue.object(members).rendered())
            } else {
                for line in FrameFormatter.lines(for: item, bytes: skipped, timestamp: seconds.padding(9)) {
                    Output.line(line)
                }
            }
        }

        func drain() {
            while let item = decoder.next() {
                emit(item, at: clock.now - start)
                if let count = self.count, frames >= count { return }
            }
            let drop = window.count - decoder.bufferedByteCount
            if drop > 0 {
                window.removeFirst(drop)
                windowOffset += drop
            }
        }

        while true {
            if let count = self.count, frames >= count { break }
            var deadline = clock.now + abort
            if let end { deadline = min(deadline, end) }
            do {
                let bytes = try port.read(upTo: 4096, deadline: deadline)
                window += bytes
                decoder.append(bytes)
                drain()
            } catch .timeout {
                // Silence: anything half-received will not be completed.
                if decoder.bufferedByteCount > 0 {
                    decoder.finish()
                    drain()
                    decoder.resume()
                }
                if let end, clock.now >= end { break }
            } catch {
                throw CLIError(serial: error)
            }
        }
        if !self.json { Output.error("metergw: \(frames) frames, \(garbage) garbage runs") }
    }
}
