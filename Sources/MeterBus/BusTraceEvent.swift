import MeterProtocol

/// What the session did on the wire, for `--verbose`: a closure in ``BusSession/Options/trace`` receives these
/// on the session's thread as they happen. Times are since the session started.
public enum BusTraceEvent: Sendable, CustomStringConvertible {
    /// A request left: `attempt` 1 is the first try.
    case sent(bytes: [UInt8], attempt: Int, at: Duration)
    /// Bytes arrived, `sinceSend` after the request left the wire.
    case received(bytes: [UInt8], at: Duration, sinceSend: Duration)
    /// Bytes or a frame that were not the answer, and why they were discarded.
    case discarded(Evidence.Seen, at: Duration)
    /// Input that was waiting before a request and was flushed unread (stale bytes).
    case flushed(at: Duration)
    /// The answer was accepted, `latency` after the first byte was sent.
    case answered(Frame, at: Duration, latency: Duration)
    /// The transaction gave up.
    case gaveUp(BusError, at: Duration)
    /// The answer to a request in a protocol without native headers (Modbus RTU, DL/T 645) was accepted.
    case answeredRaw(String, bytes: [UInt8], at: Duration, latency: Duration)

    public var description: String {
        switch self {
        case .sent(let bytes, let attempt, let at):
            return "\(Self.stamp(at)) TX\(attempt > 1 ? " (try \(attempt))" : "") \(hexString(bytes))"
        case .received(let bytes, let at, let since):
            return "\(Self.stamp(at)) RX +\(formatMilliseconds(since)) after send: \(hexString(bytes))"
        case .discarded(let seen, let at):
            return "\(Self.stamp(at)) discarded: \(seen.summary)"
        case .flushed(let at):
            return "\(Self.stamp(at)) flushed stale input"
        case .answered(let frame, let at, let latency):
            return "\(Self.stamp(at)) answer from address \(frame.address) serial \(frame.serial) SEQ "
                + "\(frame.sequence) \(Command.name(of: frame.command)) in \(formatMilliseconds(latency))"
        case .gaveUp(let error, let at):
            return "\(Self.stamp(at)) gave up: \(error)"
        case .answeredRaw(let label, let bytes, let at, let latency):
            return "\(Self.stamp(at)) answer to \(label) (\(bytes.count) bytes) in \(formatMilliseconds(latency))"
        }
    }

    static func stamp(_ at: Duration) -> String { "[\(formatMicros(at.micros)) ms]" }
}
