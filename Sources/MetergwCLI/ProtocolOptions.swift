import ArgumentParser
import MeterBus
import MeterProtocol
import ModbusMaps
import ModbusProtocol

/// Which protocol the meters on the bus speak, and what that protocol needs (docs/INTEROP.md).
struct ProtocolOptions: ParsableArguments {
    enum Wire: String, ExpressibleByArgument, CaseIterable {
        case native, modbus, dlt645
    }

    @Option(name: .customLong("protocol"), help: "The meters' protocol: native, modbus (Modbus RTU) or dlt645 (DL/T 645-2007).")
    var wire: Wire = .native

    @Option(help: "Modbus register map: mgwpm1, sdm630, dds238 or a JSON map file (docs/INTEROP.md).")
    var map: String = "mgwpm1"

    @Option(help: "DL/T 645 meters that deviate from the standard: reversed-address (address high byte first).")
    var dlt645Compat: String?

    @Option(help: "DL/T 645 password for relay control and clock setting, 8 hex digits PA P0 P1 P2 (level first).")
    var dlt645Password: String = "02000000"

    @Option(help: "DL/T 645 meters' local time, hours east of UTC (their clocks carry no zone).")
    var utcOffsetHours: Int = 8

    func validate() throws {
        if let compat = self.dlt645Compat, DLT645Driver.Compatibility(names: compat) == nil {
            throw ValidationError("--dlt645-compat takes "
                                  + DLT645Driver.Compatibility.names.map(\.0).joined(separator: ", "))
        }
        guard self.password != nil else { throw ValidationError("--dlt645-password is 8 hex digits, e.g. 02000000") }
        guard (-12...14).contains(self.utcOffsetHours) else { throw ValidationError("--utc-offset-hours is -12...14") }
    }

    var password: [UInt8]? {
        let text = Array(self.dlt645Password.utf8)
        guard text.count == 8 else { return nil }
        let bytes = stride(from: 0, to: 8, by: 2).compactMap { UInt8(String(decoding: text[$0..<($0 + 2)], as: UTF8.self),
                                                                     radix: 16) }
        return bytes.count == 4 ? bytes : nil
    }

    /// The driver for this protocol over `session`.
    func driver(_ session: BusSession) throws -> any MeterDriver {
        switch self.wire {
        case .native:
            return NativeDriver(session: session)
        case .modbus:
            return ModbusDriver(session: session, map: try self.registerMap())
        case .dlt645:
            var options = DLT645Driver.Options()
            options.compatibility = self.dlt645Compat.flatMap(DLT645Driver.Compatibility.init(names:)) ?? []
            options.password = self.password ?? options.password
            options.utcOffsetSeconds = self.utcOffsetHours * 3600
            return DLT645Driver(session: session, options: options)
        }
    }

    func registerMap() throws -> RegisterMap {
        do { return try RegisterMaps.load(self.map) } catch { throw CLIError(.notFound, "\(error)") }
    }

    /// The meter a `--meter` argument names in this protocol.
    func meter(_ selector: MeterSelector) throws -> MeterAddress {
        switch self.wire {
        case .native:
            guard selector.address.station == nil else {
                throw ValidationError("--meter \(selector.text): a native meter is a bus address 1-247 or a serial")
            }
            return selector.address
        case .modbus:
            let address = selector.address
            guard address.serial == nil, address.busAddress != nil else {
                throw ValidationError("--meter \(selector.text): a Modbus meter is a bus address 1-247")
            }
            return address
        case .dlt645:
            guard selector.text.count == 12, selector.text.allSatisfy(\.isNumber) else {
                throw ValidationError("--meter \(selector.text): a DL/T 645 meter is its 12-digit address, e.g. "
                                      + "000000123456")
            }
            return .station(selector.text)
        }
    }
}

/// For protocols whose commands carry no native MAC (Modbus, DL/T 645 with its password): signs nothing.
struct UnsignedRequests: RequestSigner {
    func sign<R: AuthenticatedRequest>(_ request: R, serial: UInt32) -> R { request }
}
