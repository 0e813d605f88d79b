import Foundation

/// Lints udev rules files: the grammar of udev(7) (keys, operators, quoted values), and this project's policy for
/// its own files (an ACTION/SUBSYSTEM guard first, no world access, no shell, every GOTO lands on a LABEL).
struct UdevRuleLinter {
    struct Problem: Equatable, CustomStringConvertible {
        var file: String
        var line: Int
        var kind: Kind

        var description: String { "\(file):\(line): \(kind)" }
    }

    enum Kind: Error, Equatable, CustomStringConvertible {
        case syntax(String)
        case unknownKey(String)
        case operatorNotAllowed(key: String, op: String)
        case attributeNotAllowed(key: String)
        case attributeRequired(key: String)
        case missingActionGuard
        case missingSubsystemGuard
        case badMode(String)
        case worldAccessibleMode(String)
        case shellInRun(String)
        case missingLabel(String)
        case duplicateLabel(String)

        var description: String {
            switch self {
            case .syntax(let what): "syntax: \(what)"
            case .unknownKey(let key): "unknown key \(key)"
            case .operatorNotAllowed(let key, let op): "\(key) does not take \(op)"
            case .attributeNotAllowed(let key): "\(key) takes no {attribute}"
            case .attributeRequired(let key): "\(key) needs an {attribute}"
            case .missingActionGuard: "the file does not open with an ACTION guard (ACTION!=..., GOTO=...)"
            case .missingSubsystemGuard: "the file does not open with a SUBSYSTEM guard (SUBSYSTEM!=..., GOTO=...)"
            case .badMode(let mode): "MODE \"\(mode)\" is not an octal mode"
            case .worldAccessibleMode(let mode): "MODE \"\(mode)\" gives other users access; use 0660 and a group"
            case .shellInRun(let command): "RUN starts a shell: \(command)"
            case .missingLabel(let label): "GOTO \"\(label)\" has no LABEL after it"
            case .duplicateLabel(let label): "LABEL \"\(label)\" appears twice"
            }
        }
    }

    /// One `KEY{attribute} OP "value"` of a rule.
    struct Assignment: Equatable {
        var key: String
        var attribute: String?
        var op: String
        var value: String
    }

    struct Rule {
        var line: Int
        var assignments: [Assignment]

        func first(_ key: String) -> Assignment? { assignments.first { $0.key == key } }
    }

    // MARK: The grammar (udev(7), systemd 252-256)

    private static let matchOps: Set<String> = ["==", "!="]
    private static let assignOps: Set<String> = ["=", "+=", "-=", ":="]

    /// The operators each key accepts; keys missing here are unknown.
    private static let operators: [String: Set<String>] = [
        "ACTION": matchOps, "DEVPATH": matchOps, "KERNEL": matchOps, "KERNELS": matchOps,
        "SUBSYSTEM": matchOps, "SUBSYSTEMS": matchOps, "DRIVER": matchOps, "DRIVERS": matchOps,
        "ATTRS": matchOps, "TAGS": matchOps, "RESULT": matchOps, "CONST": matchOps, "TEST": matchOps,
        "NAME": matchOps.union(["=", ":="]),
        "SYMLINK": matchOps.union(assignOps),
        "TAG": matchOps.union(assignOps),
        "ENV": matchOps.union(["=", "+=", ":="]),
        "ATTR": matchOps.union(["=", ":="]),
        "SYSCTL": matchOps.union(["=", ":="]),
        // Both are matches that also run something; udev accepts "=" for them.
        "PROGRAM": matchOps.union(["="]),
        "IMPORT": matchOps.union(["="]),
        "OWNER": ["=", ":="], "GROUP": ["=", ":="], "MODE": ["=", ":="],
        "SECLABEL": ["=", "+=", ":="],
        "RUN": ["=", "+=", ":="],
        "OPTIONS": ["=", "+=", ":="],
        "LABEL": ["="], "GOTO": ["="],
    ]

    private static let attributeRequired: Set<String> = ["ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "SECLABEL"]
    private static let attributeOptional: Set<String> = ["TEST", "IMPORT", "RUN"]

    // MARK: Linting

    /// Grammar only: for any rules file, including the system's own.
    static func lintSyntax(_ text: String, file: String) -> (rules: [Rule], problems: [Problem]) {
        var rules: [Rule] = []
        var problems: [Problem] = []
        for (line, content) in logicalLines(text) {
            let trimmed = content.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            switch parseRule(trimmed) {
            case .success(let assignments):
                let rule = Rule(line: line, assignments: assignments)
                problems += check(rule).map { Problem(file: file, line: line, kind: $0) }
                rules.append(rule)
            case .failure(let kind):
                problems.append(Problem(file: file, line: line, kind: kind))
            }
        }
        return (rules, problems)
    }

    /// Grammar and this project's policy: what every file in udev/ must pass.
    static func lint(_ text: String, file: String) -> [Problem] {
        let (rules, syntaxProblems) = lintSyntax(text, file: file)
        var problems = syntaxProblems
        func report(_ line: Int, _ kind: Kind) { problems.append(Problem(file: file, line: line, kind: kind)) }

        // The guard: the rules before the first one that does something are all jumps to the end, and they test
        // ACTION and SUBSYSTEM, so the file costs nothing for every other device and event.
        let guards = rules.prefix { rule in
            rule.first("GOTO") != nil && rule.assignments.allSatisfy { $0.key == "GOTO" || matchOps.contains($0.op) }
        }
        let guardLine = rules.first?.line ?? 1
        if !guards.contains(where: { $0.first("ACTION") != nil }) { report(guardLine, .missingActionGuard) }
        if !guards.contains(where: { $0.first("SUBSYSTEM") != nil }) { report(guardLine, .missingSubsystemGuard) }

        var labels: [String: Int] = [:]
        for rule in rules {
            for assignment in rule.assignments {
                switch assignment.key {
                case "MODE":
                    if let mode = Int(assignment.value, radix: 8), assignment.value.count <= 4 {
                        if mode & 0o007 != 0 { report(rule.line, .worldAccessibleMode(assignment.value)) }
                    } else {
                        report(rule.line, .badMode(assignment.value))
                    }
                case "RUN":
                    if startsShell(assignment.value) { report(rule.line, .shellInRun(assignment.value)) }
                case "LABEL":
                    if labels[assignment.value] != nil { report(rule.line, .duplicateLabel(assignment.value)) }
                    labels[assignment.value] = rule.line
                default:
                    break
                }
            }
        }
        // udev only jumps forward: a GOTO whose LABEL comes before it (or nowhere) skips the rest of the file.
        for rule in rules {
            for jump in rule.assignments where jump.key == "GOTO" {
                if let target = labels[jump.value], target > rule.line { continue }
                report(rule.line, .missingLabel(jump.value))
            }
        }
        return problems
    }

    // MARK: Pieces

    /// Joins lines continued with a trailing backslash; each logical line keeps the number of its first line.
    static func logicalLines(_ text: String) -> [(Int, String)] {
        var result: [(Int, String)] = []
        var pending: (Int, String)?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = String(raw)
            let continued = line.hasSuffix("\\")
            if continued { line.removeLast() }
            if var current = pending {
                current.1 += line
                pending = current
            } else {
                pending = (index + 1, line)
            }
            if !continued, let done = pending {
                result.append(done)
                pending = nil
            }
        }
        if let done = pending { result.append(done) }
        return result
    }

