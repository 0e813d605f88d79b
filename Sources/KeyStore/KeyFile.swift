#if canImport(Glibc)
import Glibc
#endif
import MeterProtocol
import Prepaid

/// The issuer's key file (docs/CARD.md §3.1): a small text file, mode 0600, never overwritten, never read when
/// group or others may read it.
///
/// ```
/// metergw-keys v1
/// issuer-id 1
/// system-key <64 hex digits>
/// ```
/// Blank lines and lines starting with `#` are ignored. No error message ever contains key material.
public enum KeyFile {
    public static let header = "metergw-keys v1"
    public static let fileName = "keys"
    static let maxSize = 4096

    /// `$XDG_CONFIG_HOME/metergw/keys`, else `$HOME/.config/metergw/keys`; nil when neither is set.
    public static func defaultPath(xdgConfigHome: String?, home: String?) -> String? {
        if let xdg = xdgConfigHome, xdg.hasPrefix("/") { return xdg + "/metergw/" + Self.fileName }
        if let home, !home.isEmpty { return home + "/.config/metergw/" + Self.fileName }
        return nil
    }

    /// The default path from this process's environment.
    public static func defaultPath() -> String? {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        return self.defaultPath(xdgConfigHome: env("XDG_CONFIG_HOME"), home: env("HOME"))
    }

    /// Creates a new key file with a fresh random system key. Refuses to overwrite anything at `path`.
    /// Missing parent folders are created with mode 0700.
    public static func create(at path: String, issuerID: UInt32) throws(KeyFileError) -> IssuerKeys {
        let keys = IssuerKeys(systemKey: SystemKey.generate(), issuerID: issuerID)
        try self.makeParents(of: path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 {
            let err = errno
            if err == EEXIST { throw .exists(path: path) }
            throw Self.error(err, "create", path)
        }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(path) }
        }
        guard fchmod(fd, 0o600) == 0 else { throw Self.error(errno, "chmod", path) }
        var bytes = Array(self.render(keys).utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.error(errno, "write", path)
            }
            bytes = bytes.dropFirst(n)
        }
        guard fsync(fd) == 0 else { throw Self.error(errno, "fsync", path) }
        ok = true
        return keys
    }

    /// Reads a key file, refusing one whose mode lets group or others in.
    public static func load(from path: String) throws(KeyFileError) -> IssuerKeys {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw Self.error(errno, "open", path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw Self.error(errno, "stat", path) }
        guard st.st_mode & S_IFMT == S_IFREG else { throw .notARegularFile(path: path) }
        let mode = UInt32(st.st_mode) & 0o777
        guard mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: mode) }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        while data.count <= Self.maxSize {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Self.error(errno, "read", path)
            }
            if n == 0 { break }
            data += buffer[0..<n]
        }
        guard data.count <= Self.maxSize else { throw .malformed(path: path, line: 0, reason: "larger than 4 KiB") }
        do {
            return try self.parse(String(decoding: data, as: UTF8.self))
        } catch {
            if case .malformed(_, let line, let reason) = error {
                throw .malformed(path: path, line: line, reason: reason)
            }
            throw error
        }
    }

    /// The file's text for `keys`.
    public static func render(_ keys: IssuerKeys) -> String {
        """
        \(Self.header)
        # metergw issuer keys: keep this file secret (mode 0600) and backed up; every meter key derives from it.
        issuer-id \(keys.issuerID)
        system-key \(hexString(keys.systemKey.exportBytesForKeyFile(), separator: "").lowercased())

        """
    }

    /// Parses a key file's text; errors name the line and field, never the key.
    public static func parse(_ text: String) throws(KeyFileError) -> IssuerKeys {
        var sawHeader = false
        var issuer: UInt32?
        var key: SystemKey?
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters()
            let number = i + 1
            if line.isEmpty || line.hasPrefix("#") { continue }
            if !sawHeader {
                guard line == Self.header else {
                    throw .malformed(path: "", line: number, reason: "expected '\(Self.header)' as the first line")
                }
                sawHeader = true
                continue
            }
            let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw .malformed(path: "", line: number, reason: "expected 'name value'") }
            switch parts[0] {
            case "issuer-id":
                guard issuer == nil, let id = UInt32(parts[1]) else {
                    throw .malformed(path: "", line: number, reason: "issuer-id must appear once, as 0...4294967295")
                }
                issuer = id
            case "system-key":
                guard key == nil, parts[1].count == 64, let bytes = parseHex(parts[1]), let k = SystemKey(bytes: bytes)
                else {
                    throw .malformed(path: "", line: number, reason: "system-key must appear once, as 64 hex digits")
                }
                key = k
            default:
                throw .malformed(path: "", line: number, reason: "unknown field '\(parts[0].prefix(32))'")
            }
        }
        guard sawHeader else { throw .malformed(path: "", line: 0, reason: "empty file") }
        guard let issuer else { throw .malformed(path: "", line: 0, reason: "no issuer-id line") }
        guard let key else { throw .malformed(path: "", line: 0, reason: "no system-key line") }
        return IssuerKeys(systemKey: key, issuerID: issuer)
    }

    static func makeParents(of path: String) throws(KeyFileError) {
        var components = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        components.removeLast()
        var current = ""
        for (i, component) in components.enumerated() {
            if i == 0 && component.isEmpty { continue }
            current += (i == 0 && !path.hasPrefix("/") ? "" : "/") + component
            if component.isEmpty || component == "." { continue }
            if mkdir(current, 0o700) != 0 && errno != EEXIST { throw Self.error(errno, "create folder", current) }
        }
    }

    static func error(_ err: Int32, _ operation: String, _ path: String) -> KeyFileError {
        switch err {
        case ENOENT: .notFound(path: path)
        case EACCES, EPERM: .permissionDenied(path: path, operation: operation)
        default: .io(path: path, operation: operation, errno: err)
        }
    }
}

/// Why a key file could not be created or read; the explanation says what to do, and never shows a key.
public enum KeyFileError: Error, Hashable, Sendable {
    case exists(path: String)
    case notFound(path: String)
    case notARegularFile(path: String)
    case permissionDenied(path: String, operation: String)
    /// Group or others may access the file.
    case tooOpen(path: String, mode: UInt32)
    case malformed(path: String, line: Int, reason: String)
    case io(path: String, operation: String, errno: Int32)

    public var explanation: String {
        switch self {
        case .exists(let p): "\(p) already exists; refusing to overwrite a key file (move it away first if you mean it)"
        case .notFound(let p): "no key file at \(p); create one with `metergw keys init --file \(p)`"
        case .notARegularFile(let p): "\(p) is not a regular file"
        case .permissionDenied(let p, let op): "permission denied (\(op)) on \(p): check its owner and mode"
        case .tooOpen(let p, let mode):
            "\(p) is readable by others (mode \(String(mode, radix: 8))); refusing to use it: run `chmod 600 \(p)`"
        case .malformed(let p, let line, let reason):
            "\(p)\(line > 0 ? " line \(line)" : ""): not a metergw key file: \(reason)"
        case .io(let p, let op, let err): "\(op) \(p) failed: \(String(cString: strerror(err)))"
        }
    }
}

extension Substring {
    func trimmingCharacters() -> String {
        var s = self
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }
}
