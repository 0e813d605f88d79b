#if canImport(Glibc)
import Glibc
#endif

import CUdev

/// Lists the serial ports of this machine: USB-serial adapters (ttyUSB, ttyACM), UARTs (ttyS, ttyAMA, ...).
///
/// libudev enumerates the "tty" subsystem and gives udev's properties (ID_*, by-id links) where udev's database
/// exists. Every port is also read from /sys directly, which is all there is in containers (no /run/udev): the
/// driver from the `driver` link of the tty's device (or the nearest ancestor that has one, skipping the
/// serial-base bus that kernels since 6.5 insert), and the USB attributes (idVendor, idProduct, serial,
/// manufacturer, product) from the nearest ancestor USB device.
///
/// Never listed: virtual consoles (tty, tty0...tty63, console, ptmx), anything without a device behind it,
/// pseudo-terminals (/dev/pts/N have no /sys entry), and UART ports the kernel reserved but found no chip for
/// (a `type` attribute of 0, PORT_UNKNOWN: the legacy ttyS0-ttyS31 of serial8250; libserialport checks the same
/// with TIOCGSERIAL, which would need opening every port).
public struct SerialPortEnumerator: Sendable {
    /// Root of sysfs; tests point it at a fake tree. libudev is used only with the real "/sys".
    public var sysfsRoot: String
    /// Where device nodes and /dev/serial/by-id live.
    public var deviceRoot: String
    /// udev's database; its absence means no udev daemon runs here.
    public var udevDataDirectory: String

    public init(
        sysfsRoot: String = "/sys",
        deviceRoot: String = "/dev",
        udevDataDirectory: String = "/run/udev/data"
    ) {
        self.sysfsRoot = sysfsRoot
        self.deviceRoot = deviceRoot
        self.udevDataDirectory = udevDataDirectory
    }

    /// Lists the serial ports; throws only if the tty class of sysfs cannot be read at all.
    public func enumerate() throws(SerialError) -> SerialPortEnumeration {
        let udevDatabase = FileSystem.entries(of: self.udevDataDirectory) != nil
        var candidates: [String: UdevProperties] = [:]
        if self.sysfsRoot == "/sys", let fromUdev = Self.udevTTYDevices() {
            candidates = fromUdev
        } else {
            let classDirectory = "\(self.sysfsRoot)/class/tty"
            guard let names = FileSystem.entries(of: classDirectory) else {
                throw .system(operation: "opendir", path: classDirectory, errno: Glibc.errno)
            }
            for name in names {
                if let syspath = FileSystem.resolvedPath(of: "\(classDirectory)/\(name)") {
                    candidates[syspath] = UdevProperties()
                }
            }
        }
        let ports = candidates.compactMap { syspath, udev in self.port(at: syspath, udev: udev) }
        return SerialPortEnumeration(
            ports: ports.sorted { Self.naturalOrder($0.path, $1.path) },
            udevDatabaseAvailable: udevDatabase
        )
    }

    // MARK: Reading one tty from /sys

    private static let virtualNames: Set<String> = ["tty", "console", "ptmx"]

    private func port(at syspath: String, udev: UdevProperties) -> SerialPortInfo? {
        let name = FileSystem.baseName(of: syspath)
        if Self.virtualNames.contains(name) || Self.isVirtualConsole(name) {
            return nil
        }
        // Virtual terminals have no device; real ports have one (the UART, the USB interface or usb-serial port).
        guard let device = FileSystem.resolvedPath(of: "\(syspath)/device") else {
            return nil
        }
        if let type = FileSystem.text(at: "\(syspath)/type"), type.trimmingSpaces == "0" {
            return nil
        }
        let devName = Self.ueventValue("DEVNAME", in: FileSystem.text(at: "\(syspath)/uevent")) ?? name
        let devicePath = udev.devnode ?? "\(self.deviceRoot)/\(devName)"
        var info = SerialPortInfo(path: devicePath, name: name, sysfsPath: syspath)
        info.driver = self.driver(from: device) ?? udev.property("ID_USB_DRIVER")
        if let usb = self.usbDevice(from: device) {
            info.vendorID = FileSystem.text(at: "\(usb)/idVendor").flatMap { UInt16($0.trimmingSpaces, radix: 16) }
            info.productID = FileSystem.text(at: "\(usb)/idProduct").flatMap { UInt16($0.trimmingSpaces, radix: 16) }
            info.serialNumber = FileSystem.text(at: "\(usb)/serial")?.trimmingSpaces.nonEmpty
            info.manufacturer = FileSystem.text(at: "\(usb)/manufacturer")?.trimmingSpaces.nonEmpty
            info.product = FileSystem.text(at: "\(usb)/product")?.trimmingSpaces.nonEmpty
        }
        // udev's values fill what sysfs lacks (ID_MODEL can come from the hwdb when the device has no string).
        info.vendorID = info.vendorID ?? udev.property("ID_VENDOR_ID").flatMap { UInt16($0, radix: 16) }
        info.productID = info.productID ?? udev.property("ID_MODEL_ID").flatMap { UInt16($0, radix: 16) }
        info.serialNumber = info.serialNumber ?? udev.property("ID_SERIAL_SHORT")
        info.manufacturer = info.manufacturer ?? udev.property("ID_VENDOR").map(Self.udevSpaces)
        info.product = info.product ?? udev.property("ID_MODEL").map(Self.udevSpaces)
        info.byIDPath = udev.byIDLink ?? self.byIDLink(for: devName)
        return info
    }

