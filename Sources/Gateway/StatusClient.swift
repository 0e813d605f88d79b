import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Fetches a running gateway's `/status` over loopback HTTP (for `metergw status`, tests and the demo): a plain
/// HTTP/1.0 GET on a socket, no HTTP client library needed for one local request.
public enum StatusClient {
    public enum Failure: Error, CustomStringConvertible {
        case unreachable(ListenAddress, String)
        case badAnswer(ListenAddress, String)

        public var description: String {
            switch self {
            case .unreachable(let a, let why):
                "no gateway answers at \(a) (\(why)): is metergw serve running, with metrics = \"\(a)\"?"
            case .badAnswer(let a, let why):
                "the answer from \(a) is not a gateway status (\(why)): is another program on that port?"
            }
        }
    }

    /// The status, decoded.
    public static func fetch(_ address: ListenAddress, timeoutSeconds: Int = 5) throws(Failure) -> GatewayStatus {
        let body = try Self.get("/status", from: address, timeoutSeconds: timeoutSeconds)
        do {
            return try JSONDecoder().decode(GatewayStatus.self, from: Data(body))
        } catch {
            throw .badAnswer(address, "\(error)")
        }
    }

    /// The body of `GET path`.
    public static func get(_ path: String, from address: ListenAddress, timeoutSeconds: Int = 5)
        throws(Failure) -> [UInt8]
    {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address.host, String(address.port), &hints, &list) == 0, let info = list else {
            throw .unreachable(address, "cannot resolve \(address.host)")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { throw .unreachable(address, String(cString: strerror(errno))) }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            throw .unreachable(address, String(cString: strerror(errno)))
        }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
            throw .unreachable(address, String(cString: strerror(errno)))
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw .unreachable(address, String(cString: strerror(errno))) }
            if n == 0 { break }
            answer += buffer[0..<n]
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let cut = answer.indices.first(where: { answer[$0...].starts(with: separator) }) else {
            throw .badAnswer(address, "no HTTP header")
        }
        let head = String(decoding: answer[..<cut], as: UTF8.self)
        guard head.hasPrefix("HTTP/1.1 200") || head.hasPrefix("HTTP/1.0 200") else {
            throw .badAnswer(address, head.split(separator: "\r\n").first.map(String.init) ?? "empty answer")
        }
        return Array(answer[(cut + 4)...])
    }
}
