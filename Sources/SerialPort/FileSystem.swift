#if canImport(Glibc)
import Glibc
#endif

/// The few file-system reads this module needs for /proc and /sys (without Foundation, whose file APIs would
/// hide errno). Reads of /proc and /sys race with processes exiting and devices leaving, so these return nil
/// instead of throwing: the callers treat a vanished entry as absent.
enum FileSystem {
    /// Names in a directory, without "." and "..", or nil if it cannot be opened.
    static func entries(of directory: String) -> [String]? {
        guard let dir = opendir(directory) else {
            return nil
        }
        defer {
            // closedir can only fail with EBADF for a stream we own; nothing to recover.
            _ = closedir(dir)
        }
        var names: [String] = []
        while true {
            // readdir returns NULL both at the end and on error; only errno tells them apart.
            Glibc.errno = 0
            guard let entry = readdir(dir) else {
                return Glibc.errno == 0 ? names : nil
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." {
                names.append(name)
            }
        }
    }

    /// A small text file (sysfs attribute, /proc entry) with trailing newlines removed, or nil if unreadable.
    static func text(at path: String, limit: Int = 4096) -> String? {
        guard let bytes = self.bytes(at: path, limit: limit) else {
            return nil
        }
        var text = String(decoding: bytes, as: UTF8.self)
        while text.last == "\n" || text.last == "\0" {
            text.removeLast()
        }
        return text
    }

    /// Up to `limit` bytes of a file, or nil if it cannot be read.
    static func bytes(at path: String, limit: Int) -> [UInt8]? {
        guard case .success(let fd) = Syscall.valueOrErrno({ open(path, O_RDONLY | O_CLOEXEC) }) else {
            return nil
        }
        defer {
            // A read-only descriptor has nothing to flush; close errors carry no information here.
            _ = close(fd)
        }
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: min(limit, 4096))
        while result.count < limit {
            let wanted = min(buffer.count, limit - result.count)
            let count = buffer.withUnsafeMutableBytes { raw in
                Syscall.valueOrErrno { Glibc.read(fd, raw.baseAddress, wanted) }
            }
            guard case .success(let n) = count else {
                return nil
            }
            if n == 0 {
                break
            }
            result.append(contentsOf: buffer[..<n])
        }
        return result
    }

    /// The target of a symbolic link, or nil if `path` is not a link.
    static func linkTarget(of path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = buffer.withUnsafeMutableBufferPointer { raw in
            Syscall.valueOrErrno { readlink(path, raw.baseAddress!, raw.count - 1) }
        }
        guard case .success(let n) = count else {
            return nil
        }
        return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The canonical absolute path with every symbolic link resolved, or nil if it does not exist.
    static func resolvedPath(of path: String) -> String? {
        guard let resolved = realpath(path, nil) else {
            return nil
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// stat(2) (following links), or the errno.
    static func status(of path: String) -> Result<stat, Errno> {
        var info = stat()
        return Syscall.valueOrErrno { stat(path, &info) }.map { _ in info }
    }

    /// lstat(2) (not following links), or the errno.
    static func linkStatus(of path: String) -> Result<stat, Errno> {
        var info = stat()
        return Syscall.valueOrErrno { lstat(path, &info) }.map { _ in info }
    }

    /// The last component of a path.
    static func baseName(of path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    /// The path without its last component ("/" for top-level entries).
    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else {
            return "."
        }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

extension stat {
    var isCharacterDevice: Bool { (self.st_mode & S_IFMT) == S_IFCHR }
    var isSymbolicLink: Bool { (self.st_mode & S_IFMT) == S_IFLNK }
}
