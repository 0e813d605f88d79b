import ArgumentParser

/// metergw's exit statuses, from sysexits(3) so scripts can tell failures apart (README "Exit statuses").
public enum ExitStatus: Int32, CaseIterable, Sendable {
    case ok = 0
    /// Anything not listed below.
    case failure = 1
    /// Wrong arguments (swift-argument-parser's validation failures use the same value).
    case usage = 64
    /// Corrupt data: garbage or invalid frames in a decode, CRC errors beyond the retry budget.
    case dataError = 65
    /// A port or file that does not exist.
    case notFound = 66
    /// No answer: timeout after every retry.
    case noAnswer = 69
    /// The device went away mid-operation, or another I/O error.
    case ioError = 74
    /// The port is held by another process, or the database is locked by one (retry later).
    case busy = 75
    /// The meter or writer refused the request (NAK), or the billing store's rules refused it (a closed account,
    /// a purchase past cancelling, a request id reused with other terms).
    case refused = 76
    /// Permission denied on a port or file.
    case noPermission = 77
    /// The configuration file has errors (`metergw serve --check` lists them with their lines).
    case configuration = 78

    public var exitCode: ExitCode { ExitCode(self.rawValue) }

    public var meaning: String {
        switch self {
        case .ok: "success"
        case .failure: "failure not listed below"
        case .usage: "usage error: wrong or missing arguments"
        case .dataError: "corrupt data: garbage or invalid frames"
        case .notFound: "port or file not found"
        case .noAnswer: "no answer: timeout after all retries"
        case .ioError: "device removed or I/O error"
        case .busy: "port or database held by another process"
        case .refused: "refused by the meter, the card writer (NAK) or the billing store's rules"
        case .noPermission: "permission denied"
        case .configuration: "configuration error"
        }
    }
}
