#if canImport(Glibc)
import Glibc
#endif

/// The one helper every system call in this module goes through (after swift-system's `valueOrErrno`).
///
/// It retries `EINTR` (a signal delivered to this thread must not surface as an I/O failure) and turns the C
/// convention "-1 and errno" into a value or a typed error. `close(2)` is the exception that must not be retried:
/// on Linux the descriptor is released even when `close` reports `EINTR`, and a retry could close a descriptor
/// another thread has just been given.
enum Syscall {
    /// The value of a system call, or the errno it left when it returned -1.
    static func valueOrErrno<I: FixedWidthInteger>(
        retryOnInterrupt: Bool = true,
        _ body: () -> I
    ) -> Result<I, Errno> {
        while true {
            let result = body()
            if result != -1 {
                return .success(result)
            }
            let code = Glibc.errno
            if code == EINTR && retryOnInterrupt {
                continue
            }
            return .failure(Errno(rawValue: code))
        }
    }

    /// Runs a system call and throws ``SerialError/system(operation:path:errno:)`` (or ``SerialError/removed(path:)``
    /// when `classify` says the device is gone) if it fails.
    @discardableResult
    static func run<I: FixedWidthInteger>(
        _ operation: String,
        path: String,
        retryOnInterrupt: Bool = true,
        classify: (Errno) -> SerialError? = { _ in nil },
        _ body: () -> I
    ) throws(SerialError) -> I {
        switch valueOrErrno(retryOnInterrupt: retryOnInterrupt, body) {
        case .success(let value):
            return value
        case .failure(let code):
            throw classify(code) ?? .system(operation: operation, path: path, errno: code.rawValue)
        }
    }
}

/// An errno value as left by a failed system call.
struct Errno: Error, Equatable, Sendable {
    var rawValue: Int32

    /// Errors that mean the device went away under an open descriptor (USB adapter unplugged, pty hung up).
    var meansDeviceGone: Bool {
        self.rawValue == EIO || self.rawValue == ENXIO || self.rawValue == ENODEV
    }
}

extension Errno {
    /// For ``Syscall/run(_:path:retryOnInterrupt:classify:_:)`` on an open port: device-gone errors become
    /// ``SerialError/removed(path:)``.
    static func removedClassifier(path: String) -> (Errno) -> SerialError? {
        { code in code.meansDeviceGone ? .removed(path: path) : nil }
    }
}
