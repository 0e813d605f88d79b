import Foundation

/// Runs the built `metergw` binary as a separate process, as a user or a script would.
enum CLI {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The package's build products folder: where the test bundle itself was built.
    static var productsDirectory: URL {
        if let override = ProcessInfo.processInfo.environment["METERGW_PRODUCTS"] {
            return URL(fileURLWithPath: override)
        }
        var url = Bundle.main.bundleURL
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("metergw").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }

    static var binary: URL { productsDirectory.appendingPathComponent("metergw") }

    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    static let fixtures = packageRoot.appendingPathComponent("Tests/MeterProtocolTests/Fixtures/frames")
    static let cardFixtures = packageRoot.appendingPathComponent("Tests/PrepaidTests/Fixtures/cards")
    static let testKeyFile = packageRoot.appendingPathComponent("Tests/PrepaidTests/Fixtures/keys/test-keys")

    @discardableResult
    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String]? = nil,
                    timeout: TimeInterval = 30) throws -> Result {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if let environment {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(stdin)
            try input.fileHandleForWriting.close()
        }
        // Read both pipes concurrently so a chatty child never blocks on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            outData = out.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        // A generous guard against a hung child, not a timing assertion.
        if group.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            throw CLIFailure.timedOut(arguments)
        }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    enum CLIFailure: Error { case timedOut([String]) }
}
