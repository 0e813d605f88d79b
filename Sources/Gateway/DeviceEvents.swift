import Foundation
import Synchronization

/// A device node appeared, went away or changed.
public struct DeviceEvent: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable {
        case added, removed, changed
    }

    public var action: Action
    /// The device node or link, when the source knows it.
    public var path: String?

    public init(_ action: Action, path: String?) {
        self.action = action
        self.path = path
    }
}

/// Where the gateway learns that adapters come and go: udev's monitor on a normal system, a watch on /dev where
/// udev does not run (containers), or a test's own events. The gateway only uses events as a hint to look at its
/// adapters now; a waiting bus also checks once a second, so a lost event costs at most that.
public protocol DeviceEventSource: Sendable {
    /// For the log: "udev monitor", "/dev watch".
    var name: String { get }
    /// Events until the consuming task is cancelled.
    func events() -> AsyncStream<DeviceEvent>
}

/// Events a caller sends by hand: tests, and embedders with their own device manager.
public final class ManualDeviceEvents: DeviceEventSource {
    public let name = "manual"
    private let continuations = Mutex<[Int: AsyncStream<DeviceEvent>.Continuation]>([:])
    private let counter = Atomic<Int>(0)

    public init() {}

    public func send(_ event: DeviceEvent) {
        for c in self.continuations.withLock({ Array($0.values) }) { c.yield(event) }
    }

    public func events() -> AsyncStream<DeviceEvent> {
        let id = self.counter.add(1, ordering: .relaxed).newValue
        let (stream, continuation) = AsyncStream.makeStream(of: DeviceEvent.self, bufferingPolicy: .bufferingNewest(64))
        self.continuations.withLock { $0[id] = continuation }
        continuation.onTermination = { [weak self] _ in
            _ = self?.continuations.withLock { $0.removeValue(forKey: id) }
        }
        return stream
    }
}

/// The sources for this machine: udev's monitor where udev runs (/run/udev/control exists), and always a watch on
/// the folders of the configured device paths (which also covers /dev where udev is absent, and links such as
/// the emulator's). `udevAbsent` is true when the fallback is all there is, for the log.
public enum DeviceEventSources {
    public static func forMachine(devicePaths: [String], udevControl: String = "/run/udev/control")
        -> (sources: [any DeviceEventSource], udevAbsent: Bool)
    {
        var folders: Set<String> = ["/dev"]
        for path in devicePaths {
            folders.insert((path as NSString).deletingLastPathComponent)
        }
        for extra in ["/dev/serial/by-id", "/dev/serial/by-path", "/dev/metergw"] { folders.insert(extra) }
        var sources: [any DeviceEventSource] = [DirectoryWatcher(folders: folders.sorted())]
        let udev = FileManager.default.fileExists(atPath: udevControl)
        if udev, let monitor = UdevMonitor() { sources.insert(monitor, at: 0) }
        return (sources, !udev)
    }
}
