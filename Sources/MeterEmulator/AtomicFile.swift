import Foundation

/// Writes a file so that a crash at any moment leaves either the old or the new content, never a mix:
/// write a temporary file beside it, fsync it, rename it over the old one, fsync the directory.
public enum AtomicFile {
    public enum Failure: Error, CustomStringConvertible {
        case write(path: String, errno: Int32)

        public var description: String {
            switch self {
            case .write(let path, let code):
                let reason = String(cString: strerror(code))
                let hint = code == ENOSPC ? ": the disk is full, free space and the state will be saved again"
                    : code == EACCES ? ": check the directory's permissions" : ""
                return "cannot save \(path): \(reason)\(hint)"
            }
        }
    }

    public static func write(_ bytes: [UInt8], to path: String) throws(Failure) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .write(path: temporary, errno: errno) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let code = errno
                close(fd)
                unlink(temporary)
                throw .write(path: temporary, errno: code)
            }
            offset += n
        }
        if fsync(fd) != 0 {
            let code = errno
            close(fd)
            unlink(temporary)
            throw .write(path: temporary, errno: code)
        }
        close(fd)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .write(path: path, errno: code)
        }
        let directory = (path as NSString).deletingLastPathComponent
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }
}
