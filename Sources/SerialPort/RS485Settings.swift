import CSerialShim

/// RS-485 half-duplex mode of a UART that drives the transceiver's enable line from RTS (Linux TIOCSRS485).
///
/// The kernel asserts RTS around each transmission, so the bus is released after the last stop bit without the
/// application timing it. Delays are applied by the driver in whole milliseconds (rounded up here); drivers clamp
/// them (usually to 100 ms) and may adjust flags, so ``SerialPort/setRS485(_:)`` returns what was applied.
public struct RS485Settings: Equatable, Sendable {
    /// RS-485 mode on (SER_RS485_ENABLED). When off, the other fields are ignored by the driver.
    public var isEnabled: Bool
    /// RTS level while sending is logical 1 (SER_RS485_RTS_ON_SEND); most transceivers want this.
    public var rtsOnSend: Bool
    /// RTS level after sending is logical 1 (SER_RS485_RTS_AFTER_SEND).
    public var rtsAfterSend: Bool
    /// Delay between asserting RTS and the first bit (delay_rts_before_send).
    public var delayBeforeSend: Duration
    /// Delay between the last stop bit and releasing RTS (delay_rts_after_send).
    public var delayAfterSend: Duration
    /// Keep the receiver on while sending (SER_RS485_RX_DURING_TX): the application then reads its own echo.
    public var receiveDuringTransmit: Bool

    /// RS-485 mode on, RTS high while sending; the usual wiring of a USB or UART RS-485 transceiver.
    public init(
        rtsOnSend: Bool = true,
        rtsAfterSend: Bool = false,
        delayBeforeSend: Duration = .zero,
        delayAfterSend: Duration = .zero,
        receiveDuringTransmit: Bool = false
    ) {
        self.isEnabled = true
        self.rtsOnSend = rtsOnSend
        self.rtsAfterSend = rtsAfterSend
        self.delayBeforeSend = delayBeforeSend
        self.delayAfterSend = delayAfterSend
        self.receiveDuringTransmit = receiveDuringTransmit
    }

    /// RS-485 mode off (plain RS-232 signalling).
    public static let disabled: RS485Settings = {
        var settings = RS485Settings(rtsOnSend: false)
        settings.isEnabled = false
        return settings
    }()

    // MARK: struct serial_rs485 fields

    var flags: UInt32 {
        var flags: UInt32 = 0
        if self.isEnabled { flags |= cserial_rs485_enabled }
        if self.rtsOnSend { flags |= cserial_rs485_rts_on_send }
        if self.rtsAfterSend { flags |= cserial_rs485_rts_after_send }
        if self.receiveDuringTransmit { flags |= cserial_rs485_rx_during_tx }
        return flags
    }

    init(flags: UInt32, delayBeforeMilliseconds: UInt32, delayAfterMilliseconds: UInt32) {
        self.isEnabled = flags & cserial_rs485_enabled != 0
        self.rtsOnSend = flags & cserial_rs485_rts_on_send != 0
        self.rtsAfterSend = flags & cserial_rs485_rts_after_send != 0
        self.receiveDuringTransmit = flags & cserial_rs485_rx_during_tx != 0
        self.delayBeforeSend = .milliseconds(delayBeforeMilliseconds)
        self.delayAfterSend = .milliseconds(delayAfterMilliseconds)
    }

    static func milliseconds(_ duration: Duration) -> UInt32 {
        UInt32(clamping: FileDescriptorIO.millisecondsRoundedUp(duration))
    }
}
