import ModbusProtocol
import MeterProtocol
import SerialPort

/// What the bus master saw while it waited for an answer: one entry per try, with the bytes as they arrived and
/// when, so that a person can tell a silent meter from a damaged line from a wrong address.
public struct Evidence: Sendable, Equatable, CustomStringConvertible {
    public var target: Target
    /// The request's command byte.
    public var command: UInt8
    public var sequence: UInt8
    public var line: LineSettings
    /// The request exactly as sent on every try (retries send the same bytes).
    public var requestBytes: [UInt8]
    public var attempts: [Attempt]
    /// The request's name where it is not a native command ("Modbus read input registers 72+2", "DL/T 645 read
    /// data 00 01 00 00"); nil for native requests (named from `command`).
    public var label: String? {
        get { self.requestLabel?.text }
        set { self.requestLabel = newValue.map(RequestLabel.text) }
    }
    /// The label as the request carries it: built only if someone reads it (every transaction has evidence, few
    /// show it).
    var requestLabel: RequestLabel?

    public init(target: Target, command: UInt8, sequence: UInt8, line: LineSettings, requestBytes: [UInt8],
                attempts: [Attempt] = [], label: String? = nil) {
        self.init(target: target, command: command, sequence: sequence, line: line, requestBytes: requestBytes,
                  attempts: attempts, requestLabel: label.map(RequestLabel.text))
    }

    init(target: Target, command: UInt8, sequence: UInt8, line: LineSettings, requestBytes: [UInt8],
         attempts: [Attempt] = [], requestLabel: RequestLabel?) {
        self.target = target
        self.command = command
        self.sequence = sequence
        self.line = line
        self.requestBytes = requestBytes
        self.attempts = attempts
        self.requestLabel = requestLabel
    }

    /// One try: what was seen, the time allowed for the first byte, and the bytes received.
    public struct Attempt: Sendable, Equatable {
        /// The most telling thing seen (see ``Seen/weight``).
        public var seen: Seen
        /// Time allowed from the end of the request to the first byte of the answer.
        public var timeout: Duration
        /// Bytes in the order they arrived.
        public var chunks: [Chunk]

        public init(seen: Seen, timeout: Duration, chunks: [Chunk]) {
            self.seen = seen
            self.timeout = timeout
            self.chunks = chunks
        }
    }

    /// Received bytes and when, in microseconds after the request left the wire (negative: before).
    public struct Chunk: Sendable, Equatable {
        public var micros: Int64
        public var bytes: [UInt8]

        public init(micros: Int64, bytes: [UInt8]) {
            self.micros = micros
            self.bytes = bytes
        }
    }

    /// A closed set of what a try can have seen instead of the answer.
    public enum Seen: Sendable, Equatable {
        /// No byte at all before the deadline.
        case nothing
        /// Only the adapter's copy of our own request (a half-duplex adapter without echo suppression).
        case onlyEcho
        /// Bytes that were no frame and had no start marker: line noise.
        case garbage([UInt8])
        /// A frame that started and was cut short (the line fell silent mid-frame).
        case partialFrame([UInt8])
        /// A frame whose header check or CRC failed: damaged in transit.
        case crcMismatch([UInt8])
        /// A valid answer to this request, but from another address or serial.
        case wrongAddress(address: UInt8, serial: UInt32)
        /// A valid answer to this request from another station, in its protocol's words (Modbus address 4,
        /// DL/T 645 meter 000000123457).
        case wrongStation(String)
        /// A valid answer to an earlier request (another SEQ or command): late, and discarded.
        case staleSequence(UInt8)
        /// A valid frame that answers nobody here: another master's request, or a device's frame we did not ask for.
        case otherTraffic
        /// The meter answered NAK BUSY.
        case busy

        /// Which of several sightings names a try: damage says most about the line, then a wrong responder.
        var weight: Int {
            switch self {
            case .nothing: 0
            case .onlyEcho: 1
            case .otherTraffic: 2
            case .garbage: 3
            case .staleSequence: 4
            case .busy: 5
            case .wrongAddress, .wrongStation: 6
            case .partialFrame: 7
            case .crcMismatch: 8
            }
        }

