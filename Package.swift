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
        .executable(name: "meter-emulator", targets: ["meter-emulator"]),
        .library(name: "Prepaid", targets: ["Prepaid"]),
        .library(name: "BillingStore", targets: ["BillingStore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
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

        // MARK: Domain (pure) and the key file
        .target(name: "Prepaid", dependencies: ["MeterProtocol", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "KeyStore", dependencies: ["Prepaid", "MeterProtocol"]),

        // MARK: Store (SQLite via GRDB; knows the domain, not the wire's I/O)
        .target(
            name: "BillingStore",
            dependencies: ["Prepaid", "MeterProtocol", .product(name: "GRDB", package: "GRDB.swift")]),

        // MARK: Emulation
        .target(name: "MeterEmulator", dependencies: ["MeterProtocol", "SerialPort", "Prepaid"]),
        .executableTarget(
            name: "meter-emulator",
            dependencies: [
                "MeterEmulator", "MeterProtocol", "SerialPort", "Prepaid", "KeyStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Executables and the commands they wire
        .target(
            name: "MetergwCLI",
            dependencies: [
                "MeterProtocol",
                "SerialPort",
                "Prepaid",
                "KeyStore",
                "BillingStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "metergw", dependencies: ["MetergwCLI"]),
        .executableTarget(name: "metergw-bench", dependencies: ["MeterProtocol", "BillingStore", "Prepaid"]),

        // MARK: Tests
        .testTarget(
            name: "MeterProtocolTests", dependencies: ["MeterProtocol", "Prepaid"], resources: [.copy("Fixtures")]),
        .testTarget(name: "SerialPortTests", dependencies: ["SerialPort"]),
        .testTarget(
            name: "PrepaidTests", dependencies: ["Prepaid", "KeyStore", "MeterProtocol"], exclude: ["Fixtures"]),
        .testTarget(
            name: "MeterEmulatorTests",
            dependencies: ["MeterEmulator", "MeterProtocol", "SerialPort", "Prepaid", "KeyStore"]),
        .testTarget(name: "BillingStoreTests", dependencies: ["BillingStore", "Prepaid", "MeterProtocol"]),
        .testTarget(name: "MetergwCLITests", dependencies: ["MetergwCLI", "MeterProtocol", "SerialPort", "Prepaid"]),
    ]
)
