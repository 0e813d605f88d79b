import MeterProtocol
import SerialPort

/// Why a transaction gave up. A closed set: callers switch over it; `description` is a sentence for a person
/// that ends with what to do.
public enum BusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No valid answer on any try: nothing, only our echo, only noise, or only frames that were not the answer.
    case noAnswer(Evidence)
    /// Answers came back damaged (CRC mismatch or cut short) on every try: the retry budget is spent.
    case corrupt(Evidence)
    /// The device refused the request with a NAK (docs/PROTOCOL.md §6). Not retried, except BUSY.
    case refused(Nak, Evidence)
    /// The serial adapter went away (unplugged, hung up). Never reported as a silent meter.
    case adapterGone(path: String)
    /// Any other failure of the serial port.
    case serial(SerialError)
    /// A valid answer whose payload this implementation cannot read as the command's response.
    case unexpectedPayload(PayloadError, Evidence)
    /// Nothing was sent: the caller's task was cancelled, or the session closed, before the request's turn.
    case cancelled
    /// The device refused the request in its own protocol's terms: a Modbus exception, a DL/T 645 abnormal answer.
    case rejected(Rejection, Evidence)
    /// The meter's protocol has no such operation (e.g. remote credit over Modbus); nothing was sent.
    case unsupported(operation: String, protocolName: String)

    /// The evidence, for the cases that have it.
    public var evidence: Evidence? {
        switch self {
        case .noAnswer(let e), .corrupt(let e), .refused(_, let e), .unexpectedPayload(_, let e),
            .rejected(_, let e):
            e
        case .adapterGone, .serial, .cancelled, .unsupported: nil
        }
    }

    public var description: String {
        switch self {
        case .noAnswer(let e):
            return Self.noAnswerSentence(e)
        case .corrupt(let e):
            let damaged = e.attempts.filter(\.seen.isDamage).count
            return "answers from \(e.target) to \(e.commandName) at \(e.line) were damaged in \(damaged) of "
                + "\(e.attempts.count) tries (\(e.mostTelling.summary)): check termination (120 Ω at both ends), "
                + "cable shielding and that every device uses \(e.line); try metergw sniff"
        case .refused(let nak, let e):
            return "\(e.target) refused \(e.commandName): \(Self.nakSentence(nak))"
        case .adapterGone(let path):
            return "the serial adapter \(path) went away (unplugged or hung up); this is not a silent meter: "
                + "reconnect it and open the port again"
        case .serial(let error):
            return error.description
        case .unexpectedPayload(let error, let e):
            return "\(e.target) answered \(e.commandName) with a payload this version cannot read "
                + "(\(error.explanation)): check the meter's firmware and protocol version, or update metergw"
        case .rejected(let rejection, let e):
            return "\(e.target) refused \(e.commandName): \(rejection.protocolName) \(rejection.codeText) "
                + "(\(rejection.meaning)): \(rejection.advice)"
        case .unsupported(let operation, let protocolName):
            return "\(protocolName) does not offer \(operation): nothing was sent; use a meter or protocol that "
                + "offers it (docs/INTEROP.md lists what each protocol can do)"
        case .cancelled:
            return "not sent: the request was cancelled (the caller stopped waiting or the session closed) before "
                + "its turn on the bus; nothing reached the meter"
        }
    }

    private static func noAnswerSentence(_ e: Evidence) -> String {
        let head = "no answer from \(e.target) at \(e.line) after \(e.attempts.count) "
            + (e.attempts.count == 1 ? "try" : "tries")
        switch e.mostTelling {
        case .wrongAddress(let address, let serial):
            if case .address(let expected, _) = e.target, expected == address {
                return head + ": a meter with serial \(serial) answers at that address instead: the meter was "
                    + "swapped or its serial differs; run metergw scan"
            }
            return head + ": address \(address) (serial \(serial)) answered instead: two meters may share an "
                + "address, or a meter is misconfigured; run metergw scan"
        case .staleSequence:
            return head + ": only late answers to earlier requests arrived: the meter answers more slowly than "
                + "the timeout allows; raise the timeout"
        case .wrongStation(let station):
            return head + ": \(station) answered instead: two meters may share an address, or the meter is "
                + "misconfigured; run metergw scan"
        case .onlyEcho:
            return head + ": only the adapter's echo of the request came back, so the request is on the wire but "
                + "the meter is silent: check its address, power, the A/B wires and the line settings"
        case .garbage:
            return head + ": only line noise came back: check termination, grounding and the line settings; "
                + "try metergw sniff"
        case .busy:
            return head + ": the meter stayed busy; try again later"
        default:
            return head + ": check wiring, termination and line settings; try metergw sniff"
        }
    }

    /// What a NAK means and what to do about it (docs/PROTOCOL.md §6).
    static func nakSentence(_ nak: Nak) -> String {
        guard let code = nak.knownCode else {
            return "NAK code 0x\(String(nak.code, radix: 16)) (detail \(nak.detail)), not defined by protocol "
                + "version 1: check the meter's documentation"
        }
        switch code {
        case .unknownCommand:
            return "unknown command: the device does not implement it (a card writer asked a meter command?)"
        case .malformedPayload:
            return "malformed payload: the request's fields did not match the command; report this as a bug"
        case .unsupportedVersion:
            return "unsupported protocol version (the device speaks up to version \(nak.detail))"
        case .authenticationFailed:
            return "authentication failed: the MAC did not verify; check the meter key and its serial"
        case .replayedCommand:
            return "replayed command: counter not above the last accepted (\(nak.detail)); sign it again with a "
                + "higher counter"
        case .keyRevisionMismatch:
            return "key revision mismatch: the meter uses key revision \(nak.detail); sign with that revision"
        case .sequenceGap:
            return "sequence gap: the meter's last applied purchase is \(nak.detail); an earlier purchase has not "
                + "reached it (on a card or queued): load that one first"
        case .valueOutOfRange:
            return "value out of range: check the values sent"
        case .notPermitted:
            return "not permitted in the meter's state (closing the relay while credit is exhausted?)"
        case .busy:
            return "busy on every try: try again later"
        case .noCard:
            return "no card in the writer: insert a card"
        case .cardChanged:
            return "the card was changed (now insertion \(nak.detail)): read the card again before writing"
        case .cardWriteFailed:
            return "the card write failed: try another card"
        case .internalError:
            return "internal error in the device: power-cycle it; if it persists, replace it"
        }
    }
}

/// A refusal in a non-native protocol's terms: a Modbus exception code, a DL/T 645 error word.
public struct Rejection: Sendable, Equatable {
    /// "Modbus", "DL/T 645".
    public var protocolName: String
    public var code: UInt16
    /// "exception 2", "error word 0x02".
    public var codeText: String
    /// What the standard calls it: "illegal data address".
    public var meaning: String
    /// What to do about it.
    public var advice: String

    public init(protocolName: String, code: UInt16, codeText: String, meaning: String, advice: String) {
        self.protocolName = protocolName
        self.code = code
        self.codeText = codeText
        self.meaning = meaning
        self.advice = advice
    }
}