    private static func isVirtualConsole(_ name: String) -> Bool {
        name.hasPrefix("tty") && name.count > 3 && name.dropFirst(3).allSatisfy(\.isASCIIDigit)
    }

    /// The directories from `path` up to (not including) <sysfs>/devices.
    private func ancestors(of path: String) -> [String] {
        let top = "\(FileSystem.resolvedPath(of: self.sysfsRoot) ?? self.sysfsRoot)/devices"
        var result: [String] = []
        var current = path
        while current.hasPrefix(top + "/") {
            result.append(current)
            current = FileSystem.parent(of: current)
        }
        return result
    }

    private func driver(from device: String) -> String? {
        for directory in self.ancestors(of: device) {
            guard let driver = FileSystem.linkTarget(of: "\(directory)/driver") else {
                continue
            }
            // Since Linux 6.5 a UART's tty hangs off serial-base "port"/"ctrl" devices; the chip driver is above.
            if let bus = FileSystem.linkTarget(of: "\(directory)/subsystem"),
                FileSystem.baseName(of: bus) == "serial-base"
            {
                continue
            }
            return FileSystem.baseName(of: driver)
        }
        return nil
    }

    private func usbDevice(from device: String) -> String? {
        self.ancestors(of: device).first { directory in
            FileSystem.text(at: "\(directory)/idVendor") != nil && FileSystem.text(at: "\(directory)/idProduct") != nil
        }
    }

    private func byIDLink(for devName: String) -> String? {
        let directory = "\(self.deviceRoot)/serial/by-id"
        let links = (FileSystem.entries(of: directory) ?? []).sorted()
        return links.first { link in
            FileSystem.linkTarget(of: "\(directory)/\(link)").map(FileSystem.baseName(of:)) == devName
        }.map { "\(directory)/\($0)" }
    }

    private static func ueventValue(_ key: String, in uevent: String?) -> String? {
        uevent?.split(separator: "\n").first { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
    }

    /// udev's ID_VENDOR/ID_MODEL replace spaces with underscores.
    private static func udevSpaces(_ value: String) -> String {
        value.replacingUnderscores
    }

    /// "ttyS2" < "ttyS10": digit runs compare by value.
    static func naturalOrder(_ a: String, _ b: String) -> Bool {
        var left = Substring(a)
        var right = Substring(b)
        while let l = left.first, let r = right.first {
            if l.isASCIIDigit && r.isASCIIDigit {
                let ln = left.prefix(while: \.isASCIIDigit)
                let rn = right.prefix(while: \.isASCIIDigit)
                let lv = ln.drop(while: { $0 == "0" })
                let rv = rn.drop(while: { $0 == "0" })
                if lv.count != rv.count {
                    return lv.count < rv.count
                }
                if lv != rv {
                    return lv < rv
                }
                left = left.dropFirst(ln.count)
                right = right.dropFirst(rn.count)
            } else {
                if l != r {
                    return l < r
                }
                left = left.dropFirst()
                right = right.dropFirst()
            }
        }
        return left.isEmpty && !right.isEmpty
    }

    // MARK: libudev

    /// What udev knows about one device (empty without udev's database).
    struct UdevProperties: Sendable {
        var devnode: String?
        var properties: [String: String] = [:]
        var byIDLink: String?

        func property(_ key: String) -> String? {
            self.properties[key].flatMap { $0.isEmpty ? nil : $0 }
        }
    }

    /// The tty devices libudev enumerates (by syspath), or nil if libudev cannot be used.
    private static func udevTTYDevices() -> [String: UdevProperties]? {
        guard let udev = udev_new() else {
            return nil
        }
        defer { udev_unref(udev) }
        guard let enumerate = udev_enumerate_new(udev) else {
            return nil
        }
        defer { udev_enumerate_unref(enumerate) }
        // Both return a negative errno on failure; without them there is nothing to enumerate, so fall back.
        guard udev_enumerate_add_match_subsystem(enumerate, "tty") >= 0,
            udev_enumerate_scan_devices(enumerate) >= 0
        else {
            return nil
        }
        var devices: [String: UdevProperties] = [:]
        var entry = udev_enumerate_get_list_entry(enumerate)
        while let current = entry {
            defer { entry = udev_list_entry_get_next(current) }
            guard let syspathPointer = udev_list_entry_get_name(current),
                let device = udev_device_new_from_syspath(udev, syspathPointer)
            else {
                continue
            }
            defer { udev_device_unref(device) }
            let syspath = String(cString: syspathPointer)
            var found = UdevProperties()
            found.devnode = udev_device_get_devnode(device).map { String(cString: $0) }
            var property = udev_device_get_properties_list_entry(device)
            while let current = property {
                if let key = udev_list_entry_get_name(current), let value = udev_list_entry_get_value(current) {
                    found.properties[String(cString: key)] = String(cString: value)
                }
                property = udev_list_entry_get_next(current)
            }
            var link = udev_device_get_devlinks_list_entry(device)
            while let current = link {
                if let name = udev_list_entry_get_name(current).map({ String(cString: $0) }),
                    name.hasPrefix("/dev/serial/by-id/")
                {
                    found.byIDLink = name
                    break
                }
                link = udev_list_entry_get_next(current)
            }
            devices[FileSystem.resolvedPath(of: syspath) ?? syspath] = found
        }
        return devices
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { self >= "0" && self <= "9" }
}

extension String {
    fileprivate var trimmingSpaces: String {
        var result = Substring(self)
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return String(result)
    }

    fileprivate var nonEmpty: String? { self.isEmpty ? nil : self }

    fileprivate var replacingUnderscores: String {
        String(self.map { $0 == "_" ? " " : $0 })
    }
}
