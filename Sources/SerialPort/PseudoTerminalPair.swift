#if canImport(Glibc)
import Glibc
#endif

import Synchronization

/// A pseudo-terminal pair for tests and emulators: the subordinate side (/dev/pts/N) is opened like a serial
/// port (``SerialPort/open(_:)``), the controller side is read and written here with the same deadline API.
///
/// Both ends are raw (cfmakeraw); the controller descriptor is O_NONBLOCK and both are O_CLOEXEC. With a
/// `linkPath`, a symbolic link to the subordinate is made there (as socat's `pty,link=PATH`) and removed by
/// ``close()``.
///
/// By default the pair keeps its own descriptor on the subordinate (`holdSubordinate`): without any open
/// subordinate, the controller polls POLLHUP and reads fail with EIO, so an emulator would see "removed" between
/// clients. A test that wants to see the client's close on the controller passes `holdSubordinate: false`.
/// The held descriptor does not take the flock, so ``SerialPort/open(_:)`` on the subordinate still succeeds.
///
/// Thread safety: as ``SerialPort``, calls are serialized by an internal mutex.
public final class PseudoTerminalPair: SerialTransport, Sendable {
    /// The subordinate device, e.g. /dev/pts/3.
    public let subordinatePath: String
    /// The symbolic link to the subordinate, if one was asked for.
    public let linkPath: String?

    /// The name used in errors from controller I/O.
    public var path: String { "\(self.subordinatePath) (controller)" }

    private struct State {
        /// -1 once closed.
        var controller: Int32
        /// -1 when not held or closed.
        var subordinate: Int32
        var lineSettings = LineSettings(baudRate: 9600)

        func io(_ path: String) -> FileDescriptorIO {
            FileDescriptorIO(fd: self.controller, path: path)
        }
    }

    private let state: Mutex<State>

    /// Opens a pair (openpty), makes both ends raw and optionally links `linkPath` to the subordinate.
    ///
    /// An existing symbolic link at `linkPath` whose target no longer exists (a /dev/pts/N left by a previous
    /// run) is replaced atomically; anything else there is refused with ``SerialError/pathOccupied(path:)``.
    public init(linkPath: String? = nil, holdSubordinate: Bool = true) throws(SerialError) {
        var controller: Int32 = -1
        var subordinate: Int32 = -1
        try Syscall.run("openpty", path: "/dev/ptmx") { openpty(&controller, &subordinate, nil, nil, nil) }
        var name = ""
        var linked = false
        do throws(SerialError) {
            name = try Self.deviceName(of: subordinate)
            for fd in [controller, subordinate] {
                try Syscall.run("fcntl(F_SETFD)", path: name) { fcntl(fd, F_SETFD, FD_CLOEXEC) }
                try Self.makeRaw(fd, path: name)
            }
            let flags = try Syscall.run("fcntl(F_GETFL)", path: name) { fcntl(controller, F_GETFL) }
            try Syscall.run("fcntl(F_SETFL)", path: name) { fcntl(controller, F_SETFL, flags | O_NONBLOCK) }
            if let linkPath {
                try Self.link(linkPath, to: name)
                linked = true
            }
            if !holdSubordinate {
                try Syscall.run("close", path: name, retryOnInterrupt: false) { Glibc.close(subordinate) }
                subordinate = -1
            }
        } catch {
            // Undo what was done; the original error is what the caller needs.
            if linked, let linkPath {
                _ = Syscall.valueOrErrno { unlink(linkPath) }
            }
            for fd in [controller, subordinate] where fd >= 0 {
                _ = Syscall.valueOrErrno(retryOnInterrupt: false) { Glibc.close(fd) }
            }
            throw error
        }
        self.subordinatePath = name
        self.linkPath = linkPath
        self.state = Mutex(State(controller: controller, subordinate: subordinate))
    }

    deinit {
        do {
            try self.close()
        } catch {
            // deinit cannot report; callers who care call close() and see its error.
        }
    }

