import Foundation
import Testing

@testable import SerialPort

/// Enumeration against a fake sysfs tree laid out as the kernel does (relative symbolic links included), and one
/// real call on this machine.
@Suite("Serial port enumeration")
struct SerialPortEnumeratorTests {
    /// Builds files and relative links under a temporary root.
    struct FakeTree {
        let root: String

        func file(_ path: String, _ contents: String) throws {
            let url = URL(fileURLWithPath: "\(self.root)/\(path)")
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(contents.utf8).write(to: url)
        }

        func directory(_ path: String) throws {
            try FileManager.default.createDirectory(atPath: "\(self.root)/\(path)", withIntermediateDirectories: true)
        }

        /// A relative link, as sysfs makes them (`../../devices/...`).
        func link(_ path: String, to target: String) throws {
            let url = URL(fileURLWithPath: "\(self.root)/\(path)")
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: url.path, withDestinationPath: target)
        }

        /// A tty class entry with its device directory, uevent and `device` link.
        func tty(_ name: String, under parent: String, extra: [String: String] = [:]) throws {
            let directory = "sys/\(parent)/tty/\(name)"
            try self.file("\(directory)/uevent", "MAJOR=4\nMINOR=64\nDEVNAME=\(name)\n")
            try self.file("\(directory)/dev", "4:64\n")
            for (attribute, value) in extra {
                try self.file("\(directory)/\(attribute)", value)
            }
            let depth = parent.split(separator: "/").count
            try self.link("\(directory)/device", to: "../..")
            try self.link("\(directory)/subsystem", to: String(repeating: "../", count: depth + 2) + "class/tty")
            try self.link("sys/class/tty/\(name)", to: "../../\(parent)/tty/\(name)")
        }

        /// A virtual tty without a device (tty0, console, ptmx).
        func virtualTTY(_ name: String) throws {
            try self.file("sys/devices/virtual/tty/\(name)/uevent", "DEVNAME=\(name)\n")
            try self.link("sys/class/tty/\(name)", to: "../../devices/virtual/tty/\(name)")
        }

        func driver(_ devicePath: String, bus: String, name: String) throws {
            let depth = devicePath.split(separator: "/").count
            let up = String(repeating: "../", count: depth)
            try self.directory("sys/bus/\(bus)/drivers/\(name)")
            try self.link("sys/\(devicePath)/driver", to: "\(up)bus/\(bus)/drivers/\(name)")
            try self.link("sys/\(devicePath)/subsystem", to: "\(up)bus/\(bus)")
        }

        /// An FTDI FT232R on USB bus 1 port 1: USB device, interface 1-1:1.0, usb-serial port ttyUSB0.
        func ftdiAdapter() throws {
            let usb = "devices/pci0000:00/0000:00:14.0/usb1/1-1"
            try self.file("sys/\(usb)/idVendor", "0403\n")
            try self.file("sys/\(usb)/idProduct", "6001\n")
            try self.file("sys/\(usb)/serial", "A50285BI\n")
            try self.file("sys/\(usb)/manufacturer", "FTDI\n")
            try self.file("sys/\(usb)/product", "FT232R USB UART\n")
            try self.driver(usb, bus: "usb", name: "usb")
            try self.driver("\(usb)/1-1:1.0", bus: "usb", name: "ftdi_sio")
            try self.driver("\(usb)/1-1:1.0/ttyUSB0", bus: "usb-serial", name: "ftdi_sio")
            try self.tty("ttyUSB0", under: "\(usb)/1-1:1.0/ttyUSB0")
        }

        /// A legacy 8250 port the kernel reserved with no UART behind it (type 0, PORT_UNKNOWN).
        func legacyPlaceholderUART(_ name: String) throws {
            try self.driver("devices/platform/serial8250", bus: "platform", name: "serial8250")
            try self.tty(name, under: "devices/platform/serial8250", extra: ["type": "0\n"])
        }

