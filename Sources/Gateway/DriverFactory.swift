import MeterBus

/// The one place that turns a bus's configured protocol into a driver over its session. A new protocol is one
/// case here (and in ``supported``); the pollers only see ``MeterDriver``.
public enum DriverFactory {
    /// The protocols this build drives; the others are refused by the configuration check.
    public static let supported: [BusProtocol] = [.native, .modbus, .dlt645]

    /// The driver for `bus` over `session`. The configuration check has made sure a Modbus bus has its map.
    public static func driver(for bus: BusConfiguration, session: BusSession) -> any MeterDriver {
        switch bus.protocolName {
        case .native:
            return NativeDriver(session: session)
        case .modbus:
            guard let map = bus.modbusMap else { preconditionFailure("a Modbus bus without a map passed the check") }
            return ModbusDriver(session: session, map: map)
        case .dlt645:
            return DLT645Driver(session: session, options: bus.dlt645 ?? DLT645Driver.Options())
        }
    }
}
