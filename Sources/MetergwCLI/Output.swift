#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Unbuffered writes to stdout and stderr, so live output (decode from a pipe, sniff) appears as it happens.
enum Output {
    static func line(_ text: String) { self.write(1, text + "\n") }
    static func error(_ text: String) { self.write(2, text + "\n") }

    static func write(_ fd: Int32, _ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return  // stdout closed (e.g. piped into head): nothing useful left to do
            }
            bytes = bytes.dropFirst(n)
        }
    }
}
