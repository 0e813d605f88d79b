// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "metergw",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "metergw", targets: ["metergw"]),
        .executable(name: "metergw-bench", targets: ["metergw-bench"]),
        .library(name: "MeterProtocol", targets: ["MeterProtocol"]),
        .library(name: "SerialPort", targets: ["SerialPort"]),
        .library(name: "MeterBus", targets: ["MeterBus"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // MARK: C glue (kernel headers only, no logic)
        .target(name: "CSerialShim"),
        .systemLibrary(
            name: "CUdev",
            pkgConfig: "libudev",
            providers: [.apt(["libudev-dev"])]
        ),

        // MARK: Wire (pure) and I/O
        .target(name: "MeterProtocol"),
        .target(name: "SerialPort", dependencies: ["CSerialShim", "CUdev"]),

        // MARK: Bus master
        .target(name: "MeterBus", dependencies: ["MeterProtocol", "SerialPort"]),

        // MARK: Emulation
        .target(name: "MeterEmulator", dependencies: ["MeterProtocol", "SerialPort"]),
        // A simplified meter for the bus master's tests and benchmark; not the prepaid meter model.
        .target(name: "MeterEmulatorTesting", dependencies: ["MeterEmulator", "MeterProtocol"]),

        // MARK: Executables and the commands they wire
        .target(
            name: "MetergwCLI",
            dependencies: [
                "MeterProtocol",
                "SerialPort",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "metergw", dependencies: ["MetergwCLI"]),
        .executableTarget(
            name: "metergw-bench",
            dependencies: ["MeterProtocol", "MeterBus", "MeterEmulator", "MeterEmulatorTesting", "SerialPort"]
        ),

        // MARK: Tests
        .testTarget(name: "MeterProtocolTests", dependencies: ["MeterProtocol"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SerialPortTests", dependencies: ["SerialPort"]),
        .testTarget(name: "MeterEmulatorTests", dependencies: ["MeterEmulator", "MeterProtocol", "SerialPort"]),
        .testTarget(
            name: "MeterBusTests",
            dependencies: ["MeterBus", "MeterEmulator", "MeterEmulatorTesting", "MeterProtocol", "SerialPort"]
        ),
        .testTarget(name: "MetergwCLITests", dependencies: ["MetergwCLI", "MeterProtocol", "SerialPort"]),
    ]
)
