import MeterProtocol
import SerialPort
#if canImport(Glibc)
import Glibc
#endif

/// A recording of what a port received, with times: written by `sniff --record`, read by `decode --trace` and
/// `sniff --file`, and by tests.
///
/// ```
/// metergw-trace v1 9600:8E1
/// 0 7E0100050135...
/// 1530 7E0180...
/// ```
/// After the header line, one line per chunk as it came from the port: microseconds since the start, then the
/// bytes in hex.
struct BusTrace {
    static let magic = "metergw-trace v1"

    var line: LineSettings
    var chunks: [(time: Duration, bytes: [UInt8])]

    static func read(_ path: String) throws -> BusTrace {
        let text = String(decoding: try InputFile.read(path), as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)[...]
        guard let header = lines.popFirst(), header.hasPrefix(magic) else {
            throw CLIError(.dataError, "\(path) is not a metergw trace (it must start with \"\(magic)\")")
        }
        let lineText = header.dropFirst(magic.count).trimmingCharacters()
        guard let settings = try? LineSettings(parsing: lineText.isEmpty ? "9600:8N1" : lineText) else {
            throw CLIError(.dataError, "\(path) line 1: bad line settings \"\(lineText)\"")
        }
        var chunks: [(Duration, [UInt8])] = []
        for (index, line) in lines.enumerated() where !line.isEmpty {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let micros = Int64(parts[0]), let bytes = parseHex(String(parts[1])) else {
                throw CLIError(.dataError, "\(path) line \(index + 2): expected MICROSECONDS HEX, got \"\(line)\"")
            }
            chunks.append((.microseconds(micros), bytes))
        }
        return BusTrace(line: settings, chunks: chunks)
    }

    /// Appends chunks to a trace file as they arrive, so a recording survives an interrupted sniff.
    final class Recorder {
        let path: String
        private let fd: Int32

        init(path: String, line: LineSettings) throws {
            self.path = path
            self.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard self.fd >= 0 else {
                throw CLIError(errno == EACCES ? .noPermission : .ioError,
                               "cannot write the trace \(path): \(String(cString: strerror(errno)))")
            }
            try self.write("\(BusTrace.magic) \(line)\n")
        }

        func record(_ bytes: [UInt8], at time: Duration) throws {
            try self.write("\(time.microseconds) \(hexString(bytes, separator: ""))\n")
        }

        private func write(_ text: String) throws {
            var bytes = Array(text.utf8)[...]
            while !bytes.isEmpty {
                let n = bytes.withUnsafeBytes { Glibc.write(self.fd, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    let reason = errno == ENOSPC ? "the disk is full" : String(cString: strerror(errno))
                    throw CLIError(.ioError, "writing the trace \(self.path) failed: \(reason)")
                }
                bytes = bytes.dropFirst(n)
            }
        }

        deinit { close(self.fd) }
    }
}

extension StringProtocol {
    func trimmingCharacters() -> String {
        String(self.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
