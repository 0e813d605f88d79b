/// Line settings of a serial port: speed, character frame and flow control.
///
/// Written and parsed in the conventional form `BAUD:DPS[:FLOW]`:
/// - `BAUD`: bits per second, a positive integer (standard rates B50...B4000000 or any custom rate, e.g. 250000);
/// - `D`: data bits, 5 to 8;
/// - `P`: parity letter, `N` none, `E` even, `O` odd, `M` mark, `S` space (either case);
/// - `S`: stop bits, 1 or 2;
/// - `FLOW` (optional): `none` (the default), `rtscts` (hardware, CRTSCTS) or `xonxoff` (software, IXON|IXOFF).
///
/// Examples: `9600:8E1`, `115200:8N1`, `2400:8E1`, `9600:7O2`, `9600:8N1:rtscts`. ``description`` prints the same
/// form back, leaving out `:none`, so `LineSettings(parsing: s.description) == s`.
public struct LineSettings: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Parity bit of each character.
    public enum Parity: String, CaseIterable, Sendable {
        case none = "N"
        case even = "E"
        case odd = "O"
        /// Parity bit always 1 (CMSPAR|PARODD).
        case mark = "M"
        /// Parity bit always 0 (CMSPAR).
        case space = "S"
    }

    /// Number of data bits per character.
    public enum DataBits: Int, CaseIterable, Sendable {
        case five = 5
        case six = 6
        case seven = 7
        case eight = 8
    }

    /// Number of stop bits per character.
    public enum StopBits: Int, CaseIterable, Sendable {
        case one = 1
        case two = 2
    }

    /// Flow control.
    public enum FlowControl: String, CaseIterable, Sendable {
        case none
        /// Hardware handshake on RTS/CTS (CRTSCTS).
        case rtsCts = "rtscts"
        /// Software handshake with XON/XOFF characters (IXON|IXOFF).
        case xonXoff = "xonxoff"
    }

    /// Bits per second; positive.
    public var baudRate: Int
    /// Data bits per character (5-8).
    public var dataBits: DataBits
    /// Parity bit (none, even, odd, mark, space).
    public var parity: Parity
    /// Stop bits (1 or 2).
    public var stopBits: StopBits
    /// Flow control (none, RTS/CTS, XON/XOFF).
    public var flowControl: FlowControl

    /// Settings from their parts; `baudRate` must be positive.
    public init(
        baudRate: Int,
        dataBits: DataBits = .eight,
        parity: Parity = .none,
        stopBits: StopBits = .one,
        flowControl: FlowControl = .none
    ) {
        precondition(baudRate > 0 && baudRate <= Int(UInt32.max), "baud rate must be a positive 32-bit value")
        self.baudRate = baudRate
        self.dataBits = dataBits
        self.parity = parity
        self.stopBits = stopBits
        self.flowControl = flowControl
    }

    /// Parses the `BAUD:DPS[:FLOW]` form described on the type, e.g. `9600:8E1` or `9600:8N1:rtscts`.
    public init(parsing text: String) throws(ParseError) {
        let fields = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard fields.count == 2 || fields.count == 3 else {
            throw ParseError(input: text, field: .form, found: text)
        }
        guard let baud = Int(fields[0]), baud > 0, baud <= Int(UInt32.max) else {
            throw ParseError(input: text, field: .baudRate, found: fields[0])
        }
        let frame = Array(fields[1])
        guard frame.count == 3 else {
            throw ParseError(input: text, field: .frame, found: fields[1])
        }
        guard let bits = frame[0].wholeNumberValue, let dataBits = DataBits(rawValue: bits) else {
            throw ParseError(input: text, field: .dataBits, found: String(frame[0]))
        }
        guard let parity = Parity(rawValue: frame[1].uppercased()) else {
            throw ParseError(input: text, field: .parity, found: String(frame[1]))
        }
        guard let stops = frame[2].wholeNumberValue, let stopBits = StopBits(rawValue: stops) else {
            throw ParseError(input: text, field: .stopBits, found: String(frame[2]))
        }
        var flow = FlowControl.none
        if fields.count == 3 {
            guard let parsed = FlowControl(rawValue: fields[2].lowercased()) else {
                throw ParseError(input: text, field: .flowControl, found: fields[2])
            }
            flow = parsed
        }
        self.init(baudRate: baud, dataBits: dataBits, parity: parity, stopBits: stopBits, flowControl: flow)
    }

    /// The `BAUD:DPS[:FLOW]` form, e.g. `9600:8E1`; `:FLOW` only when flow control is not `none`.
    public var description: String {
        let base = "\(self.baudRate):\(self.dataBits.rawValue)\(self.parity.rawValue)\(self.stopBits.rawValue)"
        return self.flowControl == .none ? base : "\(base):\(self.flowControl.rawValue)"
    }

    /// Bits on the wire per character: start bit, data bits, parity bit (if any) and stop bits.
    public var bitsPerCharacter: Int {
        1 + self.dataBits.rawValue + (self.parity == .none ? 0 : 1) + self.stopBits.rawValue
    }

    /// Time one character takes on the wire: ``bitsPerCharacter`` / ``baudRate`` (9600 8N1: 10 bits, ~1.0417 ms).
    public var characterTime: Duration {
        // Duration divides in attoseconds (128-bit), so odd rates such as 31250 keep their exact value.
        Duration.seconds(self.bitsPerCharacter) / self.baudRate
    }

    /// Words for the fields that differ, e.g. "baud rate 250000 became 38400, data bits 7 became 8".
    func differences(from other: LineSettings) -> String {
        var parts: [String] = []
        if self.baudRate != other.baudRate {
            parts.append("baud rate \(self.baudRate) became \(other.baudRate)")
        }
        if self.dataBits != other.dataBits {
            parts.append("data bits \(self.dataBits.rawValue) became \(other.dataBits.rawValue)")
        }
        if self.parity != other.parity {
            parts.append("parity \(self.parity) became \(other.parity)")
        }
        if self.stopBits != other.stopBits {
            parts.append("stop bits \(self.stopBits.rawValue) became \(other.stopBits.rawValue)")
        }
        if self.flowControl != other.flowControl {
            parts.append("flow control \(self.flowControl.rawValue) became \(other.flowControl.rawValue)")
        }
        return parts.isEmpty ? "no difference" : parts.joined(separator: ", ")
    }
}