    private static func deviceName(of fd: Int32) throws(SerialError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX))
        // ttyname_r returns the error number instead of setting errno.
        let code = buffer.withUnsafeMutableBufferPointer { ttyname_r(fd, $0.baseAddress!, $0.count) }
        guard code == 0 else {
            throw .system(operation: "ttyname_r", path: "/dev/ptmx", errno: code)
        }
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func makeRaw(_ fd: Int32, path: String) throws(SerialError) {
        var t = termios()
        try Syscall.run("tcgetattr", path: path) { tcgetattr(fd, &t) }
        cfmakeraw(&t)
        LineSettings.setControlCharacter(&t, VMIN, 0)
        LineSettings.setControlCharacter(&t, VTIME, 0)
        try Syscall.run("tcsetattr", path: path) { tcsetattr(fd, TCSANOW, &t) }
    }

    /// Creates `linkPath` -> `target`, replacing a stale link (rename(2) over it, so there is never a moment
    /// without a link) and refusing anything else.
    private static func link(_ linkPath: String, to target: String) throws(SerialError) {
        switch FileSystem.linkStatus(of: linkPath) {
        case .failure(let code) where code.rawValue == ENOENT:
            try Syscall.run("symlink", path: linkPath) { symlink(target, linkPath) }
        case .failure(let code):
            throw .system(operation: "lstat", path: linkPath, errno: code.rawValue)
        case .success(let info):
            guard info.isSymbolicLink, Self.isStaleLink(linkPath, newTarget: target) else {
                // A file, or a link to a pty that a live process holds (another emulator, socat): not ours.
                throw .pathOccupied(path: linkPath)
            }
            let temporary = "\(linkPath).\(getpid()).tmp"
            if case .failure(let code) = Syscall.valueOrErrno({ unlink(temporary) }), code.rawValue != ENOENT {
                throw .system(operation: "unlink", path: temporary, errno: code.rawValue)
            }
            try Syscall.run("symlink", path: temporary) { symlink(target, temporary) }
            do throws(SerialError) {
                try Syscall.run("rename", path: linkPath) { rename(temporary, linkPath) }
            } catch {
                _ = Syscall.valueOrErrno { unlink(temporary) }
                throw error
            }
        }
    }

    /// A link left by a crashed run: its target is gone, or is a pseudo-terminal nobody holds open any more
    /// (pty numbers are reused, so a crashed run's /dev/pts/N may exist again, even as our own new pty).
    private static func isStaleLink(_ linkPath: String, newTarget: String) -> Bool {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink(linkPath, &buffer, buffer.count - 1)
        guard length > 0 else { return false }
        let old = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if case .failure(let code) = FileSystem.status(of: linkPath), code.rawValue == ENOENT { return true }
        if old == newTarget { return true }
        return old.hasPrefix("/dev/pts/") && DeviceHolder.holders(of: old).isEmpty
    }

    // MARK: Settings

    /// Line settings used for the character time of ``readUntilSilence(characterTimes:maxBytes:deadline:)`` on
    /// the controller (a pty has no wire speed of its own); 9600:8N1 unless set.
    public var lineSettings: LineSettings {
        get { self.state.withLock { $0.lineSettings } }
        set { self.state.withLock { $0.lineSettings = newValue } }
    }

    /// The settings the subordinate's user configured (speed and stop bits as set; a pty keeps no parity and
    /// always 8 data bits), e.g. for an emulator that paces its answers at the client's speed.
    public func subordinateSettings() throws(SerialError) -> LineSettings {
        let held = try self.withOpenState { s throws(SerialError) in s.subordinate }
        if held >= 0 {
            return try self.withOpenState { s throws(SerialError) in
                try SerialPort.readSettings(fd: s.subordinate, path: self.subordinatePath)
            }
        }
        let fd = try Syscall.run("open", path: self.subordinatePath) {
            Glibc.open(self.subordinatePath, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        }
        defer {
            // Only read from; a close error changes nothing for the caller.
            _ = Syscall.valueOrErrno(retryOnInterrupt: false) { Glibc.close(fd) }
        }
        return try SerialPort.readSettings(fd: fd, path: self.subordinatePath)
    }

    // MARK: I/O on the controller side

    /// Returns as soon as at least one byte is available on the controller side; ``SerialError/timeout`` at the deadline.
    public func read(upTo maxCount: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8] {
        try self.withOpenState { s throws(SerialError) in
            try s.io(self.path).read(upTo: maxCount, deadline: deadline)
        }
    }

    /// Reads exactly `count` bytes on the controller side; the timeout error carries the bytes received.
    public func readExactly(_ count: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8] {
        try self.withOpenState { s throws(SerialError) in
            try s.io(self.path).readExactly(count, deadline: deadline)
        }
    }

    /// Writes all bytes on the controller side, then waits until they have left (tcdrain).
    public func write(_ bytes: some Collection<UInt8>, deadline: ContinuousClock.Instant) throws(SerialError) {
        let bytes = Array(bytes)
        try self.withOpenState { s throws(SerialError) in
            let io = s.io(self.path)
            try io.writeAll(bytes, deadline: deadline)
            // No flow control on a pty: tcdrain returns at once, the bytes are in the subordinate's input queue.
            let characterTime = s.lineSettings.characterTime
            try io.drain(flowControl: false, characterTime: characterTime, deadline: deadline, sent: bytes)
        }
    }

    /// Discards queued input, output or both (tcflush) on the controller side.
    public func flush(_ queue: FlushQueue) throws(SerialError) {
        try self.withOpenState { s throws(SerialError) in try s.io(self.path).flush(queue) }
    }

    /// Reads a burst on the controller side until the line is silent for `characterTimes` character times (at least 1 ms); see
    /// ``SerialTransport/readUntilSilence(characterTimes:maxBytes:deadline:)``.
    public func readUntilSilence(characterTimes: Double, maxBytes: Int, deadline: ContinuousClock.Instant)
        throws(SerialError) -> [UInt8]
    {
        try self.withOpenState { s throws(SerialError) in
            let gap = Self.silenceGap(characterTimes: characterTimes, characterTime: s.lineSettings.characterTime)
            return try s.io(self.path).readUntilSilence(gap: gap, maxBytes: maxBytes, deadline: deadline)
        }
    }

    // MARK: Closing

    /// Whether ``close()`` has not been called yet.
    public var isOpen: Bool {
        self.state.withLock { $0.controller >= 0 }
    }

    /// Removes the link (if it still points to this pair), closes the held subordinate and the controller.
    /// Whoever has the subordinate open then reads end of file / POLLHUP (``SerialError/removed(path:)``).
    /// Calling it again does nothing.
    public func close() throws(SerialError) {
        try self.state.withLock { s throws(SerialError) in
            guard s.controller >= 0 else {
                return
            }
            var firstError: SerialError?
            if let linkPath, FileSystem.linkTarget(of: linkPath) == self.subordinatePath {
                if case .failure(let code) = Syscall.valueOrErrno({ unlink(linkPath) }), code.rawValue != ENOENT {
                    firstError = .system(operation: "unlink", path: linkPath, errno: code.rawValue)
                }
            }
            for fd in [s.subordinate, s.controller] where fd >= 0 {
                // Not retried on EINTR: Linux has released the descriptor already (see Syscall).
                let result = Syscall.valueOrErrno(retryOnInterrupt: false) { Glibc.close(fd) }
                if case .failure(let code) = result, code.rawValue != EINTR, firstError == nil {
                    firstError = .system(operation: "close", path: self.subordinatePath, errno: code.rawValue)
                }
            }
            s.controller = -1
            s.subordinate = -1
            if let firstError {
                throw firstError
            }
        }
    }

    private func withOpenState<R: Sendable>(_ body: (inout State) throws(SerialError) -> R) throws(SerialError) -> R {
        try self.state.withLock { s throws(SerialError) -> R in
            guard s.controller >= 0 else {
                throw .system(operation: "use of closed pseudo-terminal", path: self.path, errno: EBADF)
            }
            return try body(&s)
        }
    }
}
