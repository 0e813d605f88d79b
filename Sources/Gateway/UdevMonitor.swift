import CUdev
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Device events from udev's monitor (the "udev" netlink group: after udev's rules ran, so our
/// /dev/metergw/<serial> links exist when the event arrives), for the tty subsystem.
public struct UdevMonitor: DeviceEventSource {
    public var name: String { "udev monitor" }

    /// Nil when libudev cannot create a monitor here.
    public init?() {
        guard let udev = udev_new() else { return nil }
        defer { udev_unref(udev) }
        guard let monitor = udev_monitor_new_from_netlink(udev, "udev") else { return nil }
        udev_monitor_unref(monitor)
    }

    public func events() -> AsyncStream<DeviceEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: DeviceEvent.self, bufferingPolicy: .bufferingNewest(64))
        guard let udev = udev_new(), let monitor = udev_monitor_new_from_netlink(udev, "udev") else {
            continuation.finish()
            return stream
        }
        udev_monitor_filter_add_match_subsystem_devtype(monitor, "tty", nil)
        guard udev_monitor_enable_receiving(monitor) == 0 else {
            udev_monitor_unref(monitor)
            udev_unref(udev)
            continuation.finish()
            return stream
        }
        let handles = UdevHandles(udev: udev, monitor: monitor)
        let stop = StopFlag()
        continuation.onTermination = { _ in stop.set() }
        let thread = Thread {
            let fd = udev_monitor_get_fd(handles.monitor)
            while !stop.isSet {
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 250) > 0, let device = udev_monitor_receive_device(handles.monitor) else {
                    continue
                }
                let action = udev_device_get_action(device).map { String(cString: $0) } ?? "change"
                let node = udev_device_get_devnode(device).map { String(cString: $0) }
                udev_device_unref(device)
                let kind: DeviceEvent.Action = action == "add" ? .added : action == "remove" ? .removed : .changed
                continuation.yield(DeviceEvent(kind, path: node))
            }
            udev_monitor_unref(handles.monitor)
            udev_unref(handles.udev)
            continuation.finish()
        }
        thread.name = "metergw-udev"
        thread.start()
        return stream
    }
}

/// libudev's handles, used by the monitor's own thread only once handed over.
private struct UdevHandles: @unchecked Sendable {
    let udev: OpaquePointer
    let monitor: OpaquePointer
}
