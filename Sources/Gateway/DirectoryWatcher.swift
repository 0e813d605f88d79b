import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Device events from inotify on a few folders (/dev, /dev/serial/by-id, the folders of configured links): the
/// fallback where udev does not run, and the way links outside /dev (an emulator's pseudo-terminal) are noticed.
/// A folder that does not exist yet is watched from its parent's next event on; the pollers' 1 s recheck covers
/// the rest.
public struct DirectoryWatcher: DeviceEventSource {
    public let folders: [String]
    public var name: String { "directory watch (\(self.folders.joined(separator: ", ")))" }

    public init(folders: [String]) { self.folders = folders }

    public func events() -> AsyncStream<DeviceEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: DeviceEvent.self, bufferingPolicy: .bufferingNewest(64))
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard fd >= 0 else {
            continuation.finish()
            return stream
        }
        let stop = StopFlag()
        let folders = self.folders
        let thread = Thread {
            Self.watch(fd: fd, folders: folders, stop: stop, continuation: continuation)
            close(fd)
            continuation.finish()
        }
        thread.name = "metergw-dirwatch"
        continuation.onTermination = { _ in stop.set() }
        thread.start()
        return stream
    }

    private static let mask = UInt32(IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM | IN_ATTRIB | IN_DELETE_SELF)

    private static func watch(fd: Int32, folders: [String], stop: StopFlag,
                              continuation: AsyncStream<DeviceEvent>.Continuation) {
        var watched: [Int32: String] = [:]
        func addWatches() {
            for folder in folders where !watched.values.contains(folder) {
                let wd = inotify_add_watch(fd, folder, Self.mask)
                if wd >= 0 { watched[wd] = folder }
            }
        }
        addWatches()
        var buffer = [UInt8](repeating: 0, count: 8192)
        while !stop.isSet {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            // Wakes four times a second to notice that the consumer went away.
            guard poll(&pfd, 1, 250) > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { continue }
            var offset = 0
            var any = false
            buffer.withUnsafeBytes { raw in
                let headerSize = MemoryLayout<inotify_event>.size
                while offset + headerSize <= n {
                    let wd = raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)
                    let eventMask = raw.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
                    let length = Int(raw.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
                    let nameBytes = raw[(offset + headerSize)..<min(n, offset + headerSize + length)]
                    let name = String(decoding: nameBytes.prefix { $0 != 0 }, as: UTF8.self)
                    offset += headerSize + length
                    if eventMask & UInt32(IN_IGNORED) != 0 || eventMask & UInt32(IN_DELETE_SELF) != 0 {
                        watched[wd] = nil
                        continue
                    }
                    guard let folder = watched[wd] else { continue }
                    let action: DeviceEvent.Action =
                        eventMask & UInt32(IN_DELETE | IN_MOVED_FROM) != 0 ? .removed
                        : eventMask & UInt32(IN_ATTRIB) != 0 ? .changed : .added
                    continuation.yield(DeviceEvent(action, path: name.isEmpty ? folder : folder + "/" + name))
                    any = true
                }
            }
            // A folder created meanwhile (/dev/serial/by-id appears with the first USB adapter) is watched now.
            if any { addWatches() }
        }
    }
}

/// A flag one thread sets and another polls.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    var isSet: Bool { self.value.load(ordering: .acquiring) }
    func set() { self.value.store(true, ordering: .releasing) }
}
