import MeterProtocol

/// Whom a request is for, and so which answers count as its answer (docs/PROTOCOL.md §3).
public enum Target: Hashable, Sendable, CustomStringConvertible {
    /// A bus address 1...247; with a serial, a meter that has another serial stays silent (a swapped meter is
    /// caught) and an answer must carry that serial.
    case address(UInt8, serial: UInt32? = nil)
    /// Whatever its bus address (ADDR `FF`): after discovery, before an address is assigned, or to resolve a
    /// conflict. Answers are matched on the serial alone (SET_ADDRESS answers from the new address).
    case serial(UInt32)
    /// ADDR 0: every device acts and none answers (DISCOVER excepted, see ``Discovery``).
    case broadcast
    /// A device named by another protocol's own address, e.g. DL/T 645's 12 digits "000000123456" (Modbus
    /// servers use ``address(_:serial:)``). Never a native frame's target.
    case station(String)

    /// ADDR of a request frame.
    public var frameAddress: UInt8 {
        switch self {
        case .address(let address, _): address
        case .serial: Frame.bySerialAddress
        case .broadcast: Frame.broadcastAddress
        case .station: Frame.bySerialAddress
        }
    }

    /// SERIAL of a request frame.
    public var frameSerial: UInt32 {
        switch self {
        case .address(_, let serial): serial ?? Frame.anySerial
        case .serial(let serial): serial
        case .broadcast, .station: Frame.anySerial
        }
    }

    /// Whether a response frame comes from the device this target names (§3).
    public func isSource(of frame: Frame) -> Bool {
        switch self {
        case .address(let address, let serial): frame.address == address && (serial == nil || frame.serial == serial)
        case .serial(let serial): frame.serial == serial
        case .broadcast, .station: false
        }
    }

    /// "meter 7", "meter 7 (serial 20251125)", "the meter with serial 20251125", "every meter (broadcast)".
    public var description: String {
        switch self {
        case .address(let address, nil): "meter \(address)"
        case .address(let address, let serial?): "meter \(address) (serial \(serial))"
        case .serial(let serial): "the meter with serial \(serial)"
        case .broadcast: "every meter (broadcast)"
        case .station(let id): "meter \(id)"
        }
    }
}

extension Command {
    /// Card operations, whose response time is 500 ms instead of 50 ms (docs/PROTOCOL.md §8).
    var isSlow: Bool {
        switch self {
        case .readCard, .writeCard, .eraseCard: true
        default: false
        }
    }
}
