#if canImport(Glibc)
import Glibc
#endif

/// What went wrong on a serial port, with the context a person needs to fix it.
///
/// Every case names the device path. `description` is a sentence for a person that ends with what to do next;
/// callers that decide (retry, give up, report) switch over the cases.
public enum SerialError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The device does not exist (open failed with ENOENT, ENXIO or ENODEV).
    case notFound(path: String)
    /// The device exists but this user may not open it; `group` is the group that owns the device node.
    case permissionDenied(path: String, group: String?)
    /// Another open file holds the port's lock (flock) or exclusive mode (TIOCEXCL); `holders` are the processes
    /// that have the device open, found as fuser(1) does (empty when they could not be found).
    case busy(path: String, holders: [DeviceHolder])
    /// The device refused part of a configuration that matters: `applied` is what it kept.
    case unsupportedSetting(path: String, requested: LineSettings, applied: LineSettings)
    /// The device has no such feature at all (a pseudo-terminal answers ENOTTY to RS-485 ioctls).
    case unsupported(feature: String, path: String)
    /// The deadline passed; `partial` holds the bytes received (reads) or handed to the driver (writes) before.
    case timeout(operation: String, path: String, partial: [UInt8])
    /// The device went away while open: unplugged adapter, hung-up pseudo-terminal (POLLHUP, POLLERR, EIO, ENXIO,
    /// ENODEV, or end of file).
    case removed(path: String)
    /// A path that should be created (a pseudo-terminal link) exists and is not a stale link to replace.
    case pathOccupied(path: String)
    /// Any other failed system call.
    case system(operation: String, path: String, errno: Int32)

    /// The device path the error is about.
    public var path: String {
        switch self {
        case .notFound(let path), .permissionDenied(let path, _), .busy(let path, _),
            .unsupportedSetting(let path, _, _), .unsupported(_, let path), .timeout(_, let path, _),
            .removed(let path), .pathOccupied(let path), .system(_, let path, _):
            return path
        }
    }

    public var description: String {
        switch self {
        case .notFound(let path):
            return "no such device \(path): check the cable/adapter, run `metergw ports` to list serial ports"
        case .permissionDenied(let path, let group):
            if let group, group != "root" {
                return "permission denied opening \(path) (owned by group \(group)): add the user to group "
                    + "\(group): sudo usermod -aG \(group) $USER, then log in again"
            }
            return "permission denied opening \(path): run as a user allowed to open it, or install the udev "
                + "rules (udev/) that give group dialout access"
        case .busy(let path, let holders):
            if holders.isEmpty {
                return "\(path) is busy: another program has it open; close that program and retry"
            }
            let names = holders.map(\.description).joined(separator: ", ")
            return "\(path) is busy: held by \(names); stop that program (or close the port) and retry"
        case .unsupportedSetting(let path, let requested, let applied):
            return "\(path) did not accept \(requested) (it kept \(applied)): "
                + "\(requested.differences(from: applied)); choose settings the device supports"
        case .unsupported(let feature, let path):
            return "\(feature) is not supported by \(path) (a pseudo-terminal or a driver without it); "
                + "use an adapter that supports it, or run without it"
        case .timeout(let operation, let path, let partial):
            let got = partial.isEmpty ? "nothing received" : "\(partial.count) byte(s) before the deadline"
            return "\(operation) on \(path) timed out (\(got)): check wiring, address and line settings"
        case .removed(let path):
            return "\(path) went away (unplugged or hung up): reconnect it and reopen the port"
        case .pathOccupied(let path):
            return "\(path) already exists (and is not a stale pseudo-terminal link); it was left alone: "
                + "remove it or choose another path"
        case .system(let operation, let path, let code):
            return "\(operation) on \(path) failed: \(Self.errnoText(code)) (errno \(code))"
        }
    }

    static func errnoText(_ code: Int32) -> String {
        guard let text = strerror(code) else {
            return "unknown error"
        }
        return String(cString: text)
    }
}
