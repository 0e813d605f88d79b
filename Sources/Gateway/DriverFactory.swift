import MeterBus

/// The one place that turns a bus's configured protocol into a driver over its session. A new protocol is one
/// case here (and in ``supported``); the pollers only see ``MeterDriver``.
public enum DriverFactory {
    /// The protocols this build drives; the others are refused by the configuration check.
    public static let supported: [BusProtocol] = [.native]

    /// The driver for `protocol` over `session`; nil for a protocol this build cannot drive (the configuration
    /// check refuses those first).
    public static func driver(for protocolName: BusProtocol, session: BusSession) -> (any MeterDriver)? {
        switch protocolName {
        case .native: NativeDriver(session: session)
        case .modbus, .dlt645: nil
        }
    }
}
