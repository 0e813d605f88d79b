/// Everything wrong with a configuration file, each problem with its line: `metergw serve --check` prints them all
/// rather than stopping at the first.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var issues: [ConfigurationIssue]

    public init(file: String, issues: [ConfigurationIssue]) {
        self.file = file
        self.issues = issues
    }

    /// One line per issue: `gateway.toml:7: bus[1].poll_interval: expected ...`.
    public var description: String {
        self.issues.map { issue in
            let place = issue.line.map { "\(self.file):\($0)" } ?? self.file
            return "\(place): \(issue.key.isEmpty ? "" : issue.key + ": ")\(issue.message)"
        }.joined(separator: "\n")
    }
}

/// One problem: where (the line, when the file has the key; the key's path, buses counted from 1) and what is
/// expected instead.
public struct ConfigurationIssue: Sendable, Hashable {
    public var line: Int?
    /// `bus[2].poll_interval`, `store`; empty for the file as a whole.
    public var key: String
    public var message: String

    public init(line: Int?, key: String, message: String) {
        self.line = line
        self.key = key
        self.message = message
    }
}
