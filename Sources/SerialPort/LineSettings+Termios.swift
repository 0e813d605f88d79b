#if canImport(Glibc)
import Glibc
#endif

// MARK: Encoding LineSettings into termios and decoding them back

extension LineSettings {
    /// The standard speed codes (B50...B4000000) by rate; any other rate is set through termios2/BOTHER.
    static let standardSpeeds: [Int: speed_t] = [
        50: speed_t(B50), 75: speed_t(B75), 110: speed_t(B110), 134: speed_t(B134), 150: speed_t(B150),
        200: speed_t(B200), 300: speed_t(B300), 600: speed_t(B600), 1200: speed_t(B1200),
        1800: speed_t(B1800), 2400: speed_t(B2400), 4800: speed_t(B4800), 9600: speed_t(B9600),
        19200: speed_t(B19200), 38400: speed_t(B38400), 57600: speed_t(B57600), 115200: speed_t(B115200),
        230400: speed_t(B230400), 460800: speed_t(B460800), 500000: speed_t(B500000),
        576000: speed_t(B576000), 921600: speed_t(B921600), 1000000: speed_t(B1000000),
        1152000: speed_t(B1152000), 1500000: speed_t(B1500000), 2000000: speed_t(B2000000),
        2500000: speed_t(B2500000), 3000000: speed_t(B3000000), 3500000: speed_t(B3500000),
        4000000: speed_t(B4000000),
    ]

    /// The speed code for a standard rate, nil for a rate that needs termios2/BOTHER.
    var standardSpeed: speed_t? { Self.standardSpeeds[self.baudRate] }

    /// Writes frame and flow control into a termios made raw by `cfmakeraw`. The speed is set by the caller,
    /// because custom rates go through termios2 after `tcsetattr`.
    func encodeFrame(into t: inout termios) {
        t.c_cflag &= ~(flag(CSIZE) | flag(PARENB) | flag(PARODD) | flag(CMSPAR) | flag(CSTOPB) | flag(CRTSCTS))
        t.c_iflag &= ~(flag(IXON) | flag(IXOFF) | flag(IXANY))
        // CLOCAL: ignore modem lines (an RS-485 adapter has no DCD); CREAD: enable the receiver.
        t.c_cflag |= flag(CLOCAL) | flag(CREAD)
        switch self.dataBits {
        case .five: t.c_cflag |= flag(CS5)
        case .six: t.c_cflag |= flag(CS6)
        case .seven: t.c_cflag |= flag(CS7)
        case .eight: t.c_cflag |= flag(CS8)
        }
        switch self.parity {
        case .none: break
        case .even: t.c_cflag |= flag(PARENB)
        case .odd: t.c_cflag |= flag(PARENB) | flag(PARODD)
        case .mark: t.c_cflag |= flag(PARENB) | flag(CMSPAR) | flag(PARODD)
        case .space: t.c_cflag |= flag(PARENB) | flag(CMSPAR)
        }
        if self.stopBits == .two {
            t.c_cflag |= flag(CSTOPB)
        }
        switch self.flowControl {
        case .none: break
        case .rtsCts: t.c_cflag |= flag(CRTSCTS)
        case .xonXoff: t.c_iflag |= flag(IXON) | flag(IXOFF)
        }
        // Non-blocking reads: poll(2) does the waiting, so VMIN=0 VTIME=0 (a read returns what is there).
        Self.setControlCharacter(&t, VMIN, 0)
        Self.setControlCharacter(&t, VTIME, 0)
    }

    /// Settings as a termios holds them; `baudRate` comes from termios2 (the real rate, also for BOTHER).
    init(termios t: termios, baudRate: Int) {
        let dataBits: DataBits
        switch t.c_cflag & flag(CSIZE) {
        case flag(CS5): dataBits = .five
        case flag(CS6): dataBits = .six
        case flag(CS7): dataBits = .seven
        default: dataBits = .eight
        }
        var parity = Parity.none
        if t.c_cflag & flag(PARENB) != 0 {
            let odd = t.c_cflag & flag(PARODD) != 0
            if t.c_cflag & flag(CMSPAR) != 0 {
                parity = odd ? .mark : .space
            } else {
                parity = odd ? .odd : .even
            }
        }
        var flow = FlowControl.none
        if t.c_cflag & flag(CRTSCTS) != 0 {
            flow = .rtsCts
        } else if t.c_iflag & (flag(IXON) | flag(IXOFF)) != 0 {
            flow = .xonXoff
        }
        self.init(
            // B0 ("hang up") has no rate; 1 keeps the value valid, and open never leaves a port at B0.
            baudRate: max(baudRate, 1),
            dataBits: dataBits,
            parity: parity,
            stopBits: t.c_cflag & flag(CSTOPB) != 0 ? .two : .one,
            flowControl: flow
        )
    }

    static func setControlCharacter(_ t: inout termios, _ index: Int32, _ value: cc_t) {
        withUnsafeMutableBytes(of: &t.c_cc) { $0[Int(index)] = value }
    }
}

/// A termios flag constant as `tcflag_t`; Glibc imports them with different integer types (CRTSCTS does not
/// fit in Int32).
@inline(__always)
func flag(_ value: some BinaryInteger) -> tcflag_t {
    tcflag_t(truncatingIfNeeded: value)
}
