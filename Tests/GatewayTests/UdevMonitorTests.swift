import Foundation
import Gateway
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The libudev monitor, fed by this test acting as udevd: messages in udev's own netlink format (systemd 252,
/// `device_monitor_send_device`: the "libudev" header, the subsystem's MurmurHash2 for the kernel-side filter, the
/// properties) multicast to the "udev" group, as udevd sends them after its rules ran.
///
/// Runs only where no udevd listens (containers, CI): on a workstation, a made-up "add" would reach every real
/// udev listener. There, the monitor is exercised by plugging an adapter (docs/OPERATIONS.md).
@Suite(.enabled(if: !FileManager.default.fileExists(atPath: "/run/udev/control"),
                "udevd runs here: a forged event would reach its real listeners"))
struct UdevMonitorTests {
    @Test func ttyEventsArriveAndOtherSubsystemsAreFilteredOut() async throws {
        let monitor = try #require(UdevMonitor(), "libudev cannot create a netlink monitor here")
        let stream = monitor.events()
        let sender = try UdevSender()
        // Another subsystem first: the monitor's filter must drop it, so the first event seen is the tty one.
        try sender.send(action: "add", subsystem: "usb", devpath: "/devices/pci0000:00/usb1/1-1", devname: nil,
                        seqnum: 1)
        try sender.send(action: "add", subsystem: "tty", devpath: "/devices/virtual/tty/ttyMETERGW0",
                        devname: "/dev/ttyMETERGW0", seqnum: 2)
        try sender.send(action: "remove", subsystem: "tty", devpath: "/devices/virtual/tty/ttyMETERGW0",
                        devname: "/dev/ttyMETERGW0", seqnum: 3)
        let events = try await firstEvents(2, of: stream, guardSeconds: 30)
        #expect(events == [DeviceEvent(.added, path: "/dev/ttyMETERGW0"), DeviceEvent(.removed, path: "/dev/ttyMETERGW0")])
    }

    /// The first `count` events, or a failure after the guard.
    func firstEvents(_ count: Int, of stream: AsyncStream<DeviceEvent>, guardSeconds: Int) async throws
        -> [DeviceEvent]
    {
        try await withThrowingTaskGroup(of: [DeviceEvent]?.self) { group in
            group.addTask {
                var seen: [DeviceEvent] = []
                for await event in stream {
                    seen.append(event)
                    if seen.count == count { break }
                }
                return seen
            }
            group.addTask {
                try await Task.sleep(for: .seconds(guardSeconds))
                return nil
            }
            defer { group.cancelAll() }
            let first = try await group.next() ?? nil
            return try #require(first, "no udev event within \(guardSeconds) s")
        }
    }
}

/// Sends udev-format messages to the "udev" netlink group, as udevd does.
final class UdevSender {
    let fd: Int32
    static let udevGroup: UInt32 = 2

    init() throws {
        self.fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 15)  // NETLINK_KOBJECT_UEVENT
        guard self.fd >= 0 else { throw Failure("netlink socket: \(String(cString: strerror(errno)))") }
    }

    deinit { close(self.fd) }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { self.description = d }
    }

    func send(action: String, subsystem: String, devpath: String, devname: String?, seqnum: Int) throws {
        var properties = "ACTION=\(action)\0DEVPATH=\(devpath)\0SUBSYSTEM=\(subsystem)\0SEQNUM=\(seqnum)\0"
        if let devname { properties += "DEVNAME=\(devname)\0" }
        let body = Array(properties.utf8)
        // struct monitor_netlink_header: "libudev\0", magic (network order), header size, properties offset and
        // length (host order), subsystem hash (network order), devtype hash, tag bloom high and low.
        var message = Array("libudev\0".utf8)
        func append(_ value: UInt32) { withUnsafeBytes(of: value) { message.append(contentsOf: $0) } }
        let headerSize: UInt32 = 40
        append(UInt32(0xFEED_CAFE).bigEndian)
        append(headerSize)
        append(headerSize)
        append(UInt32(body.count))
        append(Self.murmurHash2(Array(subsystem.utf8)).bigEndian)
        append(0)
        append(0)
        append(0)
        message += body
        // struct sockaddr_nl (linux/netlink.h, not in Glibc's module): family, padding, port id 0 (the kernel),
        // multicast groups.
        var address = [UInt8](repeating: 0, count: 12)
        withUnsafeBytes(of: UInt16(AF_NETLINK)) { address.replaceSubrange(0..<2, with: $0) }
        withUnsafeBytes(of: Self.udevGroup) { address.replaceSubrange(8..<12, with: $0) }
        let sent = address.withUnsafeBytes { raw in
            sendto(self.fd, message, message.count, 0, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                   socklen_t(raw.count))
        }
        guard sent == message.count else {
            throw Failure("sending to the udev netlink group: \(String(cString: strerror(errno))) "
                          + "(needs root or CAP_NET_ADMIN in this network namespace)")
        }
    }

    /// systemd's `string_hash32`: MurmurHash2 with seed 0, words read little-endian.
    static func murmurHash2(_ key: [UInt8]) -> UInt32 {
        let m: UInt32 = 0x5bd1_e995
        var h = UInt32(truncatingIfNeeded: key.count)
        var i = 0
        while key.count - i >= 4 {
            var k = UInt32(key[i]) | UInt32(key[i + 1]) << 8 | UInt32(key[i + 2]) << 16 | UInt32(key[i + 3]) << 24
            k &*= m
            k ^= k >> 24
            k &*= m
            h &*= m
            h ^= k
            i += 4
        }
        let rest = key.count - i
        if rest >= 3 { h ^= UInt32(key[i + 2]) << 16 }
        if rest >= 2 { h ^= UInt32(key[i + 1]) << 8 }
        if rest >= 1 {
            h ^= UInt32(key[i])
            h &*= m
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return h
    }
}
