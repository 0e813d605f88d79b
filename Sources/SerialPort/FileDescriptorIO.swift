#if canImport(Glibc)
import Glibc
#endif

import CSerialShim

/// The one poll(2) loop behind every deadline-bound read and write, shared by ``SerialPort`` and the controller
/// side of ``PseudoTerminalPair``.
///
/// The descriptor is non-blocking; waiting happens only in poll(2) with the time left to the deadline, so there
/// is no busy loop. poll's timeout is in whole milliseconds: it is rounded up, so a wait never ends before the
/// deadline (or before the end of a silence interval).
struct FileDescriptorIO {
    let fd: Int32
    /// Used in errors.
    let path: String

    // MARK: Waiting

    /// Waits until `events` can be done or the deadline passes; returns the poll revents, or nil at the deadline.
    func wait(for events: Int32, until deadline: ContinuousClock.Instant) throws(SerialError) -> Int32? {
        while true {
            let remaining = deadline - .now
            let milliseconds = remaining <= .zero ? 0 : Self.millisecondsRoundedUp(remaining)
            var entry = pollfd(fd: self.fd, events: Int16(truncatingIfNeeded: events), revents: 0)
            // EINTR is handled here rather than retried blindly, so the timeout is recomputed from the deadline.
            switch Syscall.valueOrErrno(retryOnInterrupt: false, { poll(&entry, 1, milliseconds) }) {
            case .failure(let code) where code.rawValue == EINTR:
                continue
            case .failure(let code):
                throw .system(operation: "poll", path: self.path, errno: code.rawValue)
            case .success(0):
                if milliseconds == 0 || ContinuousClock.now >= deadline {
                    return nil
                }
            case .success:
                return Int32(entry.revents)
            }
        }
    }

    static func millisecondsRoundedUp(_ duration: Duration) -> Int32 {
        let (seconds, attoseconds) = duration.components
        let perMillisecond: Int64 = 1_000_000_000_000_000
        let milliseconds = seconds * 1000 + (attoseconds + perMillisecond - 1) / perMillisecond
        return Int32(clamping: max(milliseconds, 1))
    }

    // MARK: Reading

    /// Reads what is there without waiting; [] if nothing is.
    ///
    /// With VMIN=0 VTIME=0 a tty read returns 0 when no byte is queued, O_NONBLOCK or not (n_tty checks the zero
    /// timeout before O_NONBLOCK), and a hung-up tty also reads 0. So 0 here means "nothing now"; a hang-up is
    /// recognised from poll's POLLHUP/POLLERR (see ``readAfterPoll(_:upTo:)``) or from EIO/ENXIO/ENODEV.
    func readAvailable(upTo maxCount: Int) throws(SerialError) -> [UInt8] {
        // A tty delivers at most its 4 KiB line-discipline buffer per read; 64 KiB bounds the zero-fill cost.
        let capacity = min(maxCount, 65536)
        var result: Result<Int, Errno> = .success(0)
        // Read into temporary (stack) storage and copy out what came: no zero-fill, an array no larger than the
        // bytes read, and no Array(unsafeUninitializedCapacity:), whose allocation is an unspecialised call into
        // the runtime that looks up the array's type on every read (the bus's hot path).
        let buffer = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { raw -> [UInt8] in
            result = Syscall.valueOrErrno { Glibc.read(self.fd, raw.baseAddress, capacity) }
            guard case .success(let count) = result, count > 0 else { return [] }
            return Array(UnsafeBufferPointer(rebasing: raw[..<count]))
        }
        switch result {
        case .success:
            return buffer
        case .failure(let code) where code.rawValue == EAGAIN || code.rawValue == EWOULDBLOCK:
            return []
        case .failure(let code) where code.meansDeviceGone:
            throw .removed(path: self.path)
        case .failure(let code):
            throw .system(operation: "read", path: self.path, errno: code.rawValue)
        }
    }

    /// Reads after poll reported `revents`. A hang-up may still leave bytes to read; once none are left, it is
    /// ``SerialError/removed(path:)`` (else the loop would spin on a poll that keeps returning POLLHUP).
    private func readAfterPoll(_ revents: Int32, upTo maxCount: Int) throws(SerialError) -> [UInt8] {
        if revents & POLLNVAL != 0 {
            throw .removed(path: self.path)
        }
        let bytes = try self.readAvailable(upTo: maxCount)
        if bytes.isEmpty && revents & (POLLHUP | POLLERR) != 0 {
            throw .removed(path: self.path)
        }
        return bytes
    }

    /// Returns as soon as at least one byte is available (up to `maxCount`); throws `.timeout` at the deadline.
    func read(upTo maxCount: Int, deadline: ContinuousClock.Instant, operation: String = "read")
        throws(SerialError) -> [UInt8]
    {
        precondition(maxCount > 0, "read(upTo:) needs a positive count")
        // A caller that cannot wait most likely finds bytes queued (it slept for them): read first. One that can
        // wait most likely finds none yet: poll first, which returns at once if some are there, and spare the
        // read that would come back empty. Queued bytes are returned even when the deadline has passed.
        var bytes = deadline <= .now ? try self.readAvailable(upTo: maxCount) : []
        while bytes.isEmpty {
            guard let revents = try self.wait(for: POLLIN, until: deadline) else {
                throw .timeout(operation: operation, path: self.path, partial: [])
            }
            bytes = try self.readAfterPoll(revents, upTo: maxCount)
        }
        return bytes
    }

