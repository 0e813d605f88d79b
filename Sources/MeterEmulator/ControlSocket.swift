import Foundation

/// A Unix stream socket beside the bus link (`LINK.ctl`) through which a test or a person puts cards into the
/// emulator's card writers and meters and reads its status. One request line in, one JSON line out
/// (docs/EMULATOR.md "Control socket").
public final class ControlSocket: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private let handler: @Sendable (String) -> String
    private var thread: Thread?

    public enum Failure: Error, CustomStringConvertible {
        case socket(path: String, operation: String, errno: Int32)
        case pathTooLong(String)

        public var description: String {
            switch self {
            case .socket(let path, let operation, let code):
                "control socket \(path): \(operation) failed: \(String(cString: strerror(code)))"
            case .pathTooLong(let path):
                "control socket path \(path) is longer than a Unix socket allows (107 bytes): use a shorter --link"
            }
        }
    }

    /// Binds `path` (replacing a stale socket left by a crashed run) and serves `handler` on a thread.
    public init(path: String, handler: @escaping @Sendable (String) -> String) throws(Failure) {
        self.path = path
        self.handler = handler
        var address = try Self.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket(path: path, operation: "socket", errno: errno) }
        var info = stat()
        if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFSOCK { unlink(path) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else {
            let code = errno
            Glibc.close(fd)
            throw .socket(path: path, operation: "bind", errno: code)
        }
        self.fd = fd
        let thread = Thread { [self] in self.serve() }
        thread.name = "control-socket"
        self.thread = thread
        thread.start()
    }

    private static func address(_ path: String) throws(Failure) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw .pathTooLong(path) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }

    private func serve() {
        while true {
            let client = accept(self.fd, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return  // closed
            }
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while read(client, &byte, 1) == 1 && byte != 0x0A { line.append(byte) }
            let answer = Array((self.handler(String(decoding: line, as: UTF8.self)) + "\n").utf8)
            var offset = 0
            while offset < answer.count {
                let n = answer[offset...].withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                if n <= 0 { break }
                offset += n
            }
            Glibc.close(client)
        }
    }

    /// Stops serving and removes the socket file.
    public func close() {
        shutdown(self.fd, Int32(SHUT_RDWR))
        Glibc.close(self.fd)
        unlink(self.path)
    }

    /// Sends one request line to the socket at `path` and returns the answer line (the client side).
    public static func request(_ line: String, path: String) throws(Failure) -> String {
        var address = try Self.address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .socket(path: path, operation: "socket", errno: errno) }
        defer { Glibc.close(fd) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw .socket(path: path, operation: "connect", errno: errno) }
        let request = Array((line + "\n").utf8)
        var offset = 0
        while offset < request.count {
            let n = request[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw .socket(path: path, operation: "write", errno: errno) }
            offset += n
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            answer += buffer[0..<n]
        }
        return String(decoding: answer, as: UTF8.self).trimmingWhitespace()
    }
}