        /// A real 16550A (type 4) behind the serial-base port/ctrl devices of Linux 6.5+.
        func uartBehindSerialBase(_ name: String) throws {
            let chip = "devices/pnp0/00:\(name.suffix(2))"
            try self.driver(chip, bus: "pnp", name: "serial")
            let port = "\(chip)/ctrl:0/port:0.0"
            try self.driver("\(chip)/ctrl:0", bus: "serial-base", name: "ctrl")
            try self.driver(port, bus: "serial-base", name: "port")
            try self.tty(name, under: port, extra: ["type": "4\n"])
        }
    }

    static func withFakeTree(_ body: (FakeTree, SerialPortEnumerator) throws -> Void) throws {
        let directory = try TemporaryDirectory()
        defer { directory.cleanup() }
        let tree = FakeTree(root: directory.path)
        try tree.directory("sys/class/tty")
        try tree.directory("dev")
        let enumerator = SerialPortEnumerator(
            sysfsRoot: "\(directory.path)/sys",
            deviceRoot: "\(directory.path)/dev",
            udevDataDirectory: "\(directory.path)/run/udev/data"
        )
        try body(tree, enumerator)
    }

    @Test func listsExactlyTheUSBAdapterWithItsAttributes() throws {
        try Self.withFakeTree { tree, enumerator in
            try tree.ftdiAdapter()
            try tree.legacyPlaceholderUART("ttyS0")
            for name in ["tty", "tty0", "tty1", "tty63", "console", "ptmx"] {
                try tree.virtualTTY(name)
            }
            let result = try enumerator.enumerate()
            #expect(!result.udevDatabaseAvailable)
            #expect(result.ports.count == 1)
            let port = try #require(result.ports.first)
            #expect(port.path == "\(tree.root)/dev/ttyUSB0")
            #expect(port.name == "ttyUSB0")
            #expect(port.driver == "ftdi_sio")
            #expect(port.vendorID == 0x0403)
            #expect(port.productID == 0x6001)
            #expect(port.usbID == "0403:6001")
            #expect(port.serialNumber == "A50285BI")
            #expect(port.manufacturer == "FTDI")
            #expect(port.product == "FT232R USB UART")
            #expect(port.byIDPath == nil)
            #expect(port.sysfsPath.hasSuffix("/1-1:1.0/ttyUSB0/tty/ttyUSB0"))
            #expect(port.description.contains("ftdi_sio  0403:6001  FTDI FT232R USB UART  serial A50285BI"))
        }
    }

    @Test func findsTheByIDLinkAndSkipsSerialBaseDrivers() throws {
        try Self.withFakeTree { tree, enumerator in
            try tree.ftdiAdapter()
            try tree.uartBehindSerialBase("ttyS10")
            try tree.uartBehindSerialBase("ttyS2")
            try tree.link("dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0", to: "../../ttyUSB0")
            try tree.directory("run/udev/data")
            let result = try enumerator.enumerate()
            #expect(result.udevDatabaseAvailable)
            #expect(result.ports.map(\.name) == ["ttyS2", "ttyS10", "ttyUSB0"])
            #expect(result.ports[0].driver == "serial")
            #expect(result.ports[0].vendorID == nil)
            #expect(result.ports[2].byIDPath
                == "\(tree.root)/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")
        }
    }

    @Test func missingSysfsIsAnError() {
        let enumerator = SerialPortEnumerator(sysfsRoot: "/nonexistent-sysfs-root")
        #expect(throws: SerialError.self) { try enumerator.enumerate() }
    }

    @Test func naturalOrder() {
        let sorted = ["/dev/ttyUSB10", "/dev/ttyS10", "/dev/ttyUSB2", "/dev/ttyS2", "/dev/ttyACM0"]
            .sorted(by: SerialPortEnumerator.naturalOrder)
        #expect(sorted == ["/dev/ttyACM0", "/dev/ttyS2", "/dev/ttyS10", "/dev/ttyUSB2", "/dev/ttyUSB10"])
    }

    @Test func realEnumerationListsNoPseudoTerminal() throws {
        let pair = try PseudoTerminalPair()
        defer { try? pair.close() }
        let port = try SerialPort.open(pair.subordinatePath)
        defer { try? port.close() }
        let result = try SerialPortEnumerator().enumerate()
        #expect(!result.ports.contains { $0.path.hasPrefix("/dev/pts/") || $0.path == pair.subordinatePath })
        #expect(!result.ports.contains { ["tty", "console", "ptmx", "tty0", "tty1"].contains($0.name) })
        #expect(result.ports.allSatisfy { $0.path.hasPrefix("/dev/") })
        #expect(result.udevDatabaseAvailable == FileManager.default.fileExists(atPath: "/run/udev/data"))
    }
}
