/// A serial port of this machine, as ``SerialPortEnumerator`` found it.
public struct SerialPortInfo: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// Device node, e.g. /dev/ttyUSB0.
    public var path: String
    /// Kernel name, e.g. ttyUSB0.
    public var name: String
    /// The stable /dev/serial/by-id name udev made for it, if any (absent where there is no udev).
    public var byIDPath: String?
    /// Kernel driver, e.g. ftdi_sio, cp210x, ch341, pl2303, cdc_acm, serial8250.
    public var driver: String?
    /// USB vendor id (idVendor), for USB adapters.
    public var vendorID: UInt16?
    /// USB product id (idProduct), for USB adapters.
    public var productID: UInt16?
    /// USB serial number string, if the adapter has one.
    public var serialNumber: String?
    /// USB manufacturer string.
    public var manufacturer: String?
    /// USB product string.
    public var product: String?
    /// The tty's directory under /sys/devices (symbolic links resolved).
    public var sysfsPath: String

    public init(
        path: String,
        name: String,
        byIDPath: String? = nil,
        driver: String? = nil,
        vendorID: UInt16? = nil,
        productID: UInt16? = nil,
        serialNumber: String? = nil,
        manufacturer: String? = nil,
        product: String? = nil,
        sysfsPath: String
    ) {
        self.path = path
        self.name = name
        self.byIDPath = byIDPath
        self.driver = driver
        self.vendorID = vendorID
        self.productID = productID
        self.serialNumber = serialNumber
        self.manufacturer = manufacturer
        self.product = product
        self.sysfsPath = sysfsPath
    }

    /// "VVVV:PPPP" in lowercase hex, as lsusb prints it, for USB adapters.
    public var usbID: String? {
        guard let vendorID, let productID else {
            return nil
        }
        return "\(Self.hex4(vendorID)):\(Self.hex4(productID))"
    }

    /// One line: path, driver, USB id, manufacturer/product, serial number.
    public var description: String {
        var parts = [self.path]
        if let driver { parts.append(driver) }
        if let usbID { parts.append(usbID) }
        let label = [self.manufacturer, self.product].compactMap { $0 }.joined(separator: " ")
        if !label.isEmpty { parts.append(label) }
        if let serialNumber { parts.append("serial \(serialNumber)") }
        return parts.joined(separator: "  ")
    }

    private static func hex4(_ value: UInt16) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 4 - digits.count) + digits
    }
}

/// The result of an enumeration: the ports, and whether udev's database was there to describe them.
public struct SerialPortEnumeration: Equatable, Sendable {
    /// The serial ports, sorted by path in natural order (ttyS2 before ttyS10).
    public var ports: [SerialPortInfo]
    /// False in containers and other systems without a udev daemon (/run/udev/data absent): by-id names are
    /// then missing and the attributes were read from /sys directly.
    public var udevDatabaseAvailable: Bool

    public init(ports: [SerialPortInfo], udevDatabaseAvailable: Bool) {
        self.ports = ports
        self.udevDatabaseAvailable = udevDatabaseAvailable
    }
}
