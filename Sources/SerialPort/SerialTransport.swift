/// Deadline-bound byte I/O on a serial line: what the bus layer needs from a port.
///
/// ``SerialPort`` (a real device or a pty subordinate) and ``PseudoTerminalPair`` (the controller side) conform,
/// and share one poll(2) implementation. Every call blocks the calling thread at most until its deadline
/// (`ContinuousClock.Instant`, e.g. `.now + .milliseconds(500)`). A deadline already passed still returns bytes
/// that are queued.
public protocol SerialTransport: AnyObject, Sendable {
    /// The device path, as used in errors.
    var path: String { get }

    /// Returns as soon as at least one byte (at most `maxCount`) is available; throws ``SerialError/timeout`` at
    /// the deadline and ``SerialError/removed(path:)`` if the device goes away.
    func read(upTo maxCount: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8]

    /// Reads exactly `count` bytes; the timeout error carries the bytes received before the deadline.
    func readExactly(_ count: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8]

    /// Writes all bytes, then waits until they have left the wire (tcdrain), so the caller's inter-frame gap
    /// starts at the last stop bit.
    func write(_ bytes: some Collection<UInt8>, deadline: ContinuousClock.Instant) throws(SerialError)

    /// Discards received-but-unread input, written-but-unsent output, or both (tcflush).
    func flush(_ queue: FlushQueue) throws(SerialError)

    /// Reads a burst: returns once the line has been silent for `characterTimes` character times at the current
    /// line settings (Modbus RTU frames end after 3.5), or once `maxBytes` arrived.
    ///
    /// The silence is never shorter than 1 ms: below that, scheduling latency and USB-serial adapters (which
    /// deliver bytes in packets, every 1-16 ms depending on the latency timer) make gaps that are not on the wire.
    /// Throws ``SerialError/timeout`` if nothing arrived by the deadline, or, with the bytes so far, if the line
    /// never went silent before it.
    func readUntilSilence(characterTimes: Double, maxBytes: Int, deadline: ContinuousClock.Instant)
        throws(SerialError) -> [UInt8]
}

extension SerialTransport {
    /// The silence gap for ``readUntilSilence(characterTimes:maxBytes:deadline:)``: n character times, at least
    /// 1 ms.
    static func silenceGap(characterTimes: Double, characterTime: Duration) -> Duration {
        precondition(characterTimes >= 0, "characterTimes must not be negative")
        return max(characterTime * characterTimes, .milliseconds(1))
    }
}
