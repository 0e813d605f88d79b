import ArgumentParser
import MeterProtocol
import SerialPort

/// `metergw ports`: the serial ports of this machine, as a technician needs to tell adapters apart.
struct Ports: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the serial ports of this machine.",
        discussion: """
            Shows each port's device path, /dev/serial/by-id name, driver, USB vendor:product, serial number, \
            manufacturer and product. Uses udev's database when there is one, and reads /sys directly when there \
            is not (containers, early boot). Pseudo-terminals and virtual consoles are never listed.
            """)

    @Flag(help: "Print one JSON object: {udevDatabase, ports: [...]}.")
    var json = false

    func run() throws {
        let enumeration: SerialPortEnumeration
        do {
            enumeration = try SerialPortEnumerator().enumerate()
        } catch {
            throw CLIError(serial: error)
        }
        if self.json {
            Output.line(Self.json(enumeration).rendered())
            return
        }
        if !enumeration.udevDatabaseAvailable {
            Output.error("metergw: udev database absent (/run/udev): read /sys directly, so by-id names are missing")
        }
        guard !enumeration.ports.isEmpty else {
            Output.line("no serial ports found: plug in the USB-serial adapter, check `dmesg | tail` for its driver")
            return
        }
        for port in enumeration.ports {
            var details: [String] = []
            if let driver = port.driver { details.append("driver \(driver)") }
            if let usb = port.usbID { details.append("usb \(usb)") }
            let names = [port.manufacturer, port.product].compactMap { $0 }
            if !names.isEmpty { details.append(names.joined(separator: " ")) }
            if let serial = port.serialNumber { details.append("serial \(serial)") }
            Output.line("\(port.path.padding(16)) \(details.joined(separator: ", "))")
            if let byID = port.byIDPath { Output.line("                 \(byID)") }
        }
    }

    static func json(_ enumeration: SerialPortEnumeration) -> JSONValue {
        func optional(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
        let ports = enumeration.ports.map { port -> JSONValue in
            .object([
                ("path", .string(port.path)),
                ("name", .string(port.name)),
                ("byId", optional(port.byIDPath)),
                ("driver", optional(port.driver)),
                ("usbId", optional(port.usbID)),
                ("serialNumber", optional(port.serialNumber)),
                ("manufacturer", optional(port.manufacturer)),
                ("product", optional(port.product)),
                ("sysfsPath", .string(port.sysfsPath)),
            ])
        }
        return .object([("udevDatabase", .bool(enumeration.udevDatabaseAvailable)), ("ports", .array(ports))])
    }
}