extension LineSettings {
    /// Why a line settings string could not be parsed, and what was expected instead.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        /// The part of the `BAUD:DPS[:FLOW]` form that was wrong.
        public enum Field: Sendable, Equatable {
            case form, baudRate, frame, dataBits, parity, stopBits, flowControl
        }

        /// The whole text given to the parser.
        public var input: String
        /// Which part was wrong.
        public var field: Field
        /// The offending part of `input`.
        public var found: String

        public var description: String {
            let expected: String
            switch self.field {
            case .form:
                expected = "BAUD:DPS or BAUD:DPS:FLOW, e.g. 9600:8E1 or 9600:8N1:rtscts"
            case .baudRate:
                expected = "a positive baud rate such as 2400, 9600 or 115200"
            case .frame:
                expected = "data bits, parity and stop bits as three characters, e.g. 8E1 or 8N1"
            case .dataBits:
                expected = "data bits 5, 6, 7 or 8"
            case .parity:
                expected = "parity N (none), E (even), O (odd), M (mark) or S (space)"
            case .stopBits:
                expected = "stop bits 1 or 2"
            case .flowControl:
                expected = "flow control none, rtscts or xonxoff"
            }
            return "invalid line settings '\(self.input)': found '\(self.found)', expected \(expected)"
        }
    }
}

extension LineSettings.Parity: CustomStringConvertible {
    public var description: String {
        switch self {
        case .none: return "none"
        case .even: return "even"
        case .odd: return "odd"
        case .mark: return "mark"
        case .space: return "space"
        }
    }
}
