#if canImport(Glibc)
import Glibc
#endif

import CSerialShim
import Synchronization

/// An open serial port (USB-serial adapter, UART, or a pseudo-terminal subordinate) with deadline-bound I/O.
///
/// Opened as libserialport does: `O_RDWR|O_NOCTTY|O_NONBLOCK|O_CLOEXEC`, an exclusive `flock` (which also stops
/// root and a second open in this process) and `TIOCEXCL` (which stops non-root opens of the device node), then raw
/// mode. ``configure(_:)`` sets the line explicitly and checks what the device applied. ``close()`` restores the
/// settings found at open, releases the lock and closes the descriptor; `deinit` does the same if needed.
///
/// Thread safety: calls are serialized by an internal mutex, so the port is `Sendable` and may be handed between
/// tasks; it is meant to have one owner at a time (one bus session). A blocking call holds the mutex until it
/// returns (at most until its deadline), so a `close()` from another thread waits for the call in flight
/// instead of pulling the descriptor out from under it.
public final class SerialPort: SerialTransport, Sendable {
    /// The path the port was opened with.
    public let path: String
    /// Whether the device is a pseudo-terminal subordinate (/dev/pts/N, majors 136-143), which cannot do parity,
    /// other data bits than 8, RS-485 or modem lines.
    public let isPseudoTerminal: Bool

    private struct State {
        /// -1 once closed.
        var fd: Int32
        /// Settings found at open, restored by close.
        var original: termios
        /// Settings as last read back from the device.
        var settings: LineSettings
        /// A write timed out with bytes still queued: close discards them so it does not wait on a stalled line.
        var outputAbandoned = false

        func io(_ path: String) -> FileDescriptorIO {
            FileDescriptorIO(fd: self.fd, path: path)
        }
    }

    private let state: Mutex<State>

    private init(path: String, fd: Int32, original: termios, settings: LineSettings, isPseudoTerminal: Bool) {
        self.path = path
        self.isPseudoTerminal = isPseudoTerminal
        self.state = Mutex(State(fd: fd, original: original, settings: settings))
    }

    deinit {
        do {
            try self.close()
        } catch {
            // deinit cannot report; callers who care call close() and see its error.
        }
    }

    // MARK: Opening

