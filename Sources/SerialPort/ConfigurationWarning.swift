/// A part of a configuration the device could not apply while the port stays usable with the rest.
///
/// Returned by ``SerialPort/configure(_:)``; the CLI prints these. Refusals that change what is on the wire in
/// a way that matters (speed, data bits, stop bits, flow control, parity on a real adapter) are errors instead:
/// ``SerialError/unsupportedSetting(path:requested:applied:)``.
public enum ConfigurationWarning: Equatable, Sendable, CustomStringConvertible {
    /// A pseudo-terminal carries no parity: the port runs without it (8E1 works as 8N1).
    case parityUnsupported(requested: LineSettings.Parity, path: String)

    public var description: String {
        switch self {
        case .parityUnsupported(let requested, let path):
            return "\(path) is a pseudo-terminal and carries no parity: \(requested) parity was dropped, "
                + "running without parity (a real adapter would apply it)"
        }
    }
}
