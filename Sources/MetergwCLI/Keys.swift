import ArgumentParser
import KeyStore
import MeterProtocol
import Prepaid

/// `metergw keys`: the issuer's key file (docs/CARD.md §3.1).
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create and inspect the issuer's key file.",
        subcommands: [Init.self, Show.self])

    /// The key file path: --file, else the default under $XDG_CONFIG_HOME (or ~/.config)/metergw/.
    static func path(_ file: String?) throws -> String {
        if let file { return file }
        guard let path = KeyFile.defaultPath() else {
            throw CLIError(.usage, "no --file given and neither XDG_CONFIG_HOME nor HOME is set")
        }
        return path
    }

    /// Loads a key file, mapping its errors to exit statuses.
    static func load(_ path: String) throws -> IssuerKeys {
        do {
            return try KeyFile.load(from: path)
        } catch {
            throw Self.cliError(error)
        }
    }

    static func cliError(_ error: KeyFileError) -> CLIError {
        switch error {
        case .exists: CLIError(.failure, error.explanation)
        case .notFound: CLIError(.notFound, error.explanation)
        case .permissionDenied, .tooOpen: CLIError(.noPermission, error.explanation)
        case .notARegularFile, .malformed: CLIError(.dataError, error.explanation)
        case .io: CLIError(.ioError, error.explanation)
        }
    }

    static func summary(_ keys: IssuerKeys, path: String, json: Bool, verb: String) {
        let fingerprint = hexString(keys.systemKey.fingerprint, separator: "")
        if json {
            Output.line(JSONValue.object([
                ("path", .string(path)), ("issuerId", .uint(UInt64(keys.issuerID))),
                ("fingerprint", .string(fingerprint)),
            ]).rendered())
        } else {
            Output.line("\(verb) \(path)")
            Output.line("  issuer id    \(keys.issuerID)")
            Output.line("  fingerprint  \(fingerprint) (names the key; the key itself is never shown)")
        }
    }

    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a key file with a new random system key (mode 0600; never overwrites).",
            discussion: """
                The system key comes from the operating system's random source. Every meter key, card MAC and \
                command MAC derives from it: keep the file secret and backed up. Default path: \
                $XDG_CONFIG_HOME/metergw/keys, else ~/.config/metergw/keys.
                """)

        @Option(name: .shortAndLong, help: "Where to create the key file.")
        var file: String?

        @Option(help: "The issuer id written on every card (0...4294967295).")
        var issuerId: UInt32 = 1

        @Flag(help: "Print the result as one JSON object.")
        var json = false

        func run() throws {
            let path = try Keys.path(self.file)
            let keys: IssuerKeys
            do {
                keys = try KeyFile.create(at: path, issuerID: self.issuerId)
            } catch {
                throw Keys.cliError(error)
            }
            Keys.summary(keys, path: path, json: self.json, verb: "created key file")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check a key file and show its issuer id and key fingerprint (never the key).")

        @Option(name: .shortAndLong, help: "The key file.")
        var file: String?

        @Flag(help: "Print the result as one JSON object.")
        var json = false

        func run() throws {
            let path = try Keys.path(self.file)
            Keys.summary(try Keys.load(path), path: path, json: self.json, verb: "key file")
        }
    }
}