        /// Whether this is a damaged answer (as opposed to none).
        public var isDamage: Bool {
            switch self {
            case .partialFrame, .crcMismatch: true
            default: false
            }
        }

        public var summary: String {
            switch self {
            case .nothing: "nothing"
            case .onlyEcho: "only the echo of the request"
            case .garbage(let bytes): "\(bytes.count) byte(s) of line noise"
            case .partialFrame(let bytes): "a frame cut short after \(bytes.count) byte(s)"
            case .crcMismatch(let bytes): "a damaged frame (\(bytes.count) byte(s), check failed)"
            case .wrongAddress(let address, let serial): "an answer from address \(address), serial \(serial)"
            case .wrongStation(let station): "an answer from \(station)"
            case .staleSequence(let sequence): "a late answer to an earlier request (SEQ \(sequence))"
            case .otherTraffic: "another device's frame"
            case .busy: "NAK busy"
            }
        }
    }

    var commandName: String { self.label ?? Command.name(of: self.command) }

    /// "READ_STATUS SEQ 12" for native requests, the label for others (they carry no SEQ).
    var requestName: String {
        self.label ?? "\(Command.name(of: self.command)) SEQ \(self.sequence)"
    }

    /// The most telling sighting over all tries.
    public var mostTelling: Seen {
        self.attempts.map(\.seen).max { $0.weight < $1.weight } ?? .nothing
    }

    /// One line per try, e.g. `try 2: a damaged frame (56 byte(s), check failed)`.
    public var description: String {
        var lines = ["\(self.requestName) to \(self.target) at \(self.line):"]
        for (index, attempt) in self.attempts.enumerated() {
            lines.append("  try \(index + 1): \(attempt.seen.summary)")
        }
        return lines.joined(separator: "\n")
    }

    /// For `--verbose`: the request and, per try, every received chunk in hex with its time after the request.
    public var verboseDescription: String {
        var lines = ["\(self.requestName) to \(self.target) at \(self.line)",
                     "  sent (each try): \(hexString(self.requestBytes))"]
        for (index, attempt) in self.attempts.enumerated() {
            lines.append("  try \(index + 1) (first byte allowed \(formatMilliseconds(attempt.timeout))): "
                         + attempt.seen.summary)
            for chunk in attempt.chunks {
                lines.append("    +\(formatMicros(chunk.micros)) ms  \(hexString(chunk.bytes))")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// A request's name for people, as text or as the function that writes it when it is needed: a transaction
/// that succeeds never formats its label.
enum RequestLabel: Sendable, Equatable {
    case text(String)
    /// "Modbus read holding registers 0+14", written when shown.
    case modbus(ModbusRequest)

    var text: String {
        switch self {
        case .text(let text): text
        case .modbus(let request): "Modbus \(ModbusDriver.name(of: request))"
        }
    }

    static func == (a: RequestLabel, b: RequestLabel) -> Bool { a.text == b.text }
}

/// "12.345" from microseconds.
func formatMicros(_ micros: Int64) -> String {
    let sign = micros < 0 ? "-" : ""
    let value = abs(micros)
    let fraction = String(value % 1000)
    return "\(sign)\(value / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
}

func formatMilliseconds(_ duration: Duration) -> String { "\(formatMicros(duration.micros)) ms" }

extension Duration {
    /// Whole microseconds, rounded toward zero; integer arithmetic only (inlined: `components` is a call into the
    /// runtime).
    var micros: Int64 {
        let attoseconds = self.attoseconds
        // Durations under ±9.2 s fit 64 bits, where division is one instruction instead of a 128-bit call.
        if let small = Int64(exactly: attoseconds) { return small / 1_000_000_000_000 }
        return Int64(truncatingIfNeeded: attoseconds / 1_000_000_000_000)
    }

    /// Whole nanoseconds, rounded toward zero.
    var nanos: Int64 {
        let attoseconds = self.attoseconds
        if let small = Int64(exactly: attoseconds) { return small / 1_000_000_000 }
        return Int64(truncatingIfNeeded: attoseconds / 1_000_000_000)
    }
}
