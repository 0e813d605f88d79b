// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "metergw",
    platforms: [.macOS(.v15)],  // Duration.attoseconds; the product itself runs on Linux (termios, udev)
    products: [
        .executable(name: "metergw", targets: ["metergw"]),
        .executable(name: "metergw-bench", targets: ["metergw-bench"]),
        .library(name: "MeterProtocol", targets: ["MeterProtocol"]),
        .library(name: "SerialPort", targets: ["SerialPort"]),
        .executable(name: "meter-emulator", targets: ["meter-emulator"]),
        .library(name: "Prepaid", targets: ["Prepaid"]),
        .library(name: "MeterBus", targets: ["MeterBus"]),
        .library(name: "BillingStore", targets: ["BillingStore"]),
        .library(name: "CentralStore", targets: ["CentralStore"]),
        .library(name: "StoreSync", targets: ["StoreSync"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
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
        .target(name: "ModbusProtocol"),
        .target(name: "ModbusMaps", dependencies: ["ModbusProtocol"], resources: [.copy("Maps")]),
        .target(name: "DLT645Protocol"),
        .target(name: "SerialPort", dependencies: ["CSerialShim", "CUdev"]),

        // MARK: Domain (pure) and the key file
        .target(name: "Prepaid", dependencies: ["MeterProtocol", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "KeyStore", dependencies: ["Prepaid", "MeterProtocol"]),

        // MARK: Bus master
        .target(
            name: "MeterBus",
            dependencies: ["MeterProtocol", "ModbusProtocol", "DLT645Protocol", "SerialPort"]),

        // MARK: Store (SQLite via GRDB; knows the domain, not the wire's I/O)
        .target(
            name: "BillingStore",
            dependencies: ["Prepaid", "MeterProtocol", .product(name: "GRDB", package: "GRDB.swift")]),

        // The central store of a billing centre: PostgreSQL through postgres-nio.
        .target(
            name: "CentralStore",
            dependencies: [
                "Prepaid", "MeterProtocol", "BillingStore", .product(name: "PostgresNIO", package: "postgres-nio"),
            ]),
        // Store-and-forward from a gateway's SQLite store to the central one.
        .target(
            name: "StoreSync",
            dependencies: [
                "BillingStore", "CentralStore", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]),

        // MARK: Service (no NIO here: the HTTP endpoint lives in GatewayHTTP)
        .target(
            name: "Gateway",
            dependencies: [
                "MeterBus", "MeterProtocol", "SerialPort", "CUdev", "Prepaid", "KeyStore", "BillingStore",
                "ModbusProtocol", "ModbusMaps", "DLT645Protocol",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        .target(
            name: "GatewayHTTP",
            dependencies: [
                "Gateway",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: Emulation
        .target(
            name: "MeterEmulator",
            dependencies: ["MeterProtocol", "ModbusProtocol", "DLT645Protocol", "SerialPort", "Prepaid"]),
        // A simplified meter for the bus master's tests and benchmark; not the prepaid meter model.
        .target(name: "MeterEmulatorTesting", dependencies: ["MeterEmulator", "MeterProtocol"]),
        .executableTarget(
            name: "meter-emulator",
            dependencies: [
                "MeterEmulator", "MeterProtocol", "ModbusProtocol", "ModbusMaps", "DLT645Protocol", "SerialPort",
                "Prepaid", "KeyStore", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Executables and the commands they wire
        .target(
            name: "MetergwCLI",
            dependencies: [
                "MeterProtocol",
                "ModbusProtocol",
                "ModbusMaps",
                "DLT645Protocol",
                "SerialPort",
                "MeterBus",
                "Prepaid",
                "KeyStore",
                "BillingStore",
                "CentralStore",
                "StoreSync",
                "Gateway",
                "GatewayHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(name: "metergw", dependencies: ["MetergwCLI"]),
        .executableTarget(
            name: "metergw-bench",
            dependencies: [
                "MeterProtocol", "BillingStore", "Prepaid", "MeterBus", "MeterEmulator", "MeterEmulatorTesting",
                "SerialPort", "Gateway", "KeyStore", "CentralStore", "MetergwTestSupport",
                "ModbusProtocol",
            ]
        ),

        // MARK: Tests
        // Runs meter-emulator as a separate process for tests in several targets; not shipped.
        .target(
            name: "MetergwTestSupport", dependencies: ["MeterProtocol", "SerialPort", "Prepaid", "KeyStore"]),
        .testTarget(
            name: "MeterProtocolTests", dependencies: ["MeterProtocol", "Prepaid", "MetergwTestSupport"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "SerialPortTests", dependencies: ["SerialPort", "MetergwTestSupport"]),
        .testTarget(
            name: "ModbusProtocolTests", dependencies: ["ModbusProtocol", "ModbusMaps"], exclude: ["Fixtures"]),
        .testTarget(name: "DLT645ProtocolTests", dependencies: ["DLT645Protocol"], exclude: ["Fixtures"]),
        .testTarget(
            name: "PrepaidTests", dependencies: ["Prepaid", "KeyStore", "MeterProtocol", "MetergwTestSupport"],
            exclude: ["Fixtures"]),
        .testTarget(
            name: "MeterEmulatorTests",
            dependencies: [
                "MeterEmulator", "MeterProtocol", "SerialPort", "Prepaid", "KeyStore", "MetergwTestSupport",
            ]),
        .testTarget(
            name: "MeterBusTests",
            dependencies: [
                "MeterBus", "MeterEmulator", "MeterEmulatorTesting", "MeterProtocol", "SerialPort",
                "MetergwTestSupport", "ModbusProtocol", "ModbusMaps", "DLT645Protocol",
            ]
        ),
        // Against independent implementations (pymodbus, minimalmodbus, dlt645 from PyPI, in .venv by tools/setup).
        .testTarget(
            name: "InteropTests",
            dependencies: [
                "MeterBus", "MeterEmulator", "ModbusProtocol", "ModbusMaps", "DLT645Protocol", "SerialPort",
                "MetergwTestSupport",
            ]),
        .testTarget(
            name: "BillingStoreTests", dependencies: ["BillingStore", "Prepaid", "MeterProtocol", "MetergwTestSupport"]),
        .testTarget(
            name: "CentralStoreTests",
            dependencies: ["CentralStore", "StoreSync", "BillingStore", "Prepaid", "MetergwTestSupport"]),
        // Lints udev/ and tools/metergw.service and runs tools/install --dry-run; reads them from the repository.
        .testTarget(name: "InstallTests"),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "BillingStore", "MeterBus", "MeterProtocol", "SerialPort", "Prepaid", "KeyStore",
                "MetergwTestSupport", "CentralStore", "StoreSync",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "MetergwCLITests",
            dependencies: [
                "MetergwCLI", "MeterProtocol", "SerialPort", "Prepaid", "BillingStore", "CentralStore", "MeterEmulator",
                "MetergwTestSupport",
            ],
            exclude: ["Fixtures"]),
    ]
)
