#if canImport(Glibc)
import Glibc
#endif

/// A process that has a device open, found by scanning /proc/PID/fd as fuser(1) does.
public struct DeviceHolder: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Process id.
    public var pid: Int32
    /// Program name from /proc/PID/comm (or the first word of /proc/PID/cmdline).
    public var program: String

    public init(pid: Int32, program: String) {
        self.pid = pid
        self.program = program
    }

    public var description: String { "\(self.program) (pid \(self.pid))" }

    /// The processes that have `path` open, sorted by pid.
    ///
    /// Like fuser(1): the path's symbolic links are resolved first (a /dev/serial/by-id name or a pty link), then
    /// every /proc/PID/fd/N link is compared by name and, for nodes under /dev, by device number (st_rdev), so a
    /// device opened through another name or node still matches. Processes of other users are invisible to non-root callers; the list
    /// is then incomplete rather than wrong.
    public static func holders(of path: String, procRoot: String = "/proc") -> [DeviceHolder] {
        let resolved = FileSystem.resolvedPath(of: path) ?? path
        var device: dev_t?
        if case .success(let info) = FileSystem.status(of: resolved), info.isCharacterDevice {
            device = info.st_rdev
        }
        var holders: [DeviceHolder] = []
        for entry in FileSystem.entries(of: procRoot) ?? [] {
            guard let pid = Int32(entry) else {
                continue
            }
            let fdDirectory = "\(procRoot)/\(entry)/fd"
            let uses = (FileSystem.entries(of: fdDirectory) ?? []).contains { fd in
                let link = "\(fdDirectory)/\(fd)"
                guard let target = FileSystem.linkTarget(of: link) else {
                    return false
                }
                if target == resolved {
                    return true
                }
                // stat only device nodes: following a descriptor into a hung network or FUSE mount could block,
                // and sockets, pipes and anonymous inodes ("socket:[123]") are never the device.
                guard let device, target.hasPrefix("/dev/"), case .success(let info) = FileSystem.status(of: link)
                else {
                    return false
                }
                return info.isCharacterDevice && info.st_rdev == device
            }
            if uses {
                holders.append(DeviceHolder(pid: pid, program: self.programName(pid: entry, procRoot: procRoot)))
            }
        }
        return holders.sorted { $0.pid < $1.pid }
    }

    private static func programName(pid: String, procRoot: String) -> String {
        if let comm = FileSystem.text(at: "\(procRoot)/\(pid)/comm"), !comm.isEmpty {
            return comm
        }
        // comm is missing for kernel threads and some sandboxes; cmdline's first NUL-separated word then.
        if let cmdline = FileSystem.bytes(at: "\(procRoot)/\(pid)/cmdline", limit: 4096),
            let first = cmdline.split(separator: 0).first
        {
            return FileSystem.baseName(of: String(decoding: first, as: UTF8.self))
        }
        return "unknown"
    }
}
