import MeterBus

/// The one place that turns a bus's configured protocol into a driver over its session. A new protocol is one
/// case here (and in ``supported``); the pollers only see ``MeterDriver``.
public enum DriverFactory {
    /// The protocols this build drives; the others are refused by the configuration check.
    public static let supported: [BusProtocol] = [.native, .modbus, .dlt645]

    /// The driver for `bus` over `session`.
    public static func driver(for bus: BusConfiguration, session: BusSession) -> any MeterDriver {
        switch bus.driver {
        case .native: NativeDriver(session: session)
        case .modbus(let map): ModbusDriver(session: session, map: map)
        case .dlt645(let options): DLT645Driver(session: session, options: options)
        }
    }
}
