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
            silent for the abort time (40 character times, at least 50 ms; docs/PROTOCOL.md §8). Requests and \
            responses are told apart by the frame's RESPONSE flag.
            --record saves what arrived, with times, as a trace that `metergw decode --trace` and `sniff --file` \
            replay. Stops after --count frames or --duration seconds, or on Ctrl-C.
            """)

    @OptionGroup var portOptions: PortOptions

    @Option(name: .shortAndLong, help: "Replay a trace recorded with --record instead of watching a port.")
    var file: String?

    @Option(help: "Save what arrives, with times, to this trace file.")
    var record: String?

    @Flag(help: "Print one JSON object per frame or garbage run, with a \"time\" field in seconds.")
    var json = false

    @Option(help: "Stop after this many frames.")
    var count: Int?

    @Option(help: "Stop after this many seconds.")
    var duration: Double?

    func validate() throws {
        if (self.portOptions.port == nil) == (self.file == nil) { throw ValidationError("give --port to watch, or --file to replay") }
        if self.file != nil && self.record != nil { throw ValidationError("--record works with --port") }
        if let count = self.count, count <= 0 { throw ValidationError("--count must be positive") }
        if let duration = self.duration, duration <= 0 { throw ValidationError("--duration must be positive") }
    }

    func run() throws {
        var report = StreamReport(json: self.json)
        if let file = self.file {
            report.replay(try BusTrace.read(file))
            report.finish(summary: false)
            if !self.json { Output.error("metergw: \(report.summary)") }
            return
        }
        let port = try self.portOptions.open()
        defer { try? port.close() }
        let settings = port.settings
        let recorder = try self.record.map { try BusTrace.Recorder(path: $0, line: settings) }
        let clock = ContinuousClock()
        let start = clock.now
        let end = self.duration.map { start + .milliseconds(Int64($0 * 1000)) }
        // Abort time of PROTOCOL.md §8: after this much silence a partial frame is reported as truncated.
        let abort = max(settings.characterTime * 40, .milliseconds(50))
        if !self.json { Output.error("metergw: sniffing \(port.path) at \(settings), Ctrl-C to stop") }

        while self.count.map({ report.frames < $0 }) ?? true {
            var deadline = clock.now + abort
            if let end { deadline = min(deadline, end) }
            let bytes: [UInt8]
            do {
                bytes = try port.read(upTo: 4096, deadline: deadline)
            } catch .timeout {
                report.silence(at: clock.now - start)
                if let end, clock.now >= end { break }
                continue
            } catch {
                throw CLIError(serial: error)
            }
            let time = clock.now - start
            try recorder?.record(bytes, at: time)
            report.feed(bytes[...], at: time)
        }
        if !self.json { Output.error("metergw: \(report.summary)") }
    }
}
