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

    // Equality and hashing written out: the synthesized ones go through the generic paths of a multi-payload enum
    // with a String case (an allocation per dictionary lookup), and calibration and statistics look a target up
    // on every transaction.
    public static func == (a: Target, b: Target) -> Bool {
        switch (a, b) {
        case let (.address(x, s), .address(y, t)): x == y && s == t
        case let (.serial(x), .serial(y)): x == y
        case (.broadcast, .broadcast): true
        case let (.station(x), .station(y)): x == y
        default: false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .address(let address, let serial):
            hasher.combine(UInt64(address) | UInt64(serial ?? 0) << 8 | (serial == nil ? 0 : 1 << 40))
        case .serial(let serial): hasher.combine(UInt64(serial) | 2 << 48)
        case .broadcast: hasher.combine(UInt64(3) << 48)
        case .station(let id):
            hasher.combine(UInt64(4) << 48)
            hasher.combine(id)
        }
    }

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
