import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

/// An error for a person: what happened and what to do, and the exit status it maps to.
struct CLIError: Error, CustomStringConvertible {
    let status: ExitStatus
    let message: String

    init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    var description: String { self.message }
}

/// Reading whole input files with errors that say what to do.
enum InputFile {
    static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let err = errno
            switch err {
            case ENOENT: throw CLIError(.notFound, "no such file: \(path)")
            case EACCES: throw CLIError(.noPermission, "permission denied reading \(path): check its mode and owner")
            default: throw CLIError(.ioError, "cannot open \(path): \(String(cString: strerror(err)))")
            }
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CLIError(.ioError, "reading \(path) failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { return out }
            out += buffer[0..<n]
        }
    }
}