    /// Parses `KEY{attr}OP"value", ...` with nothing else on the line.
    static func parseRule(_ line: String) -> Result<[Assignment], Kind> {
        var rest = Substring(line)
        var assignments: [Assignment] = []
        func skipSpaces() { rest = rest.drop { $0 == " " || $0 == "\t" } }
        while true {
            skipSpaces()
            let key = rest.prefix { ("A"..."Z").contains($0) || $0 == "_" }
            guard !key.isEmpty else { return .failure(.syntax("expected a KEY at \"\(rest.prefix(20))\"")) }
            rest = rest.dropFirst(key.count)
            var attribute: String?
            if rest.first == "{" {
                guard let close = rest.firstIndex(of: "}") else {
                    return .failure(.syntax("\(key){ has no closing }"))
                }
                attribute = String(rest[rest.index(after: rest.startIndex)..<close])
                rest = rest[rest.index(after: close)...]
            }
            skipSpaces()
            guard let op = ["==", "!=", "+=", "-=", ":=", "="].first(where: { rest.hasPrefix($0) }) else {
                return .failure(.syntax("expected an operator after \(key) at \"\(rest.prefix(20))\""))
            }
            rest = rest.dropFirst(op.count)
            skipSpaces()
            // e"..." takes C escapes, r"..." none (systemd 250 and later); a plain "..." is what we write.
            if rest.hasPrefix("e\"") || rest.hasPrefix("r\"") { rest = rest.dropFirst() }
            guard rest.first == "\"" else {
                return .failure(.syntax("the value of \(key) must be in double quotes"))
            }
            rest = rest.dropFirst()
            var value = ""
            var closed = false
            while let c = rest.first {
                rest = rest.dropFirst()
                if c == "\\", let next = rest.first {
                    value.append(c)
                    value.append(next)
                    rest = rest.dropFirst()
                } else if c == "\"" {
                    closed = true
                    break
                } else {
                    value.append(c)
                }
            }
            guard closed else { return .failure(.syntax("the value of \(key) has no closing quote")) }
            assignments.append(Assignment(key: String(key), attribute: attribute, op: op, value: value))
            skipSpaces()
            if rest.isEmpty { return .success(assignments) }
            guard rest.first == "," else {
                return .failure(.syntax("expected a comma after \(key)\(op)\"\(value)\" at \"\(rest.prefix(20))\""))
            }
            rest = rest.dropFirst()
            skipSpaces()
            if rest.isEmpty { return .failure(.syntax("the line ends with a comma")) }
        }
    }

    private static func check(_ rule: Rule) -> [Kind] {
        var problems: [Kind] = []
        for assignment in rule.assignments {
            guard let allowed = operators[assignment.key] else {
                problems.append(.unknownKey(assignment.key))
                continue
            }
            if !allowed.contains(assignment.op) {
                problems.append(.operatorNotAllowed(key: assignment.key, op: assignment.op))
            }
            if assignment.attribute == nil && attributeRequired.contains(assignment.key) {
                problems.append(.attributeRequired(key: assignment.key))
            }
            if assignment.attribute != nil && !attributeRequired.contains(assignment.key)
                && !attributeOptional.contains(assignment.key)
            {
                problems.append(.attributeNotAllowed(key: assignment.key))
            }
        }
        return problems
    }

    /// True when a RUN value's program is a shell: `sh`, `bash`, `/bin/sh`, `/usr/bin/env bash`, ...
    static func startsShell(_ command: String) -> Bool {
        var words = command.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        if words.first.map({ $0 == "env" || $0.hasSuffix("/env") }) == true { words.removeFirst() }
        guard let program = words.first else { return false }
        let name = program.split(separator: "/").last.map(String.init) ?? program
        let shells: Set<String> = ["sh", "bash", "dash", "ash", "zsh", "ksh", "csh", "tcsh", "fish", "busybox"]
        return shells.contains(name) || (program.hasPrefix("/bin/") && name.hasSuffix("sh"))
            || (program.hasPrefix("/usr/bin/") && name.hasSuffix("sh"))
    }
}