    /// Opens a serial device exclusively and puts it in raw mode (keeping its speed and frame until
    /// ``configure(_:)``).
    ///
    /// Throws ``SerialError/notFound(path:)``, ``SerialError/permissionDenied(path:group:)`` (naming the device's
    /// group), ``SerialError/busy(path:holders:)`` (naming the processes that have it open) when another open file
    /// holds it, also in this process, or ``SerialError/unsupported(feature:path:)`` for a file that is not a
    /// terminal.
    public static func open(_ path: String) throws(SerialError) -> SerialPort {
        let fd: Int32
        switch Syscall.valueOrErrno({ Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC) }) {
        case .success(let value):
            fd = value
        case .failure(let code):
            throw Self.openError(code, path: path)
        }
        do {
            return try Self.claim(fd: fd, path: path)
        } catch {
            // The claim's error is what the caller needs; a close failure of a descriptor never used is not.
            _ = Syscall.valueOrErrno(retryOnInterrupt: false) { Glibc.close(fd) }
            if case .busy = error {
                // Scanned after our own descriptor is closed, so it lists only the real holders.
                throw .busy(path: path, holders: DeviceHolder.holders(of: path))
            }
            throw error
        }
    }

    private static func openError(_ code: Errno, path: String) -> SerialError {
        switch code.rawValue {
        case ENOENT, ENXIO, ENODEV, ENOTDIR:
            return .notFound(path: path)
        case EACCES, EPERM:
            return .permissionDenied(path: path, group: Self.groupName(ownerOf: path))
        case EBUSY:
            // TIOCEXCL set by another open file; non-root callers see EBUSY before reaching the flock.
            return .busy(path: path, holders: DeviceHolder.holders(of: path))
        default:
            return .system(operation: "open", path: path, errno: code.rawValue)
        }
    }

    /// Locks, sets exclusive and raw mode on a freshly opened descriptor; on error the caller closes it.
    private static func claim(fd: Int32, path: String) throws(SerialError) -> SerialPort {
        switch Syscall.valueOrErrno({ flock(fd, LOCK_EX | LOCK_NB) }) {
        case .success:
            break
        case .failure(let code) where code.rawValue == EWOULDBLOCK:
            throw .busy(path: path, holders: [])
        case .failure(let code):
            throw .system(operation: "flock", path: path, errno: code.rawValue)
        }
        try Self.runTerminalCall("ioctl(TIOCEXCL)", path: path) { cserial_set_exclusive(fd) }
        var original = termios()
        try Self.runTerminalCall("tcgetattr", path: path) { tcgetattr(fd, &original) }

        var raw = original
        cfmakeraw(&raw)
        raw.c_cflag |= flag(CLOCAL) | flag(CREAD)
        LineSettings.setControlCharacter(&raw, VMIN, 0)
        LineSettings.setControlCharacter(&raw, VTIME, 0)
        if cfgetospeed(&raw) == speed_t(B0) {
            // B0 means "hang up" (drops DTR); a port left there is unusable until configured.
            try Syscall.run("cfsetspeed", path: path) { cfsetspeed(&raw, speed_t(B9600)) }
        }
        try Syscall.run("tcsetattr", path: path) { tcsetattr(fd, TCSANOW, &raw) }
        do {
            let settings = try Self.readSettings(fd: fd, path: path)
            return SerialPort(
                path: path,
                fd: fd,
                original: original,
                settings: settings,
                isPseudoTerminal: try Self.isPseudoTerminal(fd: fd, path: path)
            )
        } catch {
            // Put back what we changed before the caller closes the descriptor.
            _ = Syscall.valueOrErrno { tcsetattr(fd, TCSANOW, &original) }
            throw error
        }
    }

    /// A terminal ioctl where ENOTTY means "this file is not a terminal", not a failure of the device.
    private static func runTerminalCall(_ operation: String, path: String, _ body: () -> Int32) throws(SerialError) {
        switch Syscall.valueOrErrno(body) {
        case .success:
            return
        case .failure(let code) where code.rawValue == ENOTTY:
            throw .unsupported(feature: "terminal control (it is not a serial device)", path: path)
        case .failure(let code) where code.meansDeviceGone:
            throw .removed(path: path)
        case .failure(let code):
            throw .system(operation: operation, path: path, errno: code.rawValue)
        }
    }

    /// The group owning the device node, e.g. "dialout" (getgrgid_r on st_gid), for the permission message.
    static func groupName(ownerOf path: String) -> String? {
        guard case .success(let info) = FileSystem.status(of: path) else {
            return nil
        }
        return Self.groupName(gid: info.st_gid)
    }

    static func groupName(gid: gid_t) -> String? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 4096)
        // getgrgid_r returns the error number itself (it does not set errno); 0 with a nil result is "no entry".
        let code = buffer.withUnsafeMutableBufferPointer { raw in
            getgrgid_r(gid, &entry, raw.baseAddress, raw.count, &result)
        }
        guard code == 0, result != nil, let name = entry.gr_name else {
            return nil
        }
        return String(cString: name)
    }

    /// UNIX98 pty subordinates have majors 136-143 (UNIX98_PTY_SLAVE_MAJOR + UNIX98_PTY_MAJOR_COUNT in
    /// <linux/major.h>).
    private static func isPseudoTerminal(fd: Int32, path: String) throws(SerialError) -> Bool {
        var info = stat()
        try Syscall.run("fstat", path: path) { fstat(fd, &info) }
        let device = UInt64(info.st_rdev)
        // glibc's gnu_dev_major, which Swift does not import.
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        return info.isCharacterDevice && (136...143).contains(major)
    }

    // MARK: Configuration

    /// The line settings as last read back from the device (at open, or after ``configure(_:)``).
    public var settings: LineSettings {
        self.state.withLock { $0.settings }
    }

    /// Reads the line settings from the device now (tcgetattr, and termios2 for the real speed).
    public func readSettings() throws(SerialError) -> LineSettings {
        try self.withOpenState { s throws(SerialError) in try Self.readSettings(fd: s.fd, path: self.path) }
    }

    /// Sets the line explicitly (raw mode, CLOCAL|CREAD, VMIN=0 VTIME=0, speed, frame, flow control), then reads
    /// it back and compares.
    ///
    /// Standard rates use the B-codes; any other rate goes through termios2/BOTHER. Returns warnings for what a
    /// pseudo-terminal cannot do while the port keeps working (parity); throws
    /// ``SerialError/unsupportedSetting(path:requested:applied:)`` when the device kept something else that
    /// matters (speed, data bits, stop bits, flow control, parity on a real device). The port then keeps the
    /// settings the device applied (``settings``). A speed the driver could only approximate within 2% counts as
    /// applied; ``settings`` then holds the real rate.
    ///
    /// Pseudo-terminal behaviour measured on Linux 6.18 (see `Tests/SerialPortTests/PseudoTerminalTests.swift`):
    /// the pty driver forces CS8 and clears PARENB in its set_termios. When that is the *only* change requested,
    /// tcsetattr fails with EINVAL (as if nothing requested could be applied, which POSIX lets tcsetattr report);
    /// together with any other change it succeeds and the bits are silently cleared. Stop bits,
    /// CRTSCTS, IXON/IXOFF and every speed (B50...B4000000, BOTHER) are kept as set. So on EINVAL this retries
    /// without parity, then with 8 data bits, and the read-back decides what was refused.
    public func configure(_ requested: LineSettings) throws(SerialError) -> [ConfigurationWarning] {
        try self.withOpenState { s throws(SerialError) in
            try Self.apply(requested, fd: s.fd, path: self.path)
            let applied = try Self.readSettings(fd: s.fd, path: self.path)
            s.settings = applied
            var warnings: [ConfigurationWarning] = []
            var expected = requested
            if Self.baudRateMatches(requested: requested.baudRate, applied: applied.baudRate) {
                expected.baudRate = applied.baudRate
            }
            if self.isPseudoTerminal && requested.parity != .none && applied.parity == .none {
                warnings.append(.parityUnsupported(requested: requested.parity, path: self.path))
                expected.parity = .none
            }
            guard applied == expected else {
                throw .unsupportedSetting(path: self.path, requested: requested, applied: applied)
            }
            return warnings
        }
    }

    /// Drivers that set a custom rate report the rate their divisor achieves; within 2% (the tolerance the
    /// kernel itself uses in tty_termios_encode_baud_rate, and within what UARTs tolerate) it is the rate asked for.
    static func baudRateMatches(requested: Int, applied: Int) -> Bool {
        abs(applied - requested) <= requested / 50
    }

    private static func apply(_ requested: LineSettings, fd: Int32, path: String) throws(SerialError) {
        var t = termios()
        try Syscall.run("tcgetattr", path: path, classify: Errno.removedClassifier(path: path)) { tcgetattr(fd, &t) }
        cfmakeraw(&t)
        requested.encodeFrame(into: &t)
        if let speed = requested.standardSpeed {
            // Clear the CIBAUD field so the input speed follows the output speed (a previous BOTHER left it set).
            t.c_cflag &= ~flag(CIBAUD)
            try Syscall.run("cfsetspeed", path: path) { cfsetspeed(&t, speed) }
        }
        // A custom rate keeps the current speed bits here and is set through termios2 below.

        var attempts = [t]
        if requested.parity != .none {
            var withoutParity = t
            withoutParity.c_cflag &= ~(flag(PARENB) | flag(PARODD) | flag(CMSPAR))
            attempts.append(withoutParity)
        }
        if requested.dataBits != .eight {
            var eightBits = attempts[attempts.count - 1]
            eightBits.c_cflag = (eightBits.c_cflag & ~flag(CSIZE)) | flag(CS8)
            attempts.append(eightBits)
        }
        var accepted = false
        for var attempt in attempts {
            switch Syscall.valueOrErrno({ tcsetattr(fd, TCSANOW, &attempt) }) {
            case .success:
                accepted = true
            case .failure(let code) where code.rawValue == EINVAL:
                // None of the requested changes took effect; try asking for less (see configure's comment).
                continue
            case .failure(let code) where code.meansDeviceGone:
                throw .removed(path: path)
            case .failure(let code):
                throw .system(operation: "tcsetattr", path: path, errno: code.rawValue)
            }
            break
        }
        if !accepted {
            throw .unsupportedSetting(
                path: path, requested: requested, applied: try Self.readSettings(fd: fd, path: path))
        }
        if requested.standardSpeed == nil {
            switch Syscall.valueOrErrno({ cserial_set_custom_baud(fd, UInt32(requested.baudRate)) }) {
            case .success:
                break
            case .failure(let code) where code.rawValue == EINVAL || code.rawValue == ENOTTY:
                // The driver refused the rate (or has no termios2); the read-back in the error shows what it kept.
                throw .unsupportedSetting(
                    path: path, requested: requested, applied: try Self.readSettings(fd: fd, path: path))
            case .failure(let code) where code.meansDeviceGone:
                throw .removed(path: path)
            case .failure(let code):
                throw .system(operation: "ioctl(TCSETS2)", path: path, errno: code.rawValue)
            }
        }
    }

    static func readSettings(fd: Int32, path: String) throws(SerialError) -> LineSettings {
        var t = termios()
        try Syscall.run("tcgetattr", path: path, classify: Errno.removedClassifier(path: path)) { tcgetattr(fd, &t) }
        var inputSpeed: UInt32 = 0
        var outputSpeed: UInt32 = 0
        try Syscall.run("ioctl(TCGETS2)", path: path, classify: Errno.removedClassifier(path: path)) {
            cserial_get_baud(fd, &inputSpeed, &outputSpeed)
        }
        return LineSettings(termios: t, baudRate: Int(outputSpeed))
    }

    // MARK: RS-485

    /// Sets RS-485 mode (TIOCSRS485) and returns what the driver applied (read back with TIOCGRS485).
    ///
    /// Throws ``SerialError/unsupported(feature:path:)`` on devices without RS-485 support (ENOTTY: pseudo-
    /// terminals, most USB adapters, which switch the transceiver in hardware).
    @discardableResult
    public func setRS485(_ settings: RS485Settings) throws(SerialError) -> RS485Settings {
        try self.withOpenState { s throws(SerialError) in
            try Self.runRS485Call("ioctl(TIOCSRS485)", path: self.path) {
                cserial_set_rs485(
                    s.fd,
                    settings.flags,
                    RS485Settings.milliseconds(settings.delayBeforeSend),
                    RS485Settings.milliseconds(settings.delayAfterSend)
                )
            }
            return try Self.readRS485(fd: s.fd, path: self.path)
        }
    }

    /// The RS-485 mode of the device (TIOCGRS485); ``SerialError/unsupported(feature:path:)`` where there is none.
    public func rs485Settings() throws(SerialError) -> RS485Settings {
        try self.withOpenState { s throws(SerialError) in try Self.readRS485(fd: s.fd, path: self.path) }
    }

    private static func readRS485(fd: Int32, path: String) throws(SerialError) -> RS485Settings {
        var flags: UInt32 = 0
        var before: UInt32 = 0
        var after: UInt32 = 0
        try Self.runRS485Call("ioctl(TIOCGRS485)", path: path) { cserial_get_rs485(fd, &flags, &before, &after) }
        return RS485Settings(flags: flags, delayBeforeMilliseconds: before, delayAfterMilliseconds: after)
    }

    private static func runRS485Call(_ operation: String, path: String, _ body: () -> Int32) throws(SerialError) {
        switch Syscall.valueOrErrno(body) {
        case .success:
            return
        case .failure(let code) where code.rawValue == ENOTTY:
            throw .unsupported(feature: "RS-485 mode", path: path)
        case .failure(let code) where code.meansDeviceGone:
            throw .removed(path: path)
        case .failure(let code):
            throw .system(operation: operation, path: path, errno: code.rawValue)
        }
    }

    // MARK: I/O

    /// Returns as soon as at least one byte is available; ``SerialError/timeout`` at the deadline.
    public func read(upTo maxCount: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8] {
        try self.withOpenState { s throws(SerialError) in
            try s.io(self.path).read(upTo: maxCount, deadline: deadline)
        }
    }

    /// Reads exactly `count` bytes; the timeout error carries the bytes received.
    public func readExactly(_ count: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8] {
        try self.withOpenState { s throws(SerialError) in
            try s.io(self.path).readExactly(count, deadline: deadline)
        }
    }

    /// Writes all bytes, then waits until they have left (tcdrain).
    public func write(_ bytes: some Collection<UInt8>, deadline: ContinuousClock.Instant) throws(SerialError) {
        let bytes = Array(bytes)
        try self.withOpenState { s throws(SerialError) in
            let io = s.io(self.path)
            do throws(SerialError) {
                try io.writeAll(bytes, deadline: deadline)
                let flowControl = s.settings.flowControl != .none
                // A pseudo-terminal has no wire: the bytes are in the peer's input queue once written, and
                // tcdrain would be a system call that returns at once (the bus master calls this per request).
                guard !self.isPseudoTerminal || flowControl else {
                    s.outputAbandoned = false
                    return
                }
                try io.drain(
                    flowControl: flowControl,
                    // Used only with flow control; computing it is a generic Duration division.
                    characterTime: flowControl ? s.settings.characterTime : .zero,
                    deadline: deadline,
                    sent: bytes
                )
                s.outputAbandoned = false
            } catch {
                if case .timeout = error {
                    s.outputAbandoned = true
                }
                throw error
            }
        }
    }

    /// Discards queued input, output or both (tcflush).
    public func flush(_ queue: FlushQueue) throws(SerialError) {
        try self.withOpenState { s throws(SerialError) in try s.io(self.path).flush(queue) }
    }

    /// Reads a burst until the line is silent for `characterTimes` character times (at least 1 ms); see
    /// ``SerialTransport/readUntilSilence(characterTimes:maxBytes:deadline:)``.
    public func readUntilSilence(characterTimes: Double, maxBytes: Int, deadline: ContinuousClock.Instant)
        throws(SerialError) -> [UInt8]
    {
        try self.withOpenState { s throws(SerialError) in
            let gap = Self.silenceGap(characterTimes: characterTimes, characterTime: s.settings.characterTime)
            return try s.io(self.path).readUntilSilence(gap: gap, maxBytes: maxBytes, deadline: deadline)
        }
    }

    // MARK: Closing

    /// Whether ``close()`` has not been called yet.
    public var isOpen: Bool {
        self.state.withLock { $0.fd >= 0 }
    }

    /// Restores the settings found at open, clears exclusive mode, releases the lock and closes the descriptor.
    /// Calling it again does nothing. A device that has gone away closes without error (nothing to restore).
    public func close() throws(SerialError) {
        try self.state.withLock { s throws(SerialError) in
            guard s.fd >= 0 else {
                return
            }
            let fd = s.fd
            s.fd = -1
            var firstError: SerialError?
            func note(_ operation: String, _ result: Result<Int32, Errno>) {
                if case .failure(let code) = result, !code.meansDeviceGone, firstError == nil {
                    firstError = .system(operation: operation, path: self.path, errno: code.rawValue)
                }
            }
            if s.outputAbandoned {
                note("tcflush", Syscall.valueOrErrno { tcflush(fd, TCOFLUSH) })
            }
            note("tcsetattr", Syscall.valueOrErrno { tcsetattr(fd, TCSANOW, &s.original) })
            note("ioctl(TIOCNXCL)", Syscall.valueOrErrno { cserial_clear_exclusive(fd) })
            // close(2) would release the lock too, unless a fork without exec shares the open file description.
            note("flock", Syscall.valueOrErrno { flock(fd, LOCK_UN) })
            // Not retried on EINTR: Linux has released the descriptor already (see Syscall).
            switch Syscall.valueOrErrno(retryOnInterrupt: false, { Glibc.close(fd) }) {
            case .success, .failure(Errno(rawValue: EINTR)):
                break
            case .failure(let code):
                note("close", .failure(code))
            }
            if let firstError {
                throw firstError
            }
        }
    }

    // MARK: Internals

    private func withOpenState<R: Sendable>(_ body: (inout State) throws(SerialError) -> R) throws(SerialError) -> R {
        try self.state.withLock { s throws(SerialError) -> R in
            guard s.fd >= 0 else {
                throw .system(operation: "use of closed port", path: self.path, errno: EBADF)
            }
            return try body(&s)
        }
    }
}