    /// Reads exactly `count` bytes; a timeout carries the bytes received so far.
    func readExactly(_ count: Int, deadline: ContinuousClock.Instant) throws(SerialError) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        while bytes.count < count {
            do {
                bytes += try self.read(upTo: count - bytes.count, deadline: deadline, operation: "read exactly")
            } catch .timeout(let operation, let path, _) {
                throw .timeout(operation: "\(operation) \(count) bytes", path: path, partial: bytes)
            }
        }
        return bytes
    }

    /// Reads until the line has been silent for `gap` (or `maxBytes` arrived). Throws `.timeout` if nothing
    /// arrived by the deadline, or (with the bytes so far) if the line was still busy at the deadline.
    func readUntilSilence(gap: Duration, maxBytes: Int, deadline: ContinuousClock.Instant)
        throws(SerialError) -> [UInt8]
    {
        var bytes = try self.read(upTo: maxBytes, deadline: deadline, operation: "read until silence")
        var silenceEnd = ContinuousClock.now + gap
        while bytes.count < maxBytes {
            let waitUntil = min(silenceEnd, deadline)
            guard let revents = try self.wait(for: POLLIN, until: waitUntil) else {
                if waitUntil == silenceEnd {
                    return bytes
                }
                throw .timeout(operation: "read until silence", path: self.path, partial: bytes)
            }
            let more = try self.readAfterPoll(revents, upTo: maxBytes - bytes.count)
            if !more.isEmpty {
                bytes += more
                silenceEnd = ContinuousClock.now + gap
            }
        }
        return bytes
    }

    /// For writes: POLLNVAL, or POLLHUP/POLLERR without POLLOUT, means the device is gone.
    private func checkHangUp(_ revents: Int32, expecting event: Int32) throws(SerialError) {
        if revents & POLLNVAL != 0 {
            throw .removed(path: self.path)
        }
        if revents & event == 0 && revents & (POLLHUP | POLLERR) != 0 {
            throw .removed(path: self.path)
        }
    }

    // MARK: Writing

    /// Writes every byte (partial writes and EAGAIN wait in poll); a timeout carries the bytes handed to the driver.
    func writeAll(_ bytes: some Collection<UInt8>, deadline: ContinuousClock.Instant) throws(SerialError) {
        let bytes = Array(bytes)
        var written = 0
        while written < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                Syscall.valueOrErrno { Glibc.write(self.fd, raw.baseAddress! + written, bytes.count - written) }
            }
            switch result {
            case .success(let count):
                written += count
                continue
            case .failure(let code) where code.rawValue == EAGAIN || code.rawValue == EWOULDBLOCK:
                break
            case .failure(let code) where code.meansDeviceGone:
                throw .removed(path: self.path)
            case .failure(let code):
                throw .system(operation: "write", path: self.path, errno: code.rawValue)
            }
            guard let revents = try self.wait(for: POLLOUT, until: deadline) else {
                throw .timeout(operation: "write", path: self.path, partial: Array(bytes[..<written]))
            }
            try self.checkHangUp(revents, expecting: POLLOUT)
        }
    }

    /// Waits until the output queue has gone out on the wire (tcdrain), so a caller's inter-frame gap starts at
    /// the last stop bit.
    ///
    /// tcdrain(3) has no timeout: with flow control a peer holding CTS low (or having sent XOFF) would block it
    /// forever. So with flow control the queue is first watched with TIOCOUTQ, sleeping for the time the
    /// queued bytes need on the wire, until it is empty or the deadline passes; tcdrain then only waits for the
    /// UART's own FIFO. Without flow control tcdrain ends after at most queue length x character time.
    func drain(flowControl: Bool, characterTime: Duration, deadline: ContinuousClock.Instant, sent: [UInt8])
        throws(SerialError)
    {
        if flowControl {
            while true {
                var queued: Int32 = 0
                let gone = Errno.removedClassifier(path: self.path)
                try Syscall.run("ioctl(TIOCOUTQ)", path: self.path, classify: gone) {
                    cserial_output_queue(self.fd, &queued)
                }
                if queued == 0 {
                    break
                }
                let remaining = deadline - .now
                if remaining <= .zero {
                    throw .timeout(operation: "write (drain)", path: self.path, partial: sent)
                }
                let pause = min(max(characterTime * Int(queued), .milliseconds(1)), remaining)
                try self.sleep(pause)
            }
        }
        try Syscall.run("tcdrain", path: self.path, classify: Errno.removedClassifier(path: self.path)) {
            tcdrain(self.fd)
        }
    }

    /// Sleeps in poll(2) with no descriptors (the same clock as the waits above).
    private func sleep(_ duration: Duration) throws(SerialError) {
        let end = ContinuousClock.now + duration
        while ContinuousClock.now < end {
            let milliseconds = Self.millisecondsRoundedUp(end - .now)
            switch Syscall.valueOrErrno(retryOnInterrupt: false, { poll(nil, 0, milliseconds) }) {
            case .success, .failure(Errno(rawValue: EINTR)):
                continue
            case .failure(let code):
                throw .system(operation: "poll", path: self.path, errno: code.rawValue)
            }
        }
    }

    /// Discards queued input, output or both (tcflush).
    func flush(_ queue: FlushQueue) throws(SerialError) {
        let selector: Int32
        switch queue {
        case .input: selector = TCIFLUSH
        case .output: selector = TCOFLUSH
        case .both: selector = TCIOFLUSH
        }
        try Syscall.run("tcflush", path: self.path, classify: Errno.removedClassifier(path: self.path)) {
            tcflush(self.fd, selector)
        }
    }
}

/// Which queue ``SerialPort/flush(_:)`` discards.
public enum FlushQueue: Sendable {
    /// Bytes received but not read.
    case input
    /// Bytes written but not sent.
    case output
    case both
}
