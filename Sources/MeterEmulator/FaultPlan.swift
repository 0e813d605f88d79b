/// Seeded, reproducible faults for the emulated bus (docs/EMULATOR.md "Faults").
///
/// A spec is a comma-separated list of `[meterN:]KIND[=RATE][@PARAM]`: RATE is the probability per reply
/// (default 1), PARAM a duration like `20ms` or `2s`, or a count for `noise`. Items without `meterN:` apply to every
/// device on the bus. The same spec and seed give the same faults in the same order.
public struct FaultPlan: Sendable, Equatable {
    public enum Kind: String, CaseIterable, Sendable {
        /// Flip one random bit of one random byte of the reply.
        case corrupt
        /// Do not answer.
        case drop
        /// Send PARAM (default 4) random bytes before the reply.
        case noise
        /// Answer PARAM (default 500 ms) late: past a master's usual timeout.
        case delay
        /// Send only a random prefix of the reply.
        case truncate
        /// Go silent for PARAM (default 2 s) from this reply on.
        case mute
        /// Send the request back before the reply, as a half-duplex adapter without echo suppression does.
        case echo
        /// Hold replies and release them together every PARAM (default 16 ms), as a USB adapter's latency timer.
        case burst
        /// Pause PARAM (default 30 ms) in the middle of the reply.
        case split
        /// Answer with another bus address in the header.
        case wrongAddress = "wrong-address"
        /// Close the pseudo-terminal as an unplugged adapter does; come back at the same link after PARAM
        /// (0 or absent: never).
        case vanish
    }

    public struct Rule: Sendable, Equatable {
        public var kind: Kind
        /// nil: every device.
        public var address: UInt8?
        /// Parts per million, so rates stay integers (0.5% = 5000).
        public var ratePPM: UInt32
        /// Milliseconds for durations, bytes for `noise`; nil for the kind's default.
        public var parameter: Int?

        public var parameterOrDefault: Int {
            if let parameter { return parameter }
            switch self.kind {
            case .noise: return 4
            case .delay: return 500
            case .mute: return 2000
            case .burst: return 16
            case .split: return 30
            case .vanish: return 0
            default: return 0
            }
        }
    }

    public var rules: [Rule]

    public init(rules: [Rule] = []) { self.rules = rules }

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var item: String
        public var reason: String
        public var description: String {
            "bad fault \"\(self.item)\": \(self.reason); expected [meterN:]KIND[=RATE][@PARAM] with KIND one of "
                + Kind.allCases.map(\.rawValue).joined(separator: ", ") + " (e.g. corrupt=0.05,meter3:mute=0.01@2s)"
        }
    }

    public init(parsing spec: String) throws(ParseError) {
        var rules: [Rule] = []
        for rawItem in spec.split(separator: ",") {
            let item = rawItem.trimmingWhitespace()
            guard !item.isEmpty else { continue }
            var rest = Substring(item)
            var address: UInt8?
            if rest.hasPrefix("meter"), let colon = rest.firstIndex(of: ":") {
                guard let a = UInt8(rest[rest.index(rest.startIndex, offsetBy: 5)..<colon]), a >= 1, a <= 247 else {
                    throw ParseError(item: item, reason: "meter address must be 1...247")
                }
                address = a
                rest = rest[rest.index(after: colon)...]
            }
            var parameter: Int?
            if let at = rest.firstIndex(of: "@") {
                guard let p = Self.parseParameter(rest[rest.index(after: at)...]) else {
                    throw ParseError(item: item, reason: "parameter must be a duration (20ms, 2s) or a count")
                }
                parameter = p
                rest = rest[..<at]
            }
            var rate: UInt32 = 1_000_000
            if let eq = rest.firstIndex(of: "=") {
                guard let r = Self.parseRate(rest[rest.index(after: eq)...]) else {
                    throw ParseError(item: item, reason: "rate must be a probability from 0 to 1, e.g. 0.05")
                }
                rate = r
                rest = rest[..<eq]
            }
            guard let kind = Kind(rawValue: String(rest)) else {
                throw ParseError(item: item, reason: "unknown fault kind \"\(rest)\"")
            }
            rules.append(Rule(kind: kind, address: address, ratePPM: rate, parameter: parameter))
        }
        self.rules = rules
    }

    /// "0.05" -> 50000 ppm, exactly, without floating point.
    static func parseRate(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = UInt32(parts[0].isEmpty ? "0" : parts[0]) else { return nil }
        var fraction: UInt32 = 0
        if parts.count == 2 {
            let digits = parts[1]
            guard digits.count <= 6, digits.allSatisfy(\.isNumber), let f = UInt32(digits.isEmpty ? "0" : digits)
            else { return nil }
            var scale: UInt32 = 1
            for _ in 0..<(6 - digits.count) { scale *= 10 }
            fraction = f * scale
        }
        let ppm = whole * 1_000_000 + fraction
        return ppm <= 1_000_000 ? ppm : nil
    }

    /// "20ms" -> 20, "2s" -> 2000, "5" -> 5.
    static func parseParameter(_ text: Substring) -> Int? {
        if text.hasSuffix("ms") { return Int(text.dropLast(2)) }
        if text.hasSuffix("s") { return Int(text.dropLast()).map { $0 * 1000 } }
        return Int(text)
    }

    /// The rules that apply to a reply from `address`.
    public func rules(for address: UInt8) -> [Rule] {
        self.rules.filter { $0.address == nil || $0.address == address }
    }
}

/// The seeded draws of a running plan: one generator, consumed in a fixed order per reply, so a seed replays.
public struct FaultDice: Sendable {
    private var state: UInt64

    public init(seed: UInt64) { self.state = seed }

    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// True with probability ppm / 1e6.
    public mutating func roll(_ ppm: UInt32) -> Bool {
        ppm >= 1_000_000 || self.next() % 1_000_000 < UInt64(ppm)
    }

    public mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(self.next() % UInt64(n)) }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
